use crate::params::{is_identifier, parse_bool, parse_column_list, Param};
use prp_plugin_api::abi_stable::std_types::{ROption, RResult};
use prp_plugin_api::{
    AuthenticatorImpl, CheckFinding, HostServicesBox, LogLevel, PluginError, Severity,
};

/// The API configuration keys this authenticator reads.
pub const API_KEYS: &[&str] = &["EnablePasscodeLogin", "EnablePasswordProfileLogin"];

pub struct PasswordResetAuthenticator {
    host: HostServicesBox,
}

impl PasswordResetAuthenticator {
    pub fn new(host: HostServicesBox) -> Self {
        Self { host }
    }

    fn param(&self, p: Param) -> Result<Option<String>, PluginError> {
        match self.host.parameter(p.path().as_str().into()) {
            RResult::ROk(v) => Ok(v
                .into_option()
                .map(|s| s.into_string())
                .filter(|s| !s.trim().is_empty())),
            RResult::RErr(e) => Err(e),
        }
    }

    fn count(
        &self,
        p: Param,
        findings: &mut Vec<CheckFinding>,
    ) -> Result<Option<u32>, PluginError> {
        let Some(raw) = self.param(p)? else {
            return Ok(None);
        };
        match raw.trim().parse::<u32>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => {
                findings.push(CheckFinding::new(
                    Severity::ERROR,
                    p.path(),
                    format!("\"{raw}\" is not a whole number"),
                ));
                Ok(None)
            }
        }
    }
}

impl AuthenticatorImpl for PasswordResetAuthenticator {
    fn id(&self) -> String {
        "password-reset".to_owned()
    }

    /// Checks what can be checked without the database: the ApplicationToken is configured,
    /// the SearchTable settings are complete and valid identifiers, the question counts agree,
    /// and the API keys hold booleans.
    fn self_check(&self) -> Result<Vec<CheckFinding>, PluginError> {
        let mut findings = Vec::new();
        let token_name = Param::ApplicationToken.path();
        match self.host.connection_string(token_name.as_str().into()) {
            ROption::RSome(t) if !t.trim().is_empty() => {}
            _ => findings.push(CheckFinding::new(
                Severity::ERROR,
                format!("ConnectionStrings:{token_name}"),
                "not set: the authenticator refuses to work without the ApplicationToken in the host's ConnectionStrings",
            )),
        }

        let table = self.param(Param::SearchTable)?;
        let columns = self.param(Param::SearchColumn)?;
        match (&table, &columns) {
            (None, None) => findings.push(CheckFinding::new(
                Severity::INFO,
                Param::SearchTable.path(),
                "not set: only central accounts (Person.CentralAccount) can log in",
            )),
            (Some(_), None) => findings.push(CheckFinding::new(
                Severity::ERROR,
                Param::SearchColumn.path(),
                "not set, but SearchTable is: name the column(s) that hold login names, e.g. CN|SamAccountName",
            )),
            (None, Some(_)) => findings.push(CheckFinding::new(
                Severity::WARNING,
                Param::SearchColumn.path(),
                "set, but SearchTable is not: it is ignored",
            )),
            (Some(_), Some(_)) => {}
        }
        if let Some(t) = &table {
            if !is_identifier(t.trim()) {
                findings.push(CheckFinding::new(
                    Severity::ERROR,
                    Param::SearchTable.path(),
                    format!("\"{t}\" is not a valid table name (letters, digits and _, not starting with a digit)"),
                ));
            }
        }
        for p in [Param::SearchColumn, Param::DisabledBy, Param::EnabledBy] {
            if let Some(v) = self.param(p)? {
                if let Err(e) = parse_column_list(&v) {
                    findings.push(CheckFinding::new(Severity::ERROR, p.path(), e));
                }
            }
        }

        let definitions = self.count(Param::QueryAnswerDefinitions, &mut findings)?;
        let requests = self.count(Param::QueryAnswerRequests, &mut findings)?;
        if let (Some(d), Some(r)) = (definitions, requests) {
            if d < r {
                findings.push(CheckFinding::new(
                    Severity::ERROR,
                    Param::QueryAnswerDefinitions.path(),
                    format!("is {d}, fewer than QueryAnswerRequests ({r}): nobody could log in with questions"),
                ));
            }
        }
        if requests == Some(0) {
            findings.push(CheckFinding::new(
                Severity::ERROR,
                Param::QueryAnswerRequests.path(),
                "is 0: a question login would ask nothing",
            ));
        }

        for key in API_KEYS {
            if let RResult::ROk(ROption::RSome(v)) = self.host.api_key((*key).into()) {
                if parse_bool(&v).is_none() {
                    findings.push(CheckFinding::new(
                        Severity::ERROR,
                        format!("API key {key}"),
                        format!("\"{v}\" is not a boolean (true/false, 1/0)"),
                    ));
                }
            }
        }

        let errors = findings.iter().filter(|f| f.severity.is_error()).count();
        self.host.log(
            if errors > 0 {
                LogLevel::WARN
            } else {
                LogLevel::DEBUG
            },
            format!(
                "self-check: {} finding(s), {errors} error(s)",
                findings.len()
            )
            .as_str()
            .into(),
        );
        Ok(findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prp_plugin_api::abi_stable::sabi_trait::TD_Opaque;
    use prp_plugin_api::abi_stable::std_types::{RArc, RStr, RString};
    use prp_plugin_api::{HostServices, HostServices_TO, PluginResult};
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeHost {
        params: HashMap<String, String>,
        keys: HashMap<String, String>,
        connection_strings: HashMap<String, String>,
        logs: Mutex<Vec<String>>,
    }

    impl HostServices for FakeHost {
        fn parameter(&self, path: RStr<'_>) -> PluginResult<ROption<RString>> {
            RResult::ROk(
                self.params
                    .get(path.as_str())
                    .map(|v| RString::from(v.as_str()))
                    .into(),
            )
        }
        fn api_key(&self, key: RStr<'_>) -> PluginResult<ROption<RString>> {
            RResult::ROk(
                self.keys
                    .get(key.as_str())
                    .map(|v| RString::from(v.as_str()))
                    .into(),
            )
        }
        fn connection_string(&self, name: RStr<'_>) -> ROption<RString> {
            self.connection_strings
                .get(name.as_str())
                .map(|v| RString::from(v.as_str()))
                .into()
        }
        fn log(&self, _level: LogLevel, message: RStr<'_>) {
            if let Ok(mut logs) = self.logs.lock() {
                logs.push(message.to_string());
            }
        }
    }

    fn with(params: &[(Param, &str)], token: bool) -> Vec<CheckFinding> {
        let mut host = FakeHost::default();
        for (p, v) in params {
            host.params.insert(p.path(), (*v).to_owned());
        }
        if token {
            host.connection_strings
                .insert(Param::ApplicationToken.path(), "tok".into());
        }
        let auth =
            PasswordResetAuthenticator::new(HostServices_TO::from_ptr(RArc::new(host), TD_Opaque));
        auth.self_check().unwrap_or_default()
    }

    fn errors(findings: &[CheckFinding]) -> Vec<String> {
        findings
            .iter()
            .filter(|f| f.severity.is_error())
            .map(|f| format!("{}: {}", f.subject, f.message))
            .collect()
    }

    #[test]
    fn missing_token_is_an_error() {
        let e = errors(&with(&[], false));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("ApplicationToken") && e[0].contains("not set"),
            "{e:?}"
        );
        assert!(errors(&with(&[], true)).is_empty());
    }

    #[test]
    fn search_table_needs_valid_columns() {
        assert!(errors(&with(
            &[
                (Param::SearchTable, "ADSAccount"),
                (Param::SearchColumn, "CN|SamAccountName")
            ],
            true
        ))
        .is_empty());
        let e = errors(&with(&[(Param::SearchTable, "ADSAccount")], true));
        assert!(e[0].contains("SearchColumn"), "{e:?}");
        let e = errors(&with(
            &[
                (Param::SearchTable, "ADS;Account"),
                (Param::SearchColumn, "CN"),
            ],
            true,
        ));
        assert!(e[0].contains("not a valid table name"), "{e:?}");
        let e = errors(&with(
            &[
                (Param::SearchTable, "ADSAccount"),
                (Param::SearchColumn, "CN"),
                (Param::DisabledBy, "Locked|Dis abled"),
            ],
            true,
        ));
        assert!(
            e[0].contains("DisabledBy") && e[0].contains("\"Dis abled\""),
            "{e:?}"
        );
    }

    #[test]
    fn question_counts_must_agree() {
        let e = errors(&with(
            &[
                (Param::QueryAnswerDefinitions, "2"),
                (Param::QueryAnswerRequests, "3"),
            ],
            true,
        ));
        assert!(e[0].contains("fewer than QueryAnswerRequests"), "{e:?}");
        let e = errors(&with(&[(Param::QueryAnswerDefinitions, "many")], true));
        assert!(e[0].contains("not a whole number"), "{e:?}");
        assert!(errors(&with(
            &[
                (Param::QueryAnswerDefinitions, "3"),
                (Param::QueryAnswerRequests, "2")
            ],
            true
        ))
        .is_empty());
    }
}
