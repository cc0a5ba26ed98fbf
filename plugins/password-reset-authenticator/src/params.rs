//! The authenticator's configuration parameters and how their values are read.

use prp_plugin_api::rules::{is_identifier, parse_flag};
use prp_plugin_api::{HostServicesBox, PluginError};
use std::cell::RefCell;

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

/// Reads this plugin's parameters and API keys through the host services, each at most once:
/// one `Params` lives for one call from the host (a login, a challenge, a resolution) and is
/// handed down to everything that call decides, so a value is read only when the decision
/// needs it, and never twice. The next call reads again: changes apply at the next request.
pub struct Params<'a> {
    host: &'a HostServicesBox,
    values: RefCell<Vec<(Param, Option<String>)>>,
    keys: RefCell<Vec<(&'static str, Option<String>)>>,
}

impl<'a> Params<'a> {
    pub fn new(host: &'a HostServicesBox) -> Self {
        Self {
            host,
            values: RefCell::new(Vec::new()),
            keys: RefCell::new(Vec::new()),
        }
    }

    /// The value in force, `None` when unset, disabled or blank.
    pub fn get(&self, p: Param) -> Result<Option<String>, PluginError> {
        if let Some((_, v)) = self.values.borrow().iter().find(|(q, _)| *q == p) {
            return Ok(v.clone());
        }
        let value = self
            .host
            .parameter(p.path().as_str().into())
            .into_result()
            .map(|v| {
                v.into_option()
                    .map(|s| s.into_string())
                    .filter(|s| !s.trim().is_empty())
            })?;
        self.values.borrow_mut().push((p, value.clone()));
        Ok(value)
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
        Ok(self.get(p)?.and_then(|v| parse_flag(&v)).unwrap_or(false))
    }

    /// An API configuration key's value, `None` when unset.
    pub fn key(&self, key: &'static str) -> Result<Option<String>, PluginError> {
        if let Some((_, v)) = self.keys.borrow().iter().find(|(k, _)| *k == key) {
            return Ok(v.clone());
        }
        let value = self
            .host
            .api_key(key.into())
            .into_result()?
            .into_option()
            .map(|s| s.into_string());
        self.keys.borrow_mut().push((key, value.clone()));
        Ok(value)
    }

    /// An API configuration key as a boolean (unset or unreadable is false: fail closed).
    pub fn key_on(&self, key: &'static str) -> Result<bool, PluginError> {
        Ok(self.key(key)?.and_then(|s| parse_flag(&s)).unwrap_or(false))
    }
}

/// Defaults when the parameters are unset.
pub const DEFAULT_DEFINITIONS: u32 = 3;
pub const DEFAULT_REQUESTS: u32 = 2;

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

#[cfg(test)]
mod tests {
    use super::*;
    use prp_plugin_api::abi_stable::sabi_trait::TD_Opaque;
    use prp_plugin_api::abi_stable::std_types::{RArc, ROption, RSlice, RStr, RString, RVec};
    use prp_plugin_api::{
        AccountMatch, AccountQuery, HostServices, HostServices_TO, LogLevel, PersonInfo,
        PluginResult, QuestionAnswer, QuestionInfo, ResolvedAccount, SecretCheck,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A host that answers every parameter and key with "3" and counts the reads.
    #[derive(Clone, Default)]
    struct Counting {
        reads: Arc<AtomicUsize>,
        /// Parameters that answer otherwise, by the end of their path.
        answers: Vec<(&'static str, &'static str)>,
    }

    fn unsupported<T>() -> PluginResult<T> {
        Err(PluginError::config("not in this test")).into()
    }

    impl HostServices for Counting {
        fn parameter(&self, path: RStr<'_>) -> PluginResult<ROption<RString>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let value = self
                .answers
                .iter()
                .find(|(end, _)| path.as_str().ends_with(end))
                .map_or("3", |(_, v)| *v);
            Ok(ROption::RSome(RString::from(value))).into()
        }
        fn api_key(&self, _: RStr<'_>) -> PluginResult<ROption<RString>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(ROption::RSome(RString::from("true"))).into()
        }
        fn connection_string(&self, _: RStr<'_>) -> ROption<RString> {
            ROption::RNone
        }
        fn log(&self, _: LogLevel, _: RStr<'_>) {}
        fn now(&self) -> i64 {
            0
        }
        fn keyed_digest(&self, _: RStr<'_>, _: RStr<'_>) -> PluginResult<RString> {
            unsupported()
        }
        fn verify_hash(&self, _: RStr<'_>, _: RStr<'_>) -> PluginResult<bool> {
            unsupported()
        }
        fn persons_by_central_account(&self, _: RStr<'_>) -> PluginResult<RVec<PersonInfo>> {
            unsupported()
        }
        fn person(&self, _: RStr<'_>) -> PluginResult<ROption<PersonInfo>> {
            unsupported()
        }
        fn search_accounts(&self, _: &AccountQuery) -> PluginResult<RVec<AccountMatch>> {
            unsupported()
        }
        fn verify_password(
            &self,
            _: RStr<'_>,
            _: RSlice<'_, ResolvedAccount>,
            _: RStr<'_>,
        ) -> PluginResult<SecretCheck> {
            unsupported()
        }
        fn verify_passcode(&self, _: RStr<'_>, _: RStr<'_>) -> PluginResult<SecretCheck> {
            unsupported()
        }
        fn questions(&self, _: RStr<'_>) -> PluginResult<RVec<QuestionInfo>> {
            unsupported()
        }
        fn verify_answers(
            &self,
            _: RStr<'_>,
            _: RSlice<'_, QuestionAnswer>,
        ) -> PluginResult<SecretCheck> {
            unsupported()
        }
        fn delete_questions(&self, _: RStr<'_>, _: RSlice<'_, RString>) -> PluginResult<()> {
            unsupported()
        }
    }

    #[test]
    fn each_parameter_and_key_is_read_once_per_params() {
        let host = Counting::default();
        let reads = Arc::clone(&host.reads);
        let boxed: HostServicesBox = HostServices_TO::from_ptr(RArc::new(host), TD_Opaque);
        let params = Params::new(&boxed);
        for _ in 0..3 {
            assert_eq!(params.count(Param::QueryAnswerRequests, 2).ok(), Some(3));
            assert_eq!(
                params.get(Param::SearchTable).ok().flatten().as_deref(),
                Some("3")
            );
            assert_eq!(params.key_on("EnablePasscodeLogin").ok(), Some(true));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        // The next call from the host reads again: changes apply at the next request.
        let next = Params::new(&boxed);
        assert_eq!(next.count(Param::QueryAnswerRequests, 2).ok(), Some(3));
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }

    /// The policy the host asks for, from this plugin's parameters.
    fn policy_with(
        answers: Vec<(&'static str, &'static str)>,
    ) -> Result<Option<prp_plugin_api::AuthenticatorPolicy>, PluginError> {
        use prp_plugin_api::AuthenticatorImpl;
        let host = Counting {
            answers,
            ..Counting::default()
        };
        let boxed: HostServicesBox = HostServices_TO::from_ptr(RArc::new(host), TD_Opaque);
        crate::PasswordResetAuthenticator::new(boxed).policy()
    }

    #[test]
    fn the_policy_is_computed_from_the_parameters() {
        let policy = policy_with(vec![
            ("QueryAnswerDefinitions", "5"),
            ("QueryAnswerRequests", "2"),
            ("PasscodeSplit", "Yes"),
        ]);
        assert_eq!(
            policy.ok().flatten(),
            Some(prp_plugin_api::AuthenticatorPolicy {
                questions_kept: 5,
                questions_asked: 2,
                passcode_split: true,
            })
        );
        let off = policy_with(vec![("PasscodeSplit", "0")]);
        assert_eq!(off.ok().flatten().map(|p| p.passcode_split), Some(false));
        // A value that is set but unreadable is an error naming the parameter, never a guess.
        let bad = policy_with(vec![("PasscodeSplit", "perhaps")]).unwrap_err();
        assert!(
            bad.message
                .contains(r#"PasswordResetAuthenticator\PasscodeSplit: "perhaps""#),
            "{}",
            bad.message
        );
        let bad =
            policy_with(vec![("PasscodeSplit", "1"), ("QueryAnswerRequests", "two")]).unwrap_err();
        assert!(
            bad.message.contains("QueryAnswerRequests"),
            "{}",
            bad.message
        );
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
    fn paths() {
        assert_eq!(
            Param::SearchTable.path(),
            r"QER\Person\PasswordResetAuthenticator\SearchTable"
        );
    }
}
