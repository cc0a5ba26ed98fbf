//! Rules the host and plugins must apply alike, as plain Rust functions: how a configured value
//! reads as a boolean, which names may reach SQL, how login names compare, and which person a
//! name's accounts stand for.
//!
//! Nothing here crosses the ABI: each side compiles its own copy of these functions, so they
//! are not part of the layout abi_stable checks, and changing one is not an ABI change. They
//! live in this crate because it is the one crate both the host and every plugin link.

use crate::resolver::ResolvedAccount;
use std::collections::BTreeSet;

/// Reads a parameter or API key value as a boolean, the way the original product writes them:
/// `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`, ignoring ASCII case and surrounding blanks.
/// Anything else (a blank value included) is `None`: the caller decides what that means, and
/// for a switch that turns something on, it means off.
pub fn parse_flag(value: &str) -> Option<bool> {
    const ON: [&str; 4] = ["1", "true", "yes", "on"];
    const OFF: [&str; 4] = ["0", "false", "no", "off"];
    let v = value.trim();
    if ON.iter().any(|w| w.eq_ignore_ascii_case(v)) {
        Some(true)
    } else if OFF.iter().any(|w| w.eq_ignore_ascii_case(v)) {
        Some(false)
    } else {
        None
    }
}

/// A table or column name that may be put into SQL: ASCII letters, digits and `_`, not starting
/// with a digit, at most 63 characters (PostgreSQL's limit). Anything else is refused, so
/// configured names are never pasted into SQL as they come.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// The form in which login names are compared: the ASCII letters A–Z lowered, every other
/// character kept exactly as it is. Two names match when their folded forms are equal. (The
/// host's SQL applies the same rule on the database side, `Dialect::ascii_lower`.)
pub fn fold_login_name(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Whom a login name's accounts (as the resolvers found them) stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<'a> {
    /// No account that matched is assigned to a person (or nothing matched).
    Nobody,
    /// The accounts that matched belong to this many different persons: the name identifies
    /// nobody, even when some of those accounts are refused.
    Ambiguous(usize),
    /// One person. `eligible` are the matched accounts of theirs that may log in (not refused),
    /// in the order the resolvers gave them; it may be empty.
    Person {
        uid: &'a str,
        eligible: Vec<&'a ResolvedAccount>,
    },
}

/// Resolves a login name's candidates to a person, by the rules every login and help-desk tool
/// uses: the accounts must all belong to one person, and only that person's accounts that are
/// not refused may log in.
pub fn resolve(candidates: &[ResolvedAccount]) -> Resolution<'_> {
    let persons: BTreeSet<&str> = candidates
        .iter()
        .map(|c| c.person_uid.as_str())
        .filter(|p| !p.is_empty())
        .collect();
    let mut persons = persons.into_iter();
    match (persons.next(), persons.len()) {
        (None, _) => Resolution::Nobody,
        (Some(uid), 0) => Resolution::Person {
            uid,
            eligible: candidates.iter().filter(|c| is_eligible(c, uid)).collect(),
        },
        (Some(_), more) => Resolution::Ambiguous(more + 1),
    }
}

/// Whether `account` may log in as the person `person_uid`: it is theirs and not refused.
pub fn is_eligible(account: &ResolvedAccount, person_uid: &str) -> bool {
    !person_uid.is_empty()
        && account.person_uid.as_str() == person_uid
        && account.refused_by.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{ROption, RString};

    #[test]
    fn flags() {
        for on in ["1", "true", "TRUE", " Yes ", "on", "On"] {
            assert_eq!(parse_flag(on), Some(true), "{on}");
        }
        for off in ["0", "false", "False", "no", " OFF"] {
            assert_eq!(parse_flag(off), Some(false), "{off}");
        }
        for neither in ["", " ", "maybe", "2", "tru", "yess", "1 0"] {
            assert_eq!(parse_flag(neither), None, "{neither:?}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("ADSAccount"));
        assert!(is_identifier("_x1"));
        assert!(is_identifier(&"a".repeat(63)));
        assert!(!is_identifier(&"a".repeat(64)));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("Person; DROP TABLE Person"));
        assert!(!is_identifier("a\"b"));
        assert!(!is_identifier("a b"));
        assert!(!is_identifier("Äccount"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn login_names_fold_ascii_letters_only() {
        assert_eq!(fold_login_name("Alice.EXAMPLE"), "alice.example");
        assert_eq!(fold_login_name("ÉMILE"), "Émile".to_ascii_lowercase());
        assert_ne!(fold_login_name("ÉMILE"), fold_login_name("émile"));
        assert_eq!(fold_login_name(" Bob "), " bob ");
    }

    fn account(person: &str, id: &str, refused: Option<&str>) -> ResolvedAccount {
        ResolvedAccount {
            person_uid: person.into(),
            source: "T".into(),
            account_uid: ROption::RSome(id.into()),
            matched_by: "CN".into(),
            refused_by: refused.map(RString::from).into(),
            resolver: "r".into(),
        }
    }

    #[test]
    fn resolution() {
        assert_eq!(resolve(&[]), Resolution::Nobody);
        assert_eq!(resolve(&[account("", "a", None)]), Resolution::Nobody);
        let two = [account("P1", "a", None), account("P2", "b", Some("x"))];
        assert_eq!(resolve(&two), Resolution::Ambiguous(2));
        let one = [
            account("P1", "a", Some("DisabledBy: Locked")),
            account("", "b", None),
            account("P1", "c", None),
        ];
        match resolve(&one) {
            Resolution::Person { uid, eligible } => {
                assert_eq!(uid, "P1");
                assert_eq!(eligible, vec![&one[2]]);
            }
            other => panic!("{other:?}"),
        }
        match resolve(&one[..1]) {
            Resolution::Person { uid, eligible } => {
                assert_eq!(uid, "P1");
                assert!(eligible.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert!(!is_eligible(&account("", "a", None), ""));
    }
}
