use crate::error::{ErrorKind, PluginError, PluginResult};
use crate::login::{
    AccountMatch, AccountQuery, PersonInfo, QuestionAnswer, SecretCheck, UnindexedColumn,
};
use crate::resolver::ResolvedAccount;
use abi_stable::sabi_trait;
use abi_stable::std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::StableAbi;

/// Severity of a log line a plugin sends through the host's logger.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Debug)]
pub struct LogLevel(u8);

impl LogLevel {
    pub const ERROR: Self = Self(1);
    pub const WARN: Self = Self(2);
    pub const INFO: Self = Self(3);
    pub const DEBUG: Self = Self(4);
    pub const TRACE: Self = Self(5);

    pub const fn code(self) -> u8 {
        self.0
    }
}

/// What the host offers a plugin. Implemented by the host; every method is synchronous and safe
/// to call from the blocking thread the host called the plugin on.
///
/// Data a plugin needs from the identity database reaches it through typed methods appended
/// here, never through a database handle: the host owns every connection, so no second copy of
/// SQLite ever opens the portal's database file, and no tokio or sqlx type crosses the ABI.
#[sabi_trait]
pub trait HostServices: Send + Sync + Clone {
    /// The value of a configuration parameter such as
    /// `QER\Person\PasswordResetAuthenticator\SearchTable`, or `None` when it is unset or not in
    /// force (it, or one of its parents, is disabled).
    fn parameter(&self, path: RStr<'_>) -> PluginResult<ROption<RString>>;

    /// The value of an API configuration key such as `EnablePasscodeLogin`, local overriding
    /// global, or `None` when it is unset.
    fn api_key(&self, key: RStr<'_>) -> PluginResult<ROption<RString>>;

    /// A connection string the host was configured with, by name, or `None`.
    fn connection_string(&self, name: RStr<'_>) -> ROption<RString>;

    /// Logs through the host's logger, tagged with the plugin's name. Never pass a secret.
    fn log(&self, level: LogLevel, message: RStr<'_>);

    /// The host's clock, in Unix seconds.
    fn now(&self) -> i64;

    /// HMAC-SHA256 of `data` under a random key the host keeps for `purpose` (shared by every
    /// server of the portal), as lowercase hex. For choices that must look random to outsiders
    /// and stay stable, such as decoy questions.
    fn keyed_digest(&self, purpose: RStr<'_>, data: RStr<'_>) -> PluginResult<RString>;

    /// Verifies `secret` against a PHC hash string (argon2) under the host's hashing limit.
    fn verify_hash(&self, phc: RStr<'_>, secret: RStr<'_>) -> PluginResult<bool>;

    /// Persons whose central account matches the login name (ASCII case-insensitively).
    fn persons_by_central_account(&self, login_name: RStr<'_>) -> PluginResult<RVec<PersonInfo>>;

    /// A person by `UID_Person`.
    fn person(&self, uid: RStr<'_>) -> PluginResult<ROption<PersonInfo>>;

    /// Accounts in a target-system table whose columns match the login name. Fails when the
    /// table or columns don't match the live schema.
    fn search_accounts(&self, query: &AccountQuery) -> PluginResult<RVec<AccountMatch>>;

    /// Checks a password for the person against the given matched accounts (the central
    /// account is `source` = `Person`): by the resolver that found an account when it verifies
    /// passwords itself, else by the hash the portal stores. Counts failures and enforces the
    /// password lock.
    fn verify_password(
        &self,
        person_uid: RStr<'_>,
        accounts: RSlice<'_, ResolvedAccount>,
        password: RStr<'_>,
    ) -> PluginResult<SecretCheck>;

    /// Checks and, when right, consumes the person's passcode, atomically: of concurrent
    /// logins with the same passcode exactly one gets `OK`. Counts wrong guesses.
    fn verify_passcode(
        &self,
        person_uid: RStr<'_>,
        passcode: RStr<'_>,
    ) -> PluginResult<SecretCheck>;

    /// The person's questions (never their answers).
    fn questions(&self, person_uid: RStr<'_>) -> PluginResult<RVec<QuestionInfo>>;

    /// Checks answers to the person's questions, counting wrong ones and locking questions.
    fn verify_answers(
        &self,
        person_uid: RStr<'_>,
        answers: RSlice<'_, QuestionAnswer>,
    ) -> PluginResult<SecretCheck>;

    /// Deletes the person's questions with these ids.
    #[sabi(last_prefix_field)]
    fn delete_questions(&self, person_uid: RStr<'_>, ids: RSlice<'_, RString>) -> PluginResult<()>;

    // ABI 1.1 appended the methods below. Their default bodies run in a plugin that meets a 1.0
    // host (whose vtable lacks them): they fail, saying so, rather than answer wrongly.

    /// The value of `Plugins:Settings:<this plugin's name>:<key>` from the host's configuration
    /// (appsettings.json, the XML `.config` form and the environment, layered as every other
    /// setting), or `None` when it is not set. Keys are case-insensitive. (ABI 1.1)
    fn setting(&self, key: RStr<'_>) -> PluginResult<ROption<RString>> {
        let _ = key;
        RResult::RErr(older_host("setting"))
    }

    /// The same setting as [`HostServices::setting`], as a path: a relative one is resolved
    /// against the directory of the configuration file, an absolute one is returned as it is.
    /// (ABI 1.1)
    fn setting_path(&self, key: RStr<'_>) -> PluginResult<ROption<RString>> {
        let _ = key;
        RResult::RErr(older_host("setting_path"))
    }

    /// An argon2id PHC hash of `secret` with the host's parameters, computed on the host's
    /// bounded hash workers. Check it later with [`HostServices::verify_hash`]. (ABI 1.1)
    fn hash_secret(&self, secret: RStr<'_>) -> PluginResult<RString> {
        let _ = secret;
        RResult::RErr(older_host("hash_secret"))
    }

    /// What is left, in milliseconds, of the deadline of the plugin call in progress on this
    /// thread (the host abandons the call when it runs out), or `None` outside a call. Use it
    /// as the timeout of a network request the call makes. (ABI 1.1)
    fn call_time_left_ms(&self) -> ROption<u64> {
        ROption::RNone
    }

    /// Persons whose `Person.<column>` equals `value` exactly. The column is checked against
    /// the live schema; an unknown one is an error of kind `config` naming it. (ABI 1.1)
    fn persons_by_column(
        &self,
        column: RStr<'_>,
        value: RStr<'_>,
    ) -> PluginResult<RVec<PersonInfo>> {
        let _ = (column, value);
        RResult::RErr(older_host("persons_by_column"))
    }

    /// One column of one person (`Person.<column>` of the row whose `UID_Person` is
    /// `person_uid`), `None` when the person doesn't exist or the value is NULL. The column is
    /// checked as for [`HostServices::persons_by_column`]. (ABI 1.1)
    fn person_column(
        &self,
        person_uid: RStr<'_>,
        column: RStr<'_>,
    ) -> PluginResult<ROption<RString>> {
        let _ = (person_uid, column);
        RResult::RErr(older_host("person_column"))
    }

    /// The login names of a person's accounts in a target-system table: the values of the
    /// query's `columns` in the rows of `table` that belong to `person_uid` (NULLs left out).
    /// The query is checked against the live schema as for [`HostServices::search_accounts`]
    /// (and fails the same way); its `login_name` is not used. (ABI 1.1)
    fn account_login_names(
        &self,
        query: &AccountQuery,
        person_uid: RStr<'_>,
    ) -> PluginResult<RVec<RString>> {
        let _ = (query, person_uid);
        RResult::RErr(older_host("account_login_names"))
    }

    /// The query's `columns` that have no index [`HostServices::search_accounts`] can use (it
    /// compares them case-folded), so that each search reads the whole table; each with the
    /// statement that adds one. The query is checked as for `search_accounts`; its
    /// `login_name` is not used. (ABI 1.1)
    fn unindexed_login_columns(&self, query: &AccountQuery) -> PluginResult<RVec<UnindexedColumn>> {
        let _ = query;
        RResult::RErr(older_host("unindexed_login_columns"))
    }
}

/// The error a 1.1 method gives when the host is a 1.0 host that doesn't have it.
fn older_host(method: &str) -> PluginError {
    PluginError::new(
        ErrorKind::UNAVAILABLE,
        format!("the host does not offer HostServices::{method} (it is older than ABI 1.1)"),
    )
}

/// One of a person's questions, without its answer.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct QuestionInfo {
    pub id: RString,
    pub question: RString,
    pub locked: bool,
}

/// The host's services as a plugin holds them: shareable and cheap to clone.
pub type HostServicesBox = HostServices_TO<'static, RArc<()>>;
