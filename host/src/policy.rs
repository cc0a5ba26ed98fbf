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
    /// The defaults of the parameter table.
    fn default() -> Self {
        let default_of = |setting: &str| {
            let path = format!(r"{}\Default\{setting}", Self::ROOT);
            crate::params_spec::spec_for(&path)
                .map_or(0, crate::params_spec::ParamSpec::default_number)
        };
        let count = |setting: &str| usize::try_from(default_of(setting)).unwrap_or_default();
        Self {
            name: "Default".into(),
            min_length: count("MinLength"),
            max_length: count("MaxLength"),
            history_count: count("HistoryCount"),
            reject_names: default_of("RejectNames") == 1,
            reject_common: default_of("RejectCommon") == 1,
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

impl PasswordPolicy {
    /// The policy for a source from the values in force (`value(path)`): each setting from
    /// `PRP\PasswordPolicy\<source>`, else `PRP\PasswordPolicy\Default`, else the table's
    /// default. A value that isn't allowed is reported (naming the path and the allowed range)
    /// and the next level applies; so do a level's lengths when its MinLength would be above
    /// its MaxLength.
    pub fn resolve(
        source: &str,
        value: impl Fn(&str) -> Result<Option<String>, StoreError>,
    ) -> Result<(Self, Vec<String>), StoreError> {
        let mut policy = PasswordPolicy {
            name: source.to_owned(),
            ..PasswordPolicy::default()
        };
        let mut problems = Vec::new();
        let mut levels = vec!["Default"];
        if !source.eq_ignore_ascii_case("Default") {
            levels.push(source);
        }
        for level in levels {
            let base = format!(r"{}\{level}", Self::ROOT);
            let mut read = |setting: &str, current: usize| -> Result<Option<usize>, StoreError> {
                let path = format!(r"{base}\{setting}");
                let Some(raw) = value(&path)? else {
                    return Ok(None);
                };
                let Some(spec) = crate::params_spec::spec_for(&path) else {
                    return Ok(None);
                };
                let n = spec.value_type.number(&raw).and_then(|n| {
                    usize::try_from(n)
                        .map_err(|_| format!("\"{raw}\" is not {}", spec.value_type.allowed()))
                });
                match n {
                    Ok(n) => Ok(Some(n)),
                    Err(e) => {
                        problems.push(format!("{path}: {e}; ignored, {current} applies"));
                        Ok(None)
                    }
                }
            };
            let flag = |b: bool| usize::from(b);
            let min = read("MinLength", policy.min_length)?;
            let max = read("MaxLength", policy.max_length)?;
            let history = read("HistoryCount", policy.history_count)?;
            let names = read("RejectNames", flag(policy.reject_names))?;
            let common = read("RejectCommon", flag(policy.reject_common))?;
            let (lo, hi) = (
                min.unwrap_or(policy.min_length),
                max.unwrap_or(policy.max_length),
            );
            if lo > hi {
                problems.push(format!(
                    "{base}: MinLength {lo} is above MaxLength {hi}; ignored, {} to {} characters apply",
                    policy.min_length, policy.max_length
                ));
            } else {
                (policy.min_length, policy.max_length) = (lo, hi);
            }
            policy.history_count = history.unwrap_or(policy.history_count);
            policy.reject_names = names.map_or(policy.reject_names, |n| n == 1);
            policy.reject_common = common.map_or(policy.reject_common, |n| n == 1);
        }
        Ok((policy, problems))
    }
}

impl Store {
    /// The policy for a source (see [`PasswordPolicy::resolve`]). Values that aren't allowed
    /// are reported in the second part, and logged once each.
    pub async fn password_policy(
        &self,
        source: &str,
    ) -> Result<(PasswordPolicy, Vec<String>), StoreError> {
        let params = self.parameters().await?;
        let (policy, problems) = PasswordPolicy::resolve(source, |path| params.value(path))?;
        for p in &problems {
            crate::params_spec::warn_once(p);
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
