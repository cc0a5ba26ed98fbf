//! Password policies: per table or system, with a default, from the configuration store under
//! `PRP\PasswordPolicy\<Default|Source>\<Setting>`. Rules follow NIST SP 800-63B: a length range
//! (at least 64 characters allowed, never truncated), no composition rules, no common or
//! breached passwords, not the person's own names, not a recent password.

use crate::store::{Store, StoreError};
use std::collections::HashSet;
use std::sync::OnceLock;

/// One password policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// The table or system it applies to, or `Default`.
    pub name: String,
    pub min_length: usize,
    pub max_length: usize,
    pub history_count: usize,
    pub reject_names: bool,
    pub reject_common: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            name: "Default".into(),
            min_length: 12,
            max_length: 128,
            history_count: 5,
            reject_names: true,
            reject_common: true,
        }
    }
}

/// A rule a password breaks, in words a person understands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub rule: &'static str,
    pub message: String,
}

impl PasswordPolicy {
    pub const ROOT: &'static str = r"PRP\PasswordPolicy";

    /// The rules in a sentence, to show beside the password field.
    pub fn description(&self) -> String {
        let mut parts = vec![format!(
            "{} to {} characters",
            self.min_length, self.max_length
        )];
        if self.history_count > 0 {
            parts.push(format!(
                "not one of your last {} passwords",
                self.history_count
            ));
        }
        if self.reject_names {
            parts.push("not containing your name or login name".into());
        }
        if self.reject_common {
            parts.push("not a commonly used password".into());
        }
        parts.join("; ")
    }

    /// Every rule `password` breaks, but history (which needs the stored hashes). `names` are
    /// the person's names and login names.
    pub fn violations(&self, password: &str, names: &[String]) -> Vec<Violation> {
        let mut out = Vec::new();
        let length = password.chars().count();
        if length < self.min_length {
            out.push(Violation {
                rule: "min_length",
                message: format!(
                    "Use at least {} characters (this one has {length}).",
                    self.min_length
                ),
            });
        }
        if length > self.max_length {
            out.push(Violation {
                rule: "max_length",
                message: format!(
                    "Use at most {} characters (this one has {length}).",
                    self.max_length
                ),
            });
        }
        let lower = password.to_lowercase();
        if self.reject_names {
            let found: Vec<&String> = names
                .iter()
                .filter(|n| n.chars().count() >= 3 && lower.contains(&n.to_lowercase()))
                .collect();
            if let Some(n) = found.first() {
                out.push(Violation {
                    rule: "contains_name",
                    message: format!(
                        "Don't use your name or a login name (\"{n}\") in your password."
                    ),
                });
            }
        }
        if self.reject_common && is_common(&lower) {
            out.push(Violation {
                rule: "common",
                message: "This is one of the most commonly used passwords; choose one that is harder to guess.".into(),
            });
        }
        out
    }
}

/// Whether a (lower-cased) password is on the list that ships with the product.
pub fn is_common(lower: &str) -> bool {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("../data/common-passwords.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    })
    .contains(lower)
}

/// How many passwords the shipped list holds.
#[cfg(test)]
fn common_list_len() -> usize {
    include_str!("../data/common-passwords.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count()
}

impl Store {
    /// The policy for a source: each setting from `PRP\PasswordPolicy\<source>`, else
    /// `PRP\PasswordPolicy\Default`, else the built-in default. Invalid values are reported in
    /// the second part and the next level applies.
    pub async fn password_policy(
        &self,
        source: &str,
    ) -> Result<(PasswordPolicy, Vec<String>), StoreError> {
        let params = self.parameters().await?;
        let mut policy = PasswordPolicy {
            name: source.to_owned(),
            ..PasswordPolicy::default()
        };
        let mut problems = Vec::new();
        for level in ["Default", source] {
            let base = format!(r"{}\{level}", PasswordPolicy::ROOT);
            for (setting, min, max) in [
                ("MinLength", 8, 128),
                ("MaxLength", 64, 4096),
                ("HistoryCount", 0, 24),
                ("RejectNames", 0, 1),
                ("RejectCommon", 0, 1),
            ] {
                let path = format!(r"{base}\{setting}");
                let Some(raw) = params.value(&path)? else {
                    continue;
                };
                let value = match raw.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" if max == 1 => Some(1),
                    "false" | "no" | "off" if max == 1 => Some(0),
                    other => other
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (min..=max).contains(n)),
                };
                let Some(n) = value else {
                    problems.push(format!(
                        "{path}: \"{raw}\" is not a value from {min} to {max}; ignored"
                    ));
                    continue;
                };
                match setting {
                    "MinLength" => policy.min_length = n,
                    "MaxLength" => policy.max_length = n,
                    "HistoryCount" => policy.history_count = n,
                    "RejectNames" => policy.reject_names = n == 1,
                    _ => policy.reject_common = n == 1,
                }
            }
        }
        if policy.min_length > policy.max_length {
            problems.push(format!(
                "policy {source}: MinLength {} is above MaxLength {}; using {}",
                policy.min_length, policy.max_length, policy.max_length
            ));
            policy.min_length = policy.max_length;
        }
        Ok((policy, problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(p: &PasswordPolicy, pw: &str, names: &[&str]) -> Vec<&'static str> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        p.violations(pw, &names)
            .into_iter()
            .map(|v| v.rule)
            .collect()
    }

    #[test]
    fn each_rule() {
        let p = PasswordPolicy::default();
        assert_eq!(rules(&p, "short", &[]), vec!["min_length"]);
        assert_eq!(rules(&p, &"x".repeat(129), &[]), vec!["max_length"]);
        assert!(
            rules(&p, &"x".repeat(128), &[]).is_empty(),
            "64+ characters are allowed"
        );
        assert_eq!(
            rules(&p, "carolExample-2026!", &["carol", "Ex"]),
            vec!["contains_name"]
        );
        assert_eq!(rules(&p, "qwertyuiopasdfgh", &[]), Vec::<&str>::new());
        assert_eq!(rules(&p, "1qaz2wsx3edc4rfv", &[]), vec!["common"]);
        assert_eq!(
            rules(&p, "1QAZ2WSX3EDC", &[]),
            vec!["common"],
            "case doesn't matter"
        );
        assert_eq!(
            rules(&p, "ünïcødé-pässwörd", &[]),
            Vec::<&str>::new(),
            "characters, not bytes"
        );
    }

    #[test]
    fn the_list_ships_at_least_ten_thousand_passwords() {
        assert!(common_list_len() >= 10_000, "{}", common_list_len());
        assert!(
            is_common("123456")
                && is_common("iloveyou")
                && !is_common("correct horse battery staple")
        );
    }
}
