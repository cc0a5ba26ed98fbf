//! The authenticator: decides logins by passcode, password questions, or user name and
//! password, from the accounts the host's resolvers found. Secrets are checked by the host,
//! which hashes, counts failures and enforces locks; this decides which check applies and
//! whether the name may log in at all.

use crate::params::{parse_column_list, Param, Params, DEFAULT_DEFINITIONS, DEFAULT_REQUESTS};
use crate::questions;
use prp_plugin_api::abi_stable::std_types::{ROption, RResult, RString, RVec};
use prp_plugin_api::rules::{self, is_identifier, parse_flag};
use prp_plugin_api::{
    AccountQuery, AuthenticatorImpl, AuthenticatorPolicy, CheckFinding, HostServicesBox, LogLevel,
    LoginMethod, LoginOutcome, LoginRequest, PluginError, QuestionChallenge, ResolvedAccount,
    SessionGrant, Severity,
};
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

/// The API configuration keys this authenticator reads.
pub const PASSCODE_KEY: &str = "EnablePasscodeLogin";
pub const QUESTIONS_KEY: &str = "EnablePasswordProfileLogin";

pub struct PasswordResetAuthenticator {
    host: HostServicesBox,
    /// The ApplicationToken in the host's ConnectionStrings, read at first use: the host's
    /// connection strings are fixed for its lifetime (unlike the stored hash, read every call).
    configured_token: OnceLock<Option<String>>,
    /// The last ApplicationToken check: (stored hash, whether the configured token matched).
    token_check: Mutex<Option<(String, bool)>>,
}

/// Who a login name stands for, or why nobody.
enum Resolution<'a> {
    Person {
        uid: String,
        accounts: Vec<&'a ResolvedAccount>,
    },
    Nobody(String),
}

/// The one person the name stands for, by the shared rules ([`rules::resolve`]), with the
/// reason in words when nobody.
fn resolve(candidates: &[ResolvedAccount]) -> Resolution<'_> {
    if candidates.is_empty() {
        return Resolution::Nobody("unknown login name".into());
    }
    match rules::resolve(candidates) {
        rules::Resolution::Ambiguous(n) => Resolution::Nobody(format!(
            "ambiguous: the name matches accounts of {n} different persons"
        )),
        rules::Resolution::Person { uid, eligible } if !eligible.is_empty() => Resolution::Person {
            uid: uid.to_owned(),
            accounts: eligible,
        },
        rules::Resolution::Person { .. } | rules::Resolution::Nobody => {
            let why = candidates
                .iter()
                .filter_map(|c| c.refused_by.as_ref().into_option())
                .map(|r| r.to_string())
                .next()
                .unwrap_or_else(|| "no eligible account".into());
            Resolution::Nobody(format!("refused: {why}"))
        }
    }
}

fn describe(a: &ResolvedAccount) -> String {
    match a.account_uid.as_ref().into_option() {
        None => format!(
            "central account of person {} (matched {})",
            a.person_uid, a.matched_by
        ),
        Some(uid) => format!(
            "{} account {uid} of person {} (matched column {})",
            a.source,
            if a.person_uid.is_empty() {
                "(none)"
            } else {
                a.person_uid.as_str()
            },
            a.matched_by
        ),
    }
}

impl PasswordResetAuthenticator {
    pub fn new(host: HostServicesBox) -> Self {
        Self {
            host,
            configured_token: OnceLock::new(),
            token_check: Mutex::new(None),
        }
    }

    fn params(&self) -> Params<'_> {
        Params::new(&self.host)
    }

    /// Why the authenticator must refuse to work, as (subject, problem), when the host's
    /// ApplicationToken is missing or doesn't match the hash in the configuration store.
    /// Checked once per stored hash: a rotation is picked up on the next call.
    fn token_problem(&self, params: &Params) -> Result<Option<(String, String)>, PluginError> {
        let name = Param::ApplicationToken.path();
        let configured = self.configured_token.get_or_init(|| {
            match self.host.connection_string(name.as_str().into()) {
                ROption::RSome(t) if !t.trim().is_empty() => Some(t.into_string()),
                _ => None,
            }
        });
        let configured = match configured {
            Some(t) => t,
            None => {
                return Ok(Some((
                    format!("ConnectionStrings:{name}"),
                    "not set: the authenticator refuses to work without the ApplicationToken in the host's ConnectionStrings".into(),
                )))
            }
        };
        let Some(stored) = params.get(Param::ApplicationToken)? else {
            return Ok(Some((
                name,
                "no token hash is in force in the configuration store: none was stored, or a disabled parent disables it (`prp-host check` names a disabled branch). Store the hash of this server's configured token with `prp-host token adopt`, or make a new token with `prp-host token new`".into(),
            )));
        };
        let cached = self.token_check.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(hash, _)| *hash == stored)
                .map(|(_, ok)| *ok)
        });
        let ok = match cached {
            Some(ok) => ok,
            None => {
                let ok = self
                    .host
                    .verify_hash(stored.as_str().into(), configured.as_str().into())
                    .into_result()?;
                if let Ok(mut cache) = self.token_check.lock() {
                    *cache = Some((stored, ok));
                }
                ok
            }
        };
        Ok((!ok).then(|| {
            (
                format!("ConnectionStrings:{name}"),
                "does not match the token hash in the configuration store: the token was probably rotated. Paste the current token into this server's ConnectionStrings and restart it; or, if this server's token is the one to keep, store its hash with `prp-host token adopt` (every server with another token then refuses logins)".into(),
            )
        }))
    }

    /// The search-table settings, as a query to validate against the live schema.
    fn search_query(params: &Params) -> Result<Option<AccountQuery>, PluginError> {
        let Some(table) = params.get(Param::SearchTable)? else {
            return Ok(None);
        };
        let list = |p: Param| -> RVec<RString> {
            params
                .get(p)
                .ok()
                .flatten()
                .and_then(|v| parse_column_list(&v).ok())
                .unwrap_or_default()
                .into_iter()
                .map(RString::from)
                .collect()
        };
        Ok(Some(AccountQuery {
            table: RString::from(table.trim()),
            columns: list(Param::SearchColumn),
            disabled_by: list(Param::DisabledBy),
            enabled_by: list(Param::EnabledBy),
            login_name: RString::new(),
        }))
    }

    /// A warning for each `SearchColumn` column that has no index the host's case-folded
    /// search can use: every login would read the whole table. Each names the column and
    /// the statement that adds the index.
    fn index_findings(&self, query: &AccountQuery) -> Vec<CheckFinding> {
        let subject = Param::SearchColumn.path();
        match self.host.unindexed_login_columns(query) {
            RResult::ROk(missing) => missing
                .iter()
                .map(|m| {
                    CheckFinding::new(
                        Severity::WARNING,
                        subject.as_str(),
                        format!(
                            "{} has no index for login lookups, so each login reads the whole table; add one: {}",
                            m.column, m.create_index
                        ),
                    )
                })
                .collect(),
            RResult::RErr(e) => vec![CheckFinding::new(
                Severity::WARNING,
                subject,
                format!(
                    "could not check the indexes of the login-name columns: {}",
                    e.message
                ),
            )],
        }
    }

    /// Whether passcodes are split four-eyes (`PasscodeSplit`, unset: no).
    fn passcode_split(params: &Params) -> Result<bool, PluginError> {
        match params.get(Param::PasscodeSplit)? {
            None => Ok(false),
            Some(v) => parse_flag(&v).ok_or_else(|| {
                PluginError::config(format!(
                    "{}: \"{v}\" is not a boolean (1 or 0)",
                    Param::PasscodeSplit.path()
                ))
            }),
        }
    }

    fn counts(params: &Params) -> Result<(u32, u32), PluginError> {
        Ok((
            params.count(Param::QueryAnswerDefinitions, DEFAULT_DEFINITIONS)?,
            params.count(Param::QueryAnswerRequests, DEFAULT_REQUESTS)?,
        ))
    }

    /// The questions a person would be asked, or why questions can't be used.
    fn person_questions(
        &self,
        params: &Params,
        uid: &str,
    ) -> Result<Result<Vec<QuestionChallenge>, String>, PluginError> {
        if !params.key_on(QUESTIONS_KEY)? {
            return Ok(Err(format!("{QUESTIONS_KEY} is off")));
        }
        let (definitions, requests) = Self::counts(params)?;
        let all = self.host.questions(uid.into()).into_result()?;
        if (all.len() as u32) < definitions {
            return Ok(Err(format!(
                "the person has {} password questions, fewer than QueryAnswerDefinitions ({definitions})",
                all.len()
            )));
        }
        let unlocked = all.iter().filter(|q| !q.locked).count() as u32;
        if unlocked < requests {
            return Ok(Err(format!(
                "only {unlocked} unlocked questions left, fewer than QueryAnswerRequests ({requests})"
            )));
        }
        Ok(Ok(questions::select(
            &self.host,
            uid,
            &all,
            requests as usize,
        )?))
    }

    fn decide(&self, request: &LoginRequest) -> Result<LoginOutcome, PluginError> {
        let params = self.params();
        if let Some((subject, problem)) = self.token_problem(&params)? {
            let problem = format!("{subject}: {problem}");
            self.host.log(LogLevel::ERROR, problem.as_str().into());
            return Ok(LoginOutcome::deny(
                None,
                format!("authenticator disabled: {problem}"),
            ));
        }
        let (uid, accounts) = match resolve(&request.candidates) {
            Resolution::Nobody(why) => return Ok(LoginOutcome::deny(None, why)),
            Resolution::Person { uid, accounts } => (uid, accounts),
        };
        let Some(person) = self
            .host
            .person(uid.as_str().into())
            .into_result()?
            .into_option()
        else {
            return Ok(LoginOutcome::deny(
                None,
                format!("person {uid} does not exist"),
            ));
        };
        if person.inactive {
            return Ok(LoginOutcome::deny(
                Some(&uid),
                "person is inactive (IsInActive)",
            ));
        }
        let deny = |why: String| Ok(LoginOutcome::deny(Some(&uid), why));
        let via = accounts
            .iter()
            .map(|a| describe(a))
            .collect::<Vec<_>>()
            .join(", ");
        match request.method {
            LoginMethod::PASSWORD => {
                let owned: RVec<ResolvedAccount> = accounts.iter().map(|a| (*a).clone()).collect();
                let check = self
                    .host
                    .verify_password(
                        uid.as_str().into(),
                        owned.as_rslice(),
                        request.secret.as_str().into(),
                    )
                    .into_result()?;
                if check.is_ok() {
                    Ok(LoginOutcome::grant(
                        &uid,
                        SessionGrant::FULL,
                        format!("password accepted for {via}"),
                    ))
                } else {
                    deny(format!("password: {}", check.name()))
                }
            }
            LoginMethod::PASSCODE => {
                if !params.key_on(PASSCODE_KEY)? {
                    return deny(format!("passcode login is off ({PASSCODE_KEY})"));
                }
                let check = self
                    .host
                    .verify_passcode(uid.as_str().into(), request.secret.as_str().into())
                    .into_result()?;
                if check.is_ok() {
                    Ok(LoginOutcome::grant(
                        &uid,
                        SessionGrant::RESET,
                        format!("passcode accepted for {via}"),
                    ))
                } else {
                    deny(format!("passcode: {}", check.name()))
                }
            }
            LoginMethod::QUESTIONS => {
                let expected = match self.person_questions(&params, &uid)? {
                    Ok(q) => q,
                    Err(why) => return deny(format!("questions: {why}")),
                };
                let want: BTreeSet<&str> = expected.iter().map(|q| q.id.as_str()).collect();
                let got: BTreeSet<&str> = request
                    .answers
                    .iter()
                    .map(|a| a.question_id.as_str())
                    .collect();
                if want != got || got.len() != request.answers.len() {
                    return deny(
                        "questions: the answers are not to the questions that were asked".into(),
                    );
                }
                let check = self
                    .host
                    .verify_answers(uid.as_str().into(), request.answers.as_rslice())
                    .into_result()?;
                if !check.is_ok() {
                    return deny(format!("questions: {}", check.name()));
                }
                if params.flag(Param::InvalidateUsedQuery)? {
                    let ids: RVec<RString> = expected.iter().map(|q| q.id.clone()).collect();
                    self.host
                        .delete_questions(uid.as_str().into(), ids.as_rslice())
                        .into_result()?;
                }
                Ok(LoginOutcome::grant(
                    &uid,
                    SessionGrant::RESET,
                    format!("questions answered for {via}"),
                ))
            }
            other => deny(format!("unknown login method {other:?}")),
        }
    }
}

impl AuthenticatorImpl for PasswordResetAuthenticator {
    fn id(&self) -> String {
        "password-reset".to_owned()
    }

    /// Checks the ApplicationToken, the SearchTable settings (as values and against the live
    /// schema), the question counts and the API keys.
    fn self_check(&self) -> Result<Vec<CheckFinding>, PluginError> {
        let mut findings = Vec::new();
        let params = self.params();
        if let Some((subject, problem)) = self.token_problem(&params)? {
            findings.push(CheckFinding::new(Severity::ERROR, subject, problem));
        }
        let table = params.get(Param::SearchTable)?;
        let columns = params.get(Param::SearchColumn)?;
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
        let mut values_ok = true;
        if let Some(t) = &table {
            if !is_identifier(t.trim()) {
                values_ok = false;
                findings.push(CheckFinding::new(
                    Severity::ERROR,
                    Param::SearchTable.path(),
                    format!("\"{t}\" is not a valid table name (letters, digits and _, not starting with a digit)"),
                ));
            }
        }
        for p in [Param::SearchColumn, Param::DisabledBy, Param::EnabledBy] {
            if let Some(v) = params.get(p)? {
                if let Err(e) = parse_column_list(&v) {
                    values_ok = false;
                    findings.push(CheckFinding::new(Severity::ERROR, p.path(), e));
                }
            }
        }
        if values_ok && columns.is_some() {
            if let Some(query) = Self::search_query(&params)? {
                match self.host.search_accounts(&query) {
                    RResult::RErr(e) => findings.push(CheckFinding::new(
                        Severity::ERROR,
                        Param::SearchTable.path(),
                        e.message.to_string(),
                    )),
                    RResult::ROk(_) => findings.extend(self.index_findings(&query)),
                }
            }
        }

        let definitions = params.count(Param::QueryAnswerDefinitions, DEFAULT_DEFINITIONS);
        let requests = params.count(Param::QueryAnswerRequests, DEFAULT_REQUESTS);
        for r in [&definitions, &requests] {
            if let Err(e) = r {
                let (subject, message) = e
                    .message
                    .split_once(": ")
                    .unwrap_or(("", e.message.as_str()));
                findings.push(CheckFinding::new(Severity::ERROR, subject, message));
            }
        }
        if let (Ok(d), Ok(r)) = (definitions, requests) {
            if d < r {
                findings.push(CheckFinding::new(
                    Severity::ERROR,
                    Param::QueryAnswerDefinitions.path(),
                    format!("is {d}, fewer than QueryAnswerRequests ({r}): nobody could log in with questions"),
                ));
            }
            if r == 0 {
                findings.push(CheckFinding::new(
                    Severity::ERROR,
                    Param::QueryAnswerRequests.path(),
                    "is 0: a question login would ask nothing",
                ));
            }
        }
        if let Err(e) = Self::passcode_split(&params) {
            let (subject, message) = e
                .message
                .split_once(": ")
                .unwrap_or(("", e.message.as_str()));
            findings.push(CheckFinding::new(Severity::ERROR, subject, message));
        }
        for key in [PASSCODE_KEY, QUESTIONS_KEY] {
            if let Ok(Some(v)) = params.key(key) {
                if parse_flag(&v).is_none() {
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

    fn login(&self, request: &LoginRequest) -> Result<LoginOutcome, PluginError> {
        self.decide(request)
    }

    fn challenge(
        &self,
        login_name: &str,
        candidates: &[ResolvedAccount],
    ) -> Result<Vec<QuestionChallenge>, PluginError> {
        let params = self.params();
        let (_, requests) = Self::counts(&params)?;
        if self.token_problem(&params)?.is_none() {
            if let Resolution::Person { uid, .. } = resolve(candidates) {
                let person = self
                    .host
                    .person(uid.as_str().into())
                    .into_result()?
                    .into_option();
                if person.is_some_and(|p| !p.inactive) {
                    if let Ok(real) = self.person_questions(&params, &uid)? {
                        return Ok(real);
                    }
                }
            }
        }
        questions::decoys(&self.host, login_name, requests as usize)
    }

    fn explain(
        &self,
        login_name: &str,
        candidates: &[ResolvedAccount],
    ) -> Result<Vec<String>, PluginError> {
        let mut lines = Vec::new();
        let params = self.params();
        if let Some((subject, problem)) = self.token_problem(&params)? {
            lines.push(format!("every login is refused: {subject}: {problem}"));
        }
        let uid = match resolve(candidates) {
            Resolution::Nobody(why) => {
                lines.push(format!("\"{login_name}\" logs in as nobody: {why}"));
                return Ok(lines);
            }
            Resolution::Person { uid, accounts } => {
                for a in &accounts {
                    lines.push(format!("may log in through the {}", describe(a)));
                }
                uid
            }
        };
        match self
            .host
            .person(uid.as_str().into())
            .into_result()?
            .into_option()
        {
            None => {
                lines.push(format!("person {uid} does not exist: refused"));
                return Ok(lines);
            }
            Some(p) if p.inactive => {
                lines.push(format!(
                    "person {uid} ({} {}) is inactive: refused",
                    p.first_name, p.last_name
                ));
                return Ok(lines);
            }
            Some(p) => lines.push(format!(
                "resolves to person {uid} ({} {})",
                p.first_name, p.last_name
            )),
        }
        lines.push(
            "password: checked against the central password or the matched account's password"
                .into(),
        );
        lines.push(if params.key_on(PASSCODE_KEY)? {
            "passcode: allowed (EnablePasscodeLogin is on) when one was issued and is unexpired"
                .into()
        } else {
            "passcode: not allowed (EnablePasscodeLogin is off)".into()
        });
        lines.push(match self.person_questions(&params, &uid)? {
            Ok(q) => format!("questions: allowed; {} would be asked", q.len()),
            Err(why) => format!("questions: not allowed: {why}"),
        });
        Ok(lines)
    }

    /// The question counts and four-eyes passcodes, from this plugin's parameters as they are
    /// now. A value that is set but unreadable is an error naming the parameter: the host then
    /// refuses what depends on it rather than guess (a mistyped `PasscodeSplit` must not issue
    /// whole passcodes).
    fn policy(&self) -> Result<Option<AuthenticatorPolicy>, PluginError> {
        let params = self.params();
        let (questions_kept, questions_asked) = Self::counts(&params)?;
        Ok(Some(AuthenticatorPolicy {
            questions_kept,
            questions_asked,
            passcode_split: Self::passcode_split(&params)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(person: &str, account: Option<&str>, refused: Option<&str>) -> ResolvedAccount {
        ResolvedAccount {
            person_uid: person.into(),
            source: if account.is_some() {
                "ADSAccount"
            } else {
                "Person"
            }
            .into(),
            account_uid: account.map(RString::from).into(),
            matched_by: "CN".into(),
            refused_by: refused.map(RString::from).into(),
            resolver: "test".into(),
        }
    }

    fn nobody(r: Resolution<'_>) -> String {
        match r {
            Resolution::Nobody(why) => why,
            Resolution::Person { uid, .. } => panic!("resolved to {uid}"),
        }
    }

    #[test]
    fn the_self_check_warns_of_each_search_column_without_a_login_index() {
        use prp_plugin_api::testing::FakeHost;
        let fake = FakeHost::new(crate::PLUGIN_NAME);
        fake.set_parameter(&Param::SearchTable.path(), "ADSAccount")
            .set_parameter(&Param::SearchColumn.path(), "CN|SamAccountName");
        let auth = PasswordResetAuthenticator::new(fake.services());
        let warnings = |findings: Vec<CheckFinding>| -> Vec<CheckFinding> {
            findings
                .into_iter()
                .filter(|f| f.severity == Severity::WARNING)
                .collect()
        };
        assert!(warnings(auth.self_check().expect("check")).is_empty());

        fake.set_unindexed("ADSAccount", "CN");
        let found = warnings(auth.self_check().expect("check"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].subject, Param::SearchColumn.path().as_str());
        let message = found[0].message.as_str();
        assert!(
            message.starts_with("ADSAccount.CN has no index for login lookups")
                && message.contains("reads the whole table")
                && message.contains(r#"add one: CREATE INDEX "ADSAccount_CN_login""#),
            "{message}"
        );
    }

    #[test]
    fn no_match_is_unknown() {
        assert_eq!(nobody(resolve(&[])), "unknown login name");
    }

    #[test]
    fn two_persons_are_ambiguous_even_when_one_is_refused() {
        let c = [
            account("P1", None, None),
            account("P2", Some("A2"), Some("DisabledBy: Locked")),
        ];
        assert!(nobody(resolve(&c)).starts_with("ambiguous: the name matches accounts of 2"));
    }

    #[test]
    fn refused_accounts_say_why() {
        let c = [account("P1", Some("A1"), Some("EnabledBy: Enabled"))];
        assert_eq!(nobody(resolve(&c)), "refused: EnabledBy: Enabled");
    }

    #[test]
    fn an_account_of_nobody_does_not_make_a_refused_person_eligible() {
        let c = [
            account("P1", None, Some("person is inactive (IsInActive)")),
            account("", Some("A9"), None),
        ];
        assert_eq!(
            nobody(resolve(&c)),
            "refused: person is inactive (IsInActive)"
        );
    }

    #[test]
    fn one_person_through_several_accounts_resolves_to_the_eligible_ones() {
        let c = [
            account("P1", None, None),
            account("P1", Some("A1"), None),
            account("P1", Some("A2"), Some("DisabledBy: Disabled")),
        ];
        match resolve(&c) {
            Resolution::Person { uid, accounts } => {
                assert_eq!(uid, "P1");
                assert_eq!(accounts.len(), 2);
            }
            Resolution::Nobody(why) => panic!("{why}"),
        }
    }
}
