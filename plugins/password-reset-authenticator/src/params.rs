//! The authenticator's configuration parameters and how their values are read.

use prp_plugin_api::{HostServicesBox, PluginError};

/// The parameters under `QER\Person\PasswordResetAuthenticator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    ApplicationToken,
    SearchTable,
    SearchColumn,
    DisabledBy,
    EnabledBy,
    QueryAnswerDefinitions,
    QueryAnswerRequests,
    InvalidateUsedQuery,
    PasscodeSplit,
}

impl Param {
    pub const ROOT: &'static str = r"QER\Person\PasswordResetAuthenticator";

    pub fn name(self) -> &'static str {
        match self {
            Self::ApplicationToken => "ApplicationToken",
            Self::SearchTable => "SearchTable",
            Self::SearchColumn => "SearchColumn",
            Self::DisabledBy => "DisabledBy",
            Self::EnabledBy => "EnabledBy",
            Self::QueryAnswerDefinitions => "QueryAnswerDefinitions",
            Self::QueryAnswerRequests => "QueryAnswerRequests",
            Self::InvalidateUsedQuery => "InvalidateUsedQuery",
            Self::PasscodeSplit => "PasscodeSplit",
        }
    }

    /// The full path, e.g. `QER\Person\PasswordResetAuthenticator\SearchTable`.
    pub fn path(self) -> String {
        format!(r"{}\{}", Self::ROOT, self.name())
    }
}

/// Reads this plugin's parameters through the host services.
pub struct Params<'a> {
    host: &'a HostServicesBox,
}

impl<'a> Params<'a> {
    pub fn new(host: &'a HostServicesBox) -> Self {
        Self { host }
    }

    /// The value in force, `None` when unset, disabled or blank.
    pub fn get(&self, p: Param) -> Result<Option<String>, PluginError> {
        self.host
            .parameter(p.path().as_str().into())
            .into_result()
            .map(|v| {
                v.into_option()
                    .map(|s| s.into_string())
                    .filter(|s| !s.trim().is_empty())
            })
    }

    /// A whole number, or `default` when unset; an error names the parameter when it is not.
    pub fn count(&self, p: Param, default: u32) -> Result<u32, PluginError> {
        match self.get(p)? {
            None => Ok(default),
            Some(raw) => raw.trim().parse::<u32>().map_err(|_| {
                PluginError::config(format!("{}: \"{raw}\" is not a whole number", p.path()))
            }),
        }
    }

    /// A boolean parameter (unset is false).
    pub fn flag(&self, p: Param) -> Result<bool, PluginError> {
        Ok(self.get(p)?.and_then(|v| parse_bool(&v)).unwrap_or(false))
    }

    /// An API configuration key as a boolean (unset or unreadable is false: fail closed).
    pub fn key_on(&self, key: &str) -> Result<bool, PluginError> {
        self.host.api_key(key.into()).into_result().map(|v| {
            v.into_option()
                .and_then(|s| parse_bool(&s))
                .unwrap_or(false)
        })
    }
}

/// Defaults when the parameters are unset.
pub const DEFAULT_DEFINITIONS: u32 = 3;
pub const DEFAULT_REQUESTS: u32 = 2;

/// A table or column name the portal may put into SQL: ASCII letters, digits and `_`, not
/// starting with a digit, at most 63 characters (PostgreSQL's limit). Anything else is refused,
/// so configured names are never pasted into SQL as they come.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// Splits a pipe-delimited column list (`CN|SamAccountName`), trimming blanks. Every entry must
/// be an identifier; the error names the first one that isn't.
pub fn parse_column_list(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in value.split('|') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!(
                "\"{value}\" has an empty column name (check the | separators)"
            ));
        }
        if !is_identifier(part) {
            return Err(format!(
                "\"{part}\" is not a valid column name (letters, digits and _, not starting with a digit)"
            ));
        }
        if out.iter().any(|c: &String| c.eq_ignore_ascii_case(part)) {
            return Err(format!("column \"{part}\" is listed twice"));
        }
        out.push(part.to_owned());
    }
    Ok(out)
}

/// Reads a boolean the way the original product writes them: `1`/`0`, `true`/`false`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_identifier("ADSAccount"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("Person; DROP TABLE Person"));
        assert!(!is_identifier("a\"b"));
        assert!(!is_identifier(""));
        assert!(!is_identifier(&"a".repeat(64)));
    }

    #[test]
    fn column_lists() {
        assert_eq!(
            parse_column_list(" CN | SamAccountName "),
            Ok(vec!["CN".into(), "SamAccountName".into()])
        );
        assert!(parse_column_list("CN||X")
            .unwrap_err()
            .contains("empty column name"));
        assert!(parse_column_list("CN|x-y").unwrap_err().contains("\"x-y\""));
        assert!(parse_column_list("CN|cn").unwrap_err().contains("twice"));
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(
            Param::SearchTable.path(),
            r"QER\Person\PasswordResetAuthenticator\SearchTable"
        );
    }
}
