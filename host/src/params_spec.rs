//! The host's own parameters (`PRP\…`) in one table: path, type, allowed range, default and
//! what each means. The readers (lockout and password policies) take their defaults and ranges
//! from it, `Store::set_parameter` refuses values outside it, `prp-host check` reports stored
//! values outside it, and `params list`/`params get` show the defaults of what isn't set.
//!
//! The plugin's `QER\Person\PasswordResetAuthenticator\…` parameters are the plugin's own and
//! are not in this table.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// What a parameter's value may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// A whole number from `min` to `max`, both included.
    Whole { min: i64, max: i64 },
    /// On or off: `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`; read as 1 or 0.
    Flag,
    /// Text, checked where it is used (table and column names against the live schema).
    Text,
}

impl ValueType {
    /// The allowed values in words, for messages.
    pub fn allowed(&self) -> String {
        match self {
            Self::Whole { min, max } => format!("a whole number from {min} to {max}"),
            Self::Flag => "1 or 0 (or true/false, yes/no, on/off)".to_owned(),
            Self::Text => "text".to_owned(),
        }
    }

    /// The value as a number (flags as 1 or 0), or why it isn't allowed.
    pub fn number(&self, raw: &str) -> Result<i64, String> {
        let v = raw.trim();
        let parsed = match self {
            Self::Whole { min, max } => v.parse::<i64>().ok().filter(|n| (*min..=*max).contains(n)),
            Self::Flag => prp_plugin_api::rules::parse_flag(v).map(i64::from),
            Self::Text => None,
        };
        parsed.ok_or_else(|| format!("\"{raw}\" is not {}", self.allowed()))
    }

    /// Whether `raw` is allowed.
    pub fn check(&self, raw: &str) -> Result<(), String> {
        match self {
            Self::Text => Ok(()),
            _ => self.number(raw).map(drop),
        }
    }
}

/// One row of the table. A segment written `<Name>` in the pattern stands for any one segment
/// (a policy source, a table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    pub pattern: &'static str,
    pub value_type: ValueType,
    /// The value in force when none is set (`None`: nothing, the feature is off or derived).
    pub default: Option<i64>,
    pub description: &'static str,
}

impl ParamSpec {
    /// Whether `path` (normalised, `\`-separated) is an instance of this row.
    pub fn matches(&self, path: &str) -> bool {
        let mut want = self.pattern.split('\\');
        let mut have = path.split('\\');
        loop {
            match (want.next(), have.next()) {
                (None, None) => return true,
                (Some(w), Some(h)) if w.starts_with('<') || w.eq_ignore_ascii_case(h) => {}
                _ => return false,
            }
        }
    }

    /// The default as a number (0 when there is none; only `Text` rows have none).
    pub fn default_number(&self) -> i64 {
        self.default.unwrap_or_default()
    }

    /// Checks a value to be stored: `Err` says what is allowed.
    pub fn check(&self, raw: &str) -> Result<(), String> {
        self.value_type.check(raw)
    }
}

const fn whole(
    pattern: &'static str,
    min: i64,
    max: i64,
    default: i64,
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        pattern,
        value_type: ValueType::Whole { min, max },
        default: Some(default),
        description,
    }
}

const fn flag(pattern: &'static str, default: bool, description: &'static str) -> ParamSpec {
    ParamSpec {
        pattern,
        value_type: ValueType::Flag,
        default: Some(default as i64),
        description,
    }
}

const fn text(pattern: &'static str, description: &'static str) -> ParamSpec {
    ParamSpec {
        pattern,
        value_type: ValueType::Text,
        default: None,
        description,
    }
}

/// The lowest `PRP\PasswordPolicy\…\MaxLength`: NIST SP 800-63B asks to allow at least 64.
pub const MIN_MAX_LENGTH: i64 = 64;
/// The highest `MaxLength`: the login routes refuse secrets over 1024 bytes, so a longer
/// password could be set but never used to log in.
pub const MAX_MAX_LENGTH: i64 = 1024;

/// Every parameter the host reads.
pub const HOST_PARAMETERS: &[ParamSpec] = &[
    whole(r"PRP\Lockout\All\MaxFailures", 1, 100, 100, "failures of all methods together within the window that lock the person out of every method"),
    whole(r"PRP\Lockout\All\WindowMinutes", 1, 10_080, 60, "the window in which failures of all methods are counted, in minutes"),
    whole(r"PRP\Lockout\All\LockMinutes", 1, 525_600, 60, "how long a lock of every method lasts, in minutes"),
    whole(r"PRP\Lockout\Password\MaxFailures", 1, 1000, 10, "wrong passwords within the window that lock password logins"),
    whole(r"PRP\Lockout\Password\WindowMinutes", 1, 10_080, 60, "the window in which wrong passwords are counted, in minutes"),
    whole(r"PRP\Lockout\Password\LockMinutes", 1, 525_600, 30, "how long a password lock lasts, in minutes"),
    whole(r"PRP\Lockout\Questions\MaxFailures", 1, 1000, 5, "failed question logins within the window that lock question logins"),
    whole(r"PRP\Lockout\Questions\WindowMinutes", 1, 10_080, 60, "the window in which failed question logins are counted, in minutes"),
    whole(r"PRP\Lockout\Questions\LockMinutes", 1, 525_600, 1440, "how long a question-login lock lasts, in minutes"),
    whole(r"PRP\Lockout\Passcode\MaxFailures", 1, 1000, 5, "wrong passcodes within the window that lock passcode logins"),
    whole(r"PRP\Lockout\Passcode\WindowMinutes", 1, 10_080, 60, "the window in which wrong passcodes are counted, in minutes"),
    whole(r"PRP\Lockout\Passcode\LockMinutes", 1, 525_600, 60, "how long a passcode lock lasts, in minutes"),
    whole(r"PRP\Lockout\Factor\MaxFailures", 1, 1000, 5, "wrong codes at a flow's later step (a factor such as TOTP) within the window that lock that step"),
    whole(r"PRP\Lockout\Factor\WindowMinutes", 1, 10_080, 60, "the window in which wrong factor codes are counted, in minutes"),
    whole(r"PRP\Lockout\Factor\LockMinutes", 1, 525_600, 60, "how long a factor lock lasts, in minutes"),
    whole(r"PRP\Lockout\PasscodeMaxGuesses", 1, 20, 3, "wrong guesses that invalidate a passcode"),
    whole(r"PRP\Lockout\QuestionMaxFailures", 1, 20, 3, "wrong answers that lock a question"),
    whole(r"PRP\Lockout\ProofOfWorkBits", 0, 28, 18, "leading zero bits of the proof of work a client without a device cookie solves once a name, person or source is over its limit; 0: none (a person-level lock then refuses every client but the person's devices)"),
    whole(r"PRP\Lockout\Source\MaxFailures", 1, 100_000, 50, "failed logins from one client source (IPv4 /24, IPv6 /64) within the all-methods window after which each of its attempts needs a proof of work"),
    whole(r"PRP\PasswordPolicy\<Source>\MinLength", 8, 128, 12, "the fewest characters a password may have (at most MaxLength)"),
    whole(r"PRP\PasswordPolicy\<Source>\MaxLength", MIN_MAX_LENGTH, MAX_MAX_LENGTH, 128, "the most characters a password may have (logins take at most 1024 bytes)"),
    whole(r"PRP\PasswordPolicy\<Source>\HistoryCount", 0, 24, 5, "earlier passwords that may not be used again"),
    flag(r"PRP\PasswordPolicy\<Source>\RejectNames", true, "refuse passwords holding the person's names or login names"),
    flag(r"PRP\PasswordPolicy\<Source>\RejectCommon", true, "refuse the commonly used passwords shipped with the portal"),
    text(r"PRP\Portal\AccountTables", "tables whose accounts are password items, separated by |"),
    text(r"PRP\Portal\DisplayColumn\<Table>", "the column shown as an account's name (unset: the table's key)"),
];

/// Branches where every parameter is in the table: a path under them that isn't is refused
/// when set (a misspelt name would otherwise be stored and silently ignored).
pub const CLOSED_BRANCHES: &[&str] = &[r"PRP\Lockout", r"PRP\PasswordPolicy", r"PRP\Portal"];

/// The row for a normalised path.
pub fn spec_for(path: &str) -> Option<&'static ParamSpec> {
    HOST_PARAMETERS.iter().find(|s| s.matches(path))
}

/// Whether `path` is `branch` or lies under it (case-insensitively).
pub fn is_under(path: &str, branch: &str) -> bool {
    let (p, b) = (path.to_ascii_lowercase(), branch.to_ascii_lowercase());
    p == b || p.starts_with(&format!("{b}\\"))
}

/// Checks a value about to be stored at `path` (normalised). Paths outside the table pass,
/// unless they lie in a [closed branch](CLOSED_BRANCHES).
pub fn check_value(path: &str, value: &str) -> Result<(), String> {
    match spec_for(path) {
        Some(spec) => spec
            .check(value)
            .map_err(|e| format!("{path}: {e}; not stored")),
        None => match CLOSED_BRANCHES.iter().find(|b| is_under(path, b)) {
            Some(branch) => Err(format!(
                "{path}: not a parameter the portal reads; known under {branch}: {}",
                HOST_PARAMETERS
                    .iter()
                    .filter(|s| is_under(s.pattern, branch))
                    .map(|s| s.pattern)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => Ok(()),
        },
    }
}

/// A documented parameter as `params list` and `params get` show it when it isn't set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownParameter {
    pub path: String,
    /// The value in force when it isn't set, if there is one.
    pub default: Option<String>,
    /// The allowed values in words.
    pub allowed: String,
    pub description: String,
}

impl KnownParameter {
    fn of(spec: &ParamSpec, path: String) -> Self {
        Self {
            path,
            default: spec.default.map(|d| d.to_string()),
            allowed: spec.value_type.allowed(),
            description: spec.description.to_owned(),
        }
    }
}

/// Every documented parameter with a concrete path, in path order: each row of the table, with
/// `<Source>` as `Default` (the policy every table and system falls back to). Rows for one
/// table each (`PRP\Portal\DisplayColumn\<Table>`) are left out.
pub fn known_parameters() -> Vec<KnownParameter> {
    let mut out: Vec<KnownParameter> = HOST_PARAMETERS
        .iter()
        .filter_map(|s| {
            let path = s.pattern.replace("<Source>", "Default");
            (!path.contains('<')).then(|| KnownParameter::of(s, path))
        })
        .collect();
    out.sort_by_key(|k| k.path.to_ascii_lowercase());
    out
}

/// The documented parameter `path` (normalised) is an instance of, with the built-in default.
/// `Store::parameter_or_default` adds what a policy source inherits.
pub fn lookup(path: &str) -> Option<KnownParameter> {
    spec_for(path).map(|s| KnownParameter::of(s, path.to_owned()))
}

/// Logs a problem with a stored value at `warn`, once per process for each distinct message
/// (the message holds the path and the value, so a new bad value is logged again).
pub fn warn_once(problem: &str) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let first = SEEN
        .get_or_init(Mutex::default)
        .lock()
        .map(|mut seen| seen.insert(problem.to_owned()))
        .unwrap_or(true);
    if first {
        tracing::warn!("parameter: {problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_allowed_by_its_own_row() {
        for s in HOST_PARAMETERS {
            if let Some(d) = s.default {
                assert_eq!(s.value_type.number(&d.to_string()), Ok(d), "{}", s.pattern);
            } else {
                assert_eq!(s.value_type, ValueType::Text, "{}", s.pattern);
            }
            assert!(s.pattern.starts_with(r"PRP\"), "{}", s.pattern);
        }
    }

    #[test]
    fn values_are_checked_against_the_table() {
        let e = check_value(r"PRP\Lockout\All\MaxFailures", "100000").unwrap_err();
        assert!(e.contains("a whole number from 1 to 100"), "{e}");
        assert!(check_value(r"PRP\Lockout\All\MaxFailures", " 100 ").is_ok());
        let e = check_value(r"PRP\PasswordPolicy\ADSAccount\MinLength", "abc").unwrap_err();
        assert!(e.contains("from 8 to 128"), "{e}");
        let e = check_value(r"PRP\PasswordPolicy\Default\MaxLength", "20").unwrap_err();
        assert!(e.contains("from 64 to 1024"), "{e}");
        assert!(check_value(r"PRP\PasswordPolicy\Default\MaxLength", "1025").is_err());
        assert!(check_value(r"prp\passwordpolicy\default\rejectnames", "off").is_ok());
        assert!(check_value(r"PRP\PasswordPolicy\Default\RejectNames", "2").is_err());
        let e = check_value(r"PRP\Lockout\All\MaxFailure", "5").unwrap_err();
        assert!(e.contains(r"PRP\Lockout\All\MaxFailures"), "{e}");
        assert!(check_value(r"PRP\Portal\AccountTables", "ADSAccount|X").is_ok());
        assert!(check_value(r"PRP\Portal\DisplayColumn\ADSAccount", "CN").is_ok());
        // A misspelt name under PRP\Portal is refused, naming what is known there (the
        // new-user trial stored `AcountTables`, which nothing reads).
        let e = check_value(r"PRP\Portal\AcountTables", "ADSAccount").unwrap_err();
        assert!(
            e.contains(r"known under PRP\Portal: PRP\Portal\AccountTables"),
            "{e}"
        );
        assert!(check_value(r"QER\Person\PasswordResetAuthenticator\SearchTable", "x").is_ok());
    }

    #[test]
    fn known_parameters_have_concrete_paths() {
        let known = known_parameters();
        assert!(known.iter().all(|k| !k.path.contains('<')));
        let min = known
            .iter()
            .find(|k| k.path == r"PRP\PasswordPolicy\Default\MinLength")
            .expect("listed");
        assert_eq!(min.default.as_deref(), Some("12"));
        assert_eq!(
            lookup(r"PRP\PasswordPolicy\ADSAccount\MaxLength").and_then(|k| k.default),
            Some("128".to_owned())
        );
        assert_eq!(lookup(r"PRP\Elsewhere"), None);
    }
}
