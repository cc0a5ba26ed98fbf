//! A fake host for a plugin's own unit tests (feature `testing`): an in-memory
//! [`HostServices`] with settings, persons, parameters, API keys, connection strings, password
//! hashing and log capture, so that a plugin crate can test itself outside the prp repository:
//!
//! ```toml
//! [dev-dependencies]
//! prp-plugin-api = { version = "1.1", features = ["testing"] }
//! ```
//!
//! ```ignore
//! let fake = FakeHost::new("my-resolver");
//! fake.set_setting("AccountsFile", "accounts.txt").set_config_dir(dir.path());
//! fake.add_person(testing::person("p-1", "alice"), &[("Mail", "a@x")]);
//! let host = fake.services();           // the HostServicesBox `init` receives
//! let plugin = MyResolver::new(&host)?;
//! assert!(fake.logs().iter().any(|(level, line)| line.contains("loaded")));
//! ```
//!
//! `hash_secret` and `verify_hash` are real argon2id (m = 19 MiB, t = 2, p = 1, the host's
//! minimum), so a hash made here verifies in the real host and the other way round. Everything
//! else is a plain in-memory table: what the real host checks against the live database schema
//! (`persons_by_column`, `person_column`) the fake checks against the columns its persons have;
//! accounts (`add_account`) serve `search_accounts` and `account_login_names`, and every column
//! counts as indexed unless [`FakeHost::set_unindexed`] says otherwise. Never use it outside
//! tests.

use crate::error::{ErrorKind, PluginError, PluginResult};
use crate::host::{HostServices, HostServicesBox, HostServices_TO, LogLevel, QuestionInfo};
use crate::login::{
    AccountMatch, AccountQuery, PersonInfo, QuestionAnswer, SecretCheck, UnindexedColumn,
};
use crate::resolver::ResolvedAccount;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The columns every fake person has, as the host's `Person` table names them.
const PERSON_COLUMNS: [&str; 6] = [
    "UID_Person",
    "CentralAccount",
    "FirstName",
    "LastName",
    "UID_PersonHead",
    "IsInactive",
];

#[derive(Default)]
struct State {
    /// Keyed by the lower-cased setting key.
    settings: BTreeMap<String, String>,
    config_dir: Option<PathBuf>,
    parameters: BTreeMap<String, String>,
    api_keys: BTreeMap<String, String>,
    connection_strings: BTreeMap<String, String>,
    persons: Vec<FakePerson>,
    /// Extra `Person` columns, lower-cased name to the name as given.
    columns: BTreeMap<String, String>,
    password_hashes: BTreeMap<String, String>,
    accounts: Vec<(String, AccountMatch)>,
    /// `(table, column)` pairs `unindexed_login_columns` reports.
    unindexed: Vec<(String, String)>,
    questions: BTreeMap<String, Vec<QuestionInfo>>,
    logs: Vec<(LogLevel, String)>,
    time_left_ms: Option<u64>,
    now: Option<i64>,
}

struct FakePerson {
    info: PersonInfo,
    /// Keyed by the lower-cased column name.
    columns: BTreeMap<String, String>,
}

/// An in-memory host. Clones share their state, so keep one to inspect what the plugin did
/// (its log lines) and to change settings between calls; hand [`FakeHost::services`] to the
/// plugin.
#[derive(Clone)]
pub struct FakeHost {
    plugin: Arc<str>,
    state: Arc<Mutex<State>>,
}

impl FakeHost {
    /// A host with nothing configured, serving the plugin named `plugin`.
    pub fn new(plugin: &str) -> Self {
        Self {
            plugin: Arc::from(plugin),
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The services object a plugin's `init` receives.
    pub fn services(&self) -> HostServicesBox {
        HostServices_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    /// Sets `Plugins:Settings:<plugin>:<key>` (keys are case-insensitive, as in the host).
    pub fn set_setting(&self, key: &str, value: &str) -> &Self {
        self.state()
            .settings
            .insert(key.to_ascii_lowercase(), value.to_owned());
        self
    }

    /// Removes a setting.
    pub fn unset_setting(&self, key: &str) -> &Self {
        self.state().settings.remove(&key.to_ascii_lowercase());
        self
    }

    /// The directory relative setting paths resolve against (the host: the configuration
    /// file's directory). Unset, `setting_path` returns relative paths as they are.
    pub fn set_config_dir(&self, dir: impl AsRef<Path>) -> &Self {
        self.state().config_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn set_parameter(&self, path: &str, value: &str) -> &Self {
        self.state()
            .parameters
            .insert(path.to_owned(), value.to_owned());
        self
    }

    pub fn set_api_key(&self, key: &str, value: &str) -> &Self {
        self.state()
            .api_keys
            .insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn set_connection_string(&self, name: &str, value: &str) -> &Self {
        self.state()
            .connection_strings
            .insert(name.to_owned(), value.to_owned());
        self
    }

    /// Adds a person, with values of further `Person` columns (e.g. `("Mail", "a@x")`).
    pub fn add_person(&self, info: PersonInfo, extra_columns: &[(&str, &str)]) -> &Self {
        let mut state = self.state();
        let mut columns = BTreeMap::new();
        for (column, value) in extra_columns {
            let lower = column.to_ascii_lowercase();
            state
                .columns
                .entry(lower.clone())
                .or_insert_with(|| (*column).to_owned());
            columns.insert(lower, (*value).to_owned());
        }
        state.persons.push(FakePerson { info, columns });
        self
    }

    /// Stores the person's portal password (hashed here), for `verify_password`.
    pub fn set_password(&self, person_uid: &str, password: &str) -> Result<&Self, PluginError> {
        let phc = hash(password)?;
        self.state()
            .password_hashes
            .insert(person_uid.to_owned(), phc);
        Ok(self)
    }

    /// Adds an account `search_accounts` finds for `login_name` in `account.table`; with its
    /// `person_uid`, `account_login_names` lists `login_name` for a query of `account.table`
    /// that names `account.matched_column`.
    pub fn add_account(&self, login_name: &str, account: AccountMatch) -> &Self {
        self.state().accounts.push((login_name.to_owned(), account));
        self
    }

    /// Makes `unindexed_login_columns` report `table.column` as lacking an index.
    pub fn set_unindexed(&self, table: &str, column: &str) -> &Self {
        self.state()
            .unindexed
            .push((table.to_owned(), column.to_owned()));
        self
    }

    /// Gives the person questions (for `questions`; answers are never checked by the fake).
    pub fn set_questions(&self, person_uid: &str, questions: Vec<QuestionInfo>) -> &Self {
        self.state()
            .questions
            .insert(person_uid.to_owned(), questions);
        self
    }

    /// What `call_time_left_ms` answers: `Some` as inside a host call, `None` (the default)
    /// as outside one.
    pub fn set_time_left_ms(&self, left: Option<u64>) -> &Self {
        self.state().time_left_ms = left;
        self
    }

    /// Fixes the clock (`now`); unset, it is the system clock.
    pub fn set_now(&self, unix_seconds: i64) -> &Self {
        self.state().now = Some(unix_seconds);
        self
    }

    /// Every line the plugin logged, in order.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.state().logs.clone()
    }

    /// Whether some logged line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.state().logs.iter().any(|(_, l)| l.contains(needle))
    }

    fn column_name(&self, state: &State, column: &str) -> Result<String, PluginError> {
        let lower = column.to_ascii_lowercase();
        if PERSON_COLUMNS
            .iter()
            .any(|c| c.eq_ignore_ascii_case(column))
            || state.columns.contains_key(&lower)
        {
            Ok(lower)
        } else {
            Err(PluginError::config(format!(
                "the column Person.{column} does not exist"
            )))
        }
    }
}

fn argon2() -> Result<Argon2<'static>, PluginError> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| PluginError::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash(secret: &str) -> Result<String, PluginError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|e| PluginError::new(ErrorKind::UNAVAILABLE, format!("no randomness: {e}")))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| PluginError::internal(format!("salt: {e}")))?;
    argon2()?
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PluginError::internal(format!("hashing: {e}")))
}

fn verify(phc: &str, secret: &str) -> Result<bool, PluginError> {
    let parsed = PasswordHash::new(phc)
        .map_err(|e| PluginError::new(ErrorKind::INVALID_INPUT, format!("not a PHC hash: {e}")))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(PluginError::new(
            ErrorKind::INVALID_INPUT,
            "only argon2id hashes are verified",
        ));
    }
    Ok(Argon2::default()
        .verify_password(secret.as_bytes(), &parsed)
        .is_ok())
}

fn column_value(person: &FakePerson, lower: &str) -> Option<String> {
    let info = &person.info;
    match lower {
        "uid_person" => Some(info.uid.to_string()),
        "centralaccount" => Some(info.central_account.to_string()),
        "firstname" => Some(info.first_name.to_string()),
        "lastname" => Some(info.last_name.to_string()),
        "uid_personhead" => info
            .manager_uid
            .clone()
            .into_option()
            .map(|s| s.into_string()),
        "isinactive" => Some(if info.inactive { "1" } else { "0" }.to_owned()),
        other => person.columns.get(other).cloned(),
    }
}

fn ok<T>(value: T) -> PluginResult<T> {
    RResult::ROk(value)
}

impl HostServices for FakeHost {
    fn parameter(&self, path: RStr<'_>) -> PluginResult<ROption<RString>> {
        ok(self
            .state()
            .parameters
            .get(path.as_str())
            .map(|v| RString::from(v.as_str()))
            .into())
    }
    fn api_key(&self, key: RStr<'_>) -> PluginResult<ROption<RString>> {
        ok(self
            .state()
            .api_keys
            .get(key.as_str())
            .map(|v| RString::from(v.as_str()))
            .into())
    }
    fn connection_string(&self, name: RStr<'_>) -> ROption<RString> {
        self.state()
            .connection_strings
            .get(name.as_str())
            .map(|v| RString::from(v.as_str()))
            .into()
    }
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.state().logs.push((level, message.to_string()));
    }
    fn now(&self) -> i64 {
        self.state().now.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default()
        })
    }
    fn keyed_digest(&self, purpose: RStr<'_>, data: RStr<'_>) -> PluginResult<RString> {
        // Stable and distinct per purpose and data, like the host's HMAC; not a MAC.
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (purpose.as_str(), data.as_str()).hash(&mut h);
        ok(RString::from(format!("{:016x}", h.finish())))
    }
    fn verify_hash(&self, phc: RStr<'_>, secret: RStr<'_>) -> PluginResult<bool> {
        verify(phc.as_str(), secret.as_str()).into()
    }
    fn persons_by_central_account(&self, login_name: RStr<'_>) -> PluginResult<RVec<PersonInfo>> {
        let state = self.state();
        ok(state
            .persons
            .iter()
            .filter(|p| {
                p.info
                    .central_account
                    .eq_ignore_ascii_case(login_name.as_str())
            })
            .map(|p| p.info.clone())
            .collect())
    }
    fn person(&self, uid: RStr<'_>) -> PluginResult<ROption<PersonInfo>> {
        let state = self.state();
        ok(state
            .persons
            .iter()
            .find(|p| p.info.uid == uid.as_str())
            .map(|p| p.info.clone())
            .into())
    }
    fn search_accounts(&self, query: &AccountQuery) -> PluginResult<RVec<AccountMatch>> {
        let state = self.state();
        ok(state
            .accounts
            .iter()
            .filter(|(name, a)| {
                a.table == query.table && name.eq_ignore_ascii_case(query.login_name.as_str())
            })
            .map(|(_, a)| a.clone())
            .collect())
    }
    fn verify_password(
        &self,
        person_uid: RStr<'_>,
        _accounts: RSlice<'_, ResolvedAccount>,
        password: RStr<'_>,
    ) -> PluginResult<SecretCheck> {
        let phc = self
            .state()
            .password_hashes
            .get(person_uid.as_str())
            .cloned();
        match phc {
            None => ok(SecretCheck::NONE),
            Some(phc) => verify(&phc, password.as_str())
                .map(|right| {
                    if right {
                        SecretCheck::OK
                    } else {
                        SecretCheck::WRONG
                    }
                })
                .into(),
        }
    }
    fn verify_passcode(
        &self,
        _person_uid: RStr<'_>,
        _passcode: RStr<'_>,
    ) -> PluginResult<SecretCheck> {
        ok(SecretCheck::NONE)
    }
    fn questions(&self, person_uid: RStr<'_>) -> PluginResult<RVec<QuestionInfo>> {
        let state = self.state();
        ok(state
            .questions
            .get(person_uid.as_str())
            .cloned()
            .unwrap_or_default()
            .into())
    }
    fn verify_answers(
        &self,
        _person_uid: RStr<'_>,
        _answers: RSlice<'_, QuestionAnswer>,
    ) -> PluginResult<SecretCheck> {
        ok(SecretCheck::NONE)
    }
    fn delete_questions(&self, person_uid: RStr<'_>, ids: RSlice<'_, RString>) -> PluginResult<()> {
        if let Some(qs) = self.state().questions.get_mut(person_uid.as_str()) {
            qs.retain(|q| !ids.contains(&q.id));
        }
        ok(())
    }
    fn setting(&self, key: RStr<'_>) -> PluginResult<ROption<RString>> {
        let state = self.state();
        ok(state
            .settings
            .get(&key.as_str().to_ascii_lowercase())
            .map(|v| RString::from(v.as_str()))
            .into())
    }
    fn setting_path(&self, key: RStr<'_>) -> PluginResult<ROption<RString>> {
        let state = self.state();
        let Some(value) = state.settings.get(&key.as_str().to_ascii_lowercase()) else {
            return ok(ROption::RNone);
        };
        let path = match &state.config_dir {
            Some(dir) => dir.join(value),
            None => PathBuf::from(value),
        };
        ok(ROption::RSome(RString::from(
            path.to_string_lossy().into_owned(),
        )))
    }
    fn hash_secret(&self, secret: RStr<'_>) -> PluginResult<RString> {
        hash(secret.as_str()).map(RString::from).into()
    }
    fn call_time_left_ms(&self) -> ROption<u64> {
        self.state().time_left_ms.into()
    }
    fn persons_by_column(
        &self,
        column: RStr<'_>,
        value: RStr<'_>,
    ) -> PluginResult<RVec<PersonInfo>> {
        let state = self.state();
        let lower = match self.column_name(&state, column.as_str()) {
            Ok(l) => l,
            Err(e) => return RResult::RErr(e),
        };
        ok(state
            .persons
            .iter()
            .filter(|p| column_value(p, &lower).as_deref() == Some(value.as_str()))
            .map(|p| p.info.clone())
            .collect())
    }
    fn person_column(
        &self,
        person_uid: RStr<'_>,
        column: RStr<'_>,
    ) -> PluginResult<ROption<RString>> {
        let state = self.state();
        let lower = match self.column_name(&state, column.as_str()) {
            Ok(l) => l,
            Err(e) => return RResult::RErr(e),
        };
        ok(state
            .persons
            .iter()
            .find(|p| p.info.uid == person_uid.as_str())
            .and_then(|p| column_value(p, &lower))
            .map(|v| RString::from(v.as_str()))
            .into())
    }
    fn account_login_names(
        &self,
        query: &AccountQuery,
        person_uid: RStr<'_>,
    ) -> PluginResult<RVec<RString>> {
        let state = self.state();
        let mut out: Vec<RString> = Vec::new();
        for (name, a) in &state.accounts {
            let theirs = a.person_uid.as_ref().into_option().map(|p| p.as_str())
                == Some(person_uid.as_str());
            let searched = query
                .columns
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&a.matched_column));
            if a.table == query.table && theirs && searched && !out.iter().any(|n| n == name) {
                out.push(RString::from(name.as_str()));
            }
        }
        ok(RVec::from(out))
    }
    fn unindexed_login_columns(&self, query: &AccountQuery) -> PluginResult<RVec<UnindexedColumn>> {
        let state = self.state();
        ok(query
            .columns
            .iter()
            .filter(|c| {
                state
                    .unindexed
                    .iter()
                    .any(|(t, u)| t.eq_ignore_ascii_case(&query.table) && u.eq_ignore_ascii_case(c))
            })
            .map(|c| {
                let t = &query.table;
                UnindexedColumn {
                    column: format!("{t}.{c}").into(),
                    create_index: format!(
                        "CREATE INDEX \"{t}_{c}_login\" ON \"{t}\" (lower(\"{c}\"));"
                    )
                    .into(),
                }
            })
            .collect())
    }
}

impl FakeHost {
    /// The plugin name this host was made for.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }
}

/// A person with this uid and central account, active, for [`FakeHost::add_person`].
pub fn person(uid: &str, central_account: &str) -> PersonInfo {
    PersonInfo {
        uid: uid.into(),
        central_account: central_account.into(),
        first_name: RString::new(),
        last_name: RString::new(),
        manager_uid: ROption::RNone,
        inactive: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_wrong_secrets_dont() {
        let host = FakeHost::new("p").services();
        let phc = host.hash_secret("pw".into()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(host.verify_hash(phc.as_rstr(), "pw".into()).unwrap());
        assert!(!host.verify_hash(phc.as_rstr(), "PW".into()).unwrap());
        assert!(host.verify_hash("nonsense".into(), "pw".into()).is_err());
    }

    #[test]
    fn persons_by_column_checks_the_column_and_matches_exactly() {
        let fake = FakeHost::new("p");
        fake.add_person(person("p-1", "alice"), &[("Mail", "a@example.org")])
            .add_person(person("p-2", "bob"), &[("Mail", "b@example.org")]);
        let host = fake.services();
        let found = host
            .persons_by_column("mail".into(), "b@example.org".into())
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].uid, "p-2");
        assert!(host
            .persons_by_column("Mail".into(), "B@example.org".into())
            .unwrap()
            .is_empty());
        let err = host
            .persons_by_column("Nope".into(), "x".into())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::CONFIG);
        assert!(err.message.contains("Person.Nope"));
        assert_eq!(
            host.person_column("p-1".into(), "CentralAccount".into())
                .unwrap()
                .into_option()
                .map(|s| s.into_string()),
            Some("alice".to_owned())
        );
    }

    #[test]
    fn accounts_give_their_login_names_and_unindexed_columns_are_reported() {
        let fake = FakeHost::new("p");
        let account = |uid: &str, person: Option<&str>, column: &str| AccountMatch {
            table: "Accounts".into(),
            account_uid: uid.into(),
            person_uid: person.map(RString::from).into(),
            matched_column: column.into(),
            refused_by: ROption::RNone,
        };
        fake.add_account("alice", account("A-1", Some("p-1"), "Login"))
            .add_account("Alice A", account("A-1", Some("p-1"), "Name"))
            .add_account("bob", account("A-2", Some("p-2"), "Login"))
            .add_account("orphan", account("A-3", None, "Login"))
            .set_unindexed("accounts", "name");
        let host = fake.services();
        let query = AccountQuery {
            table: "Accounts".into(),
            columns: RVec::from(vec![RString::from("login")]),
            disabled_by: RVec::new(),
            enabled_by: RVec::new(),
            login_name: RString::new(),
        };
        let names = host.account_login_names(&query, "p-1".into()).unwrap();
        assert_eq!(names, RVec::from(vec![RString::from("alice")]));
        assert!(host.unindexed_login_columns(&query).unwrap().is_empty());
        let both = AccountQuery {
            columns: RVec::from(vec![RString::from("Login"), RString::from("Name")]),
            ..query
        };
        let names = host.account_login_names(&both, "p-1".into()).unwrap();
        assert_eq!(names.len(), 2, "{names:?}");
        let missing = host.unindexed_login_columns(&both).unwrap();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].column, "Accounts.Name");
        assert!(missing[0].create_index.starts_with("CREATE INDEX"));
    }

    #[test]
    fn logs_are_captured_and_passwords_checked() {
        let fake = FakeHost::new("p");
        fake.add_person(person("p-1", "alice"), &[]);
        fake.set_password("p-1", "right").unwrap();
        let host = fake.services();
        host.log(LogLevel::WARN, "hello".into());
        assert!(fake.logged("hello"));
        assert_eq!(fake.logs()[0].0, LogLevel::WARN);
        let none = RSlice::from_slice(&[]);
        assert_eq!(
            host.verify_password("p-1".into(), none, "right".into())
                .unwrap(),
            SecretCheck::OK
        );
        assert_eq!(
            host.verify_password("p-1".into(), none, "wrong".into())
                .unwrap(),
            SecretCheck::WRONG
        );
        assert_eq!(
            host.verify_password("p-2".into(), none, "x".into())
                .unwrap(),
            SecretCheck::NONE
        );
        assert_eq!(host.call_time_left_ms(), ROption::RNone);
        fake.set_time_left_ms(Some(500));
        assert_eq!(host.call_time_left_ms(), ROption::RSome(500));
    }
}
