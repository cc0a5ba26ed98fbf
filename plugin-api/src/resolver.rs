use crate::error::{PluginError, PluginResult};
use crate::guard::guarded;
use crate::login::SecretCheck;
use crate::plugin::CheckFinding;
use abi_stable::sabi_trait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::StableAbi;

/// One account a login name resolved to. Build it with [`ResolvedAccount::new`] and, for an
/// account that may not log in, [`ResolvedAccount::refused_by`]; docs/writing-a-resolver.md
/// says what each field means to the host.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ResolvedAccount {
    /// The person the account belongs to (`Person.UID_Person`).
    pub person_uid: RString,
    /// Where the account lives: `Person` for the central account, else a table or system name.
    pub source: RString,
    /// The account's key in that source; `None` for the central account.
    pub account_uid: ROption<RString>,
    /// The column or attribute that matched the login name.
    pub matched_by: RString,
    /// Why this account may not log in (e.g. `DisabledBy: Locked`), or `None` when it may.
    pub refused_by: ROption<RString>,
    /// The id of the resolver that found it (filled in by the host).
    pub resolver: RString,
}

impl ResolvedAccount {
    /// An account of `person_uid` in `source` (a table or system name, shown to people with
    /// the account), keyed `account_uid` there (`None` only for the central account), found by
    /// `matched_by` (the attribute or column that matched). It may log in; the host fills in
    /// `resolver`.
    pub fn new(
        person_uid: impl Into<String>,
        source: impl Into<String>,
        account_uid: Option<&str>,
        matched_by: impl Into<String>,
    ) -> Self {
        Self {
            person_uid: RString::from(person_uid.into()),
            source: RString::from(source.into()),
            account_uid: account_uid.map(RString::from).into(),
            matched_by: RString::from(matched_by.into()),
            refused_by: ROption::RNone,
            resolver: RString::new(),
        }
    }

    /// The same account, refused for `reason` (e.g. `disabled: pwdAccountLockedTime`): the
    /// host denies a login through it and tells operators why, never the person.
    pub fn refused_by(mut self, reason: impl Into<String>) -> Self {
        self.refused_by = ROption::RSome(RString::from(reason.into()));
        self
    }

    /// The account's key in its source, `None` for the central account.
    pub fn account_key(&self) -> Option<&str> {
        self.account_uid.as_ref().map(|u| u.as_str()).into_option()
    }

    /// Whether the account may log in (it is not refused).
    pub fn is_usable(&self) -> bool {
        self.refused_by.is_none()
    }
}

/// A target-system resolver: maps a login name to persons and accounts. Third parties implement
/// [`ResolverImpl`] (e.g. for a directory) and wrap it with [`resolver_box`].
#[sabi_trait]
pub trait Resolver: Send + Sync {
    /// Stable identifier, used in configuration and logs.
    fn id(&self) -> RString;

    /// Every account whose login name matches, refused ones included (with the reason), so the
    /// host can explain a refusal to an operator. An empty list means no match.
    fn resolve(&self, login_name: RStr<'_>) -> PluginResult<RVec<ResolvedAccount>>;

    /// Verifies an account's password in the resolver's own system (e.g. a directory bind).
    /// `SecretCheck::UNSUPPORTED` means "use the password hash the portal stores".
    fn verify_password(
        &self,
        account: &ResolvedAccount,
        password: RStr<'_>,
    ) -> PluginResult<SecretCheck>;

    /// The accounts of a person in the resolver's own system, to list among the person's
    /// password items (the host lists the central account and the configured tables itself).
    fn accounts_of(&self, person_uid: RStr<'_>) -> PluginResult<RVec<ResolvedAccount>>;

    /// Sets an account's password in the resolver's own system, synchronously. `OK` when set;
    /// an error (its message is shown to operators, not to the person) aborts the whole change.
    /// `SecretCheck::UNSUPPORTED` means "the portal stores the password hash itself".
    #[sabi(last_prefix_field)]
    fn set_password(
        &self,
        account: &ResolvedAccount,
        password: RStr<'_>,
    ) -> PluginResult<SecretCheck>;

    /// Checks the resolver's configuration and backing system (ABI 1.1): `prp-host check` and
    /// the detailed `/health/ready` report the findings, and an `ERROR` fails the check. A 1.0
    /// resolver has none.
    fn self_check(&self) -> PluginResult<RVec<CheckFinding>> {
        RResult::ROk(RVec::new())
    }

    /// Every name the person logs in with in the resolver's own system (ABI 1.1), refused
    /// accounts' included: the host refuses a new password of the person's that contains one
    /// (`RejectNames`). A failure fails the password check, unless the resolver is optional.
    /// A 1.0 resolver has none.
    fn login_names_of(&self, person_uid: RStr<'_>) -> PluginResult<RVec<RString>> {
        let _ = person_uid;
        RResult::ROk(RVec::new())
    }

    /// Whether the resolver verifies and sets passwords in its own system (ABI 1.1), asked
    /// once when the host loads it: the host never asks one that says it doesn't, which
    /// saves a call per login. A 1.0 resolver can't say, and is asked every time.
    fn password_roles(&self) -> PasswordRoles {
        PasswordRoles::BOTH
    }
}

/// What a resolver does with passwords in its own system, as bit flags. Unknown bits (from a
/// newer ABI) are ignored.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Debug)]
pub struct PasswordRoles(u8);

impl PasswordRoles {
    /// Neither: the portal checks and stores the password hashes of its accounts itself.
    pub const NONE: Self = Self(0);
    /// [`Resolver::verify_password`] checks passwords in the resolver's system.
    pub const VERIFIES: Self = Self(1);
    /// [`Resolver::set_password`] sets passwords in the resolver's system.
    pub const SETS: Self = Self(2);
    pub const BOTH: Self = Self(3);

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A resolver as the host holds it.
pub type ResolverBox = Resolver_TO<'static, RBox<()>>;

/// The Rust-side trait a plugin implements for a resolver.
pub trait ResolverImpl: Send + Sync + 'static {
    fn id(&self) -> String;
    fn resolve(&self, login_name: &str) -> Result<Vec<ResolvedAccount>, PluginError>;
    /// Override to verify passwords in the resolver's own system.
    fn verify_password(
        &self,
        _account: &ResolvedAccount,
        _password: &str,
    ) -> Result<SecretCheck, PluginError> {
        Ok(SecretCheck::UNSUPPORTED)
    }
    /// Override to list a person's accounts in the resolver's own system.
    fn accounts_of(&self, _person_uid: &str) -> Result<Vec<ResolvedAccount>, PluginError> {
        Ok(Vec::new())
    }
    /// Override to set passwords in the resolver's own system.
    fn set_password(
        &self,
        _account: &ResolvedAccount,
        _password: &str,
    ) -> Result<SecretCheck, PluginError> {
        Ok(SecretCheck::UNSUPPORTED)
    }
    /// Override to check the configuration and the backing system (a directory reachable, the
    /// service account's bind accepted). Findings of severity `ERROR` fail `prp-host check`.
    fn self_check(&self) -> Result<Vec<CheckFinding>, PluginError> {
        Ok(Vec::new())
    }
    /// Override to name the login names the person has in the resolver's own system, so that
    /// the host's `RejectNames` rule refuses passwords that contain them. Not needed for names
    /// the host already knows: the person's names and central account, and the key and
    /// display name of every item `accounts_of` lists.
    fn login_names_of(&self, _person_uid: &str) -> Result<Vec<String>, PluginError> {
        Ok(Vec::new())
    }
    /// Override to say that the resolver doesn't verify passwords, or doesn't set them (the
    /// default says it may do both, so the host asks [`ResolverImpl::verify_password`] at each
    /// login through one of its accounts). Asked once, when the host loads the resolver.
    fn password_roles(&self) -> PasswordRoles {
        PasswordRoles::BOTH
    }
}

struct GuardedResolver<R> {
    id: RString,
    inner: R,
}

impl<R: ResolverImpl> Resolver for GuardedResolver<R> {
    fn id(&self) -> RString {
        self.id.clone()
    }
    fn resolve(&self, login_name: RStr<'_>) -> PluginResult<RVec<ResolvedAccount>> {
        guarded(|| self.inner.resolve(login_name.as_str()).map(RVec::from))
    }
    fn verify_password(
        &self,
        account: &ResolvedAccount,
        password: RStr<'_>,
    ) -> PluginResult<SecretCheck> {
        guarded(|| self.inner.verify_password(account, password.as_str()))
    }
    fn accounts_of(&self, person_uid: RStr<'_>) -> PluginResult<RVec<ResolvedAccount>> {
        guarded(|| self.inner.accounts_of(person_uid.as_str()).map(RVec::from))
    }
    fn set_password(
        &self,
        account: &ResolvedAccount,
        password: RStr<'_>,
    ) -> PluginResult<SecretCheck> {
        guarded(|| self.inner.set_password(account, password.as_str()))
    }
    fn self_check(&self) -> PluginResult<RVec<CheckFinding>> {
        guarded(|| self.inner.self_check().map(RVec::from))
    }
    fn login_names_of(&self, person_uid: RStr<'_>) -> PluginResult<RVec<RString>> {
        guarded(|| {
            let names = self.inner.login_names_of(person_uid.as_str())?;
            Ok(names.into_iter().map(RString::from).collect())
        })
    }
    fn password_roles(&self) -> PasswordRoles {
        // A panic means "can't say": the host then asks each time, as of a 1.0 resolver.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.password_roles()))
            .unwrap_or(PasswordRoles::BOTH)
    }
}

/// Wraps a [`ResolverImpl`] so that every call across the ABI catches panics.
pub fn resolver_box<R: ResolverImpl>(inner: R) -> ResolverBox {
    let id = RString::from(inner.id());
    Resolver_TO::from_value(GuardedResolver { id, inner }, TD_Opaque)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Roles(Option<PasswordRoles>);

    impl ResolverImpl for Roles {
        fn id(&self) -> String {
            "roles".into()
        }
        fn resolve(&self, _: &str) -> Result<Vec<ResolvedAccount>, PluginError> {
            Ok(Vec::new())
        }
        fn password_roles(&self) -> PasswordRoles {
            match self.0 {
                Some(r) => r,
                None => panic!("roles unknown"),
            }
        }
    }

    #[test]
    fn password_roles_cross_the_abi_and_a_panic_means_both() {
        let none = resolver_box(Roles(Some(PasswordRoles::NONE)));
        assert_eq!(none.password_roles(), PasswordRoles::NONE);
        let sets = resolver_box(Roles(Some(PasswordRoles::SETS)));
        assert!(sets.password_roles().contains(PasswordRoles::SETS));
        assert!(!sets.password_roles().contains(PasswordRoles::VERIFIES));
        // Can't say: asked every time, as a 1.0 resolver is.
        let panics = resolver_box(Roles(None));
        assert_eq!(panics.password_roles(), PasswordRoles::BOTH);
        // The default of a resolver that doesn't say.
        struct Quiet;
        impl ResolverImpl for Quiet {
            fn id(&self) -> String {
                "quiet".into()
            }
            fn resolve(&self, _: &str) -> Result<Vec<ResolvedAccount>, PluginError> {
                Ok(Vec::new())
            }
        }
        assert_eq!(resolver_box(Quiet).password_roles(), PasswordRoles::BOTH);
    }
}
