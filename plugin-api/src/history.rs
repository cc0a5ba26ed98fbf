//! The root module as each released minor version of the ABI laid it out, and the function that
//! loads a plugin's root module through the right one.
//!
//! abi_stable's layout checker accepts a library whose prefix types have *more* fields than the
//! host expects, but refuses one with *fewer* (abi_stable issue #118), so on its own it would
//! refuse every plugin built against an older minor version. The host therefore checks an older
//! plugin against the frozen layout of the minor version the plugin was built for, then reads
//! it through the current type: fields appended since then read as absent, because a prefix
//! type's metadata, written by the plugin, marks which fields exist.
//!
//! Rule: when a minor version appends to a type reachable from the root module, freeze the
//! previous layout here first. A test holds each frozen layout against the current one.

use crate::error::PluginResult;
use crate::root::{Capabilities, PluginModRef};
use abi_stable::library::{LibHeader, LibraryError, RootModule};
use abi_stable::prefix_type::PrefixRefTrait;
use abi_stable::sabi_types::{VersionNumber, VersionStrings};
use abi_stable::std_types::RStr;

/// ABI 1.0, as released: the root module, and every type reachable from it that 1.1 appended
/// to (`PluginInstance` holds authenticators, whose sabi_trait gained five methods, and
/// resolvers, whose sabi_trait gained `self_check`, `login_names_of` and `password_roles`;
/// `init` takes the host's services, whose sabi_trait gained `setting`, `setting_path`,
/// `hash_secret`, `call_time_left_ms`, `persons_by_column`, `person_column`,
/// `account_login_names` and `unindexed_login_columns`).
///
/// These are real, usable types: a plugin built from them is a 1.0 plugin byte for byte (the
/// test fixture `v1-0-plugin` is one), which is how the 1.0-in-1.1 test is kept honest.
pub mod v1_0 {
    use super::*;
    use crate::host::{LogLevel, QuestionInfo};
    use crate::login::{
        AccountMatch, AccountQuery, LoginOutcome, LoginRequest, PersonInfo, QuestionAnswer,
        QuestionChallenge, SecretCheck,
    };
    use crate::plugin::CheckFinding;
    use crate::resolver::ResolvedAccount;
    use abi_stable::sabi_trait;
    use abi_stable::std_types::{RArc, RBox, ROption, RSlice, RString, RVec};
    use abi_stable::StableAbi;

    /// The host services sabi_trait of ABI 1.0.
    #[sabi_trait]
    pub trait HostServices: Send + Sync + Clone {
        fn parameter(&self, path: RStr<'_>) -> PluginResult<ROption<RString>>;
        fn api_key(&self, key: RStr<'_>) -> PluginResult<ROption<RString>>;
        fn connection_string(&self, name: RStr<'_>) -> ROption<RString>;
        fn log(&self, level: LogLevel, message: RStr<'_>);
        fn now(&self) -> i64;
        fn keyed_digest(&self, purpose: RStr<'_>, data: RStr<'_>) -> PluginResult<RString>;
        fn verify_hash(&self, phc: RStr<'_>, secret: RStr<'_>) -> PluginResult<bool>;
        fn persons_by_central_account(
            &self,
            login_name: RStr<'_>,
        ) -> PluginResult<RVec<PersonInfo>>;
        fn person(&self, uid: RStr<'_>) -> PluginResult<ROption<PersonInfo>>;
        fn search_accounts(&self, query: &AccountQuery) -> PluginResult<RVec<AccountMatch>>;
        fn verify_password(
            &self,
            person_uid: RStr<'_>,
            accounts: RSlice<'_, ResolvedAccount>,
            password: RStr<'_>,
        ) -> PluginResult<SecretCheck>;
        fn verify_passcode(
            &self,
            person_uid: RStr<'_>,
            passcode: RStr<'_>,
        ) -> PluginResult<SecretCheck>;
        fn questions(&self, person_uid: RStr<'_>) -> PluginResult<RVec<QuestionInfo>>;
        fn verify_answers(
            &self,
            person_uid: RStr<'_>,
            answers: RSlice<'_, QuestionAnswer>,
        ) -> PluginResult<SecretCheck>;
        #[sabi(last_prefix_field)]
        fn delete_questions(
            &self,
            person_uid: RStr<'_>,
            ids: RSlice<'_, RString>,
        ) -> PluginResult<()>;
    }

    pub type HostServicesBox = HostServices_TO<'static, RArc<()>>;

    /// The resolver sabi_trait of ABI 1.0.
    #[sabi_trait]
    pub trait Resolver: Send + Sync {
        fn id(&self) -> RString;
        fn resolve(&self, login_name: RStr<'_>) -> PluginResult<RVec<ResolvedAccount>>;
        fn verify_password(
            &self,
            account: &ResolvedAccount,
            password: RStr<'_>,
        ) -> PluginResult<SecretCheck>;
        fn accounts_of(&self, person_uid: RStr<'_>) -> PluginResult<RVec<ResolvedAccount>>;
        #[sabi(last_prefix_field)]
        fn set_password(
            &self,
            account: &ResolvedAccount,
            password: RStr<'_>,
        ) -> PluginResult<SecretCheck>;
    }

    pub type ResolverBox = Resolver_TO<'static, RBox<()>>;

    /// The authenticator sabi_trait of ABI 1.0.
    #[sabi_trait]
    pub trait Authenticator: Send + Sync {
        fn id(&self) -> RString;
        fn self_check(&self) -> PluginResult<RVec<CheckFinding>>;
        fn login(&self, request: &LoginRequest) -> PluginResult<LoginOutcome>;
        fn challenge(
            &self,
            login_name: RStr<'_>,
            candidates: RSlice<'_, ResolvedAccount>,
        ) -> PluginResult<RVec<QuestionChallenge>>;
        #[sabi(last_prefix_field)]
        fn explain(
            &self,
            login_name: RStr<'_>,
            candidates: RSlice<'_, ResolvedAccount>,
        ) -> PluginResult<RVec<RString>>;
    }

    pub type AuthenticatorBox = Authenticator_TO<'static, RBox<()>>;

    #[repr(C)]
    #[derive(StableAbi)]
    pub struct PluginInstance {
        pub authenticators: RVec<AuthenticatorBox>,
        pub resolvers: RVec<ResolverBox>,
    }

    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModRef, prefix_fields = PluginModPrefix)))]
    #[sabi(missing_field(option))]
    pub struct PluginMod {
        pub name: RStr<'static>,
        pub version: RStr<'static>,
        pub description: RStr<'static>,
        pub provides: Capabilities,
        #[sabi(last_prefix_field)]
        pub init: extern "C" fn(host: HostServicesBox) -> PluginResult<PluginInstance>,
    }

    impl RootModule for PluginModRef {
        abi_stable::declare_root_module_statics! {PluginModRef}
        const BASE_NAME: &'static str = "prp_plugin";
        const NAME: &'static str = "prp_plugin";
        const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.0.0");
    }
}

/// ABI 1.1, frozen only in a test build of the next minor version (the `__abi_next_probe`
/// feature appends to the root module): the current types without the probe.
#[cfg(feature = "__abi_next_probe")]
pub mod v1_1 {
    use super::*;
    use crate::host::HostServicesBox;
    use crate::root::PluginInstance;
    use abi_stable::StableAbi;

    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModRef, prefix_fields = PluginModPrefix)))]
    #[sabi(missing_field(option))]
    pub struct PluginMod {
        pub name: RStr<'static>,
        pub version: RStr<'static>,
        pub description: RStr<'static>,
        pub provides: Capabilities,
        #[sabi(last_prefix_field)]
        pub init: extern "C" fn(host: HostServicesBox) -> PluginResult<PluginInstance>,
    }

    impl RootModule for PluginModRef {
        abi_stable::declare_root_module_statics! {PluginModRef}
        const BASE_NAME: &'static str = "prp_plugin";
        const NAME: &'static str = "prp_plugin";
        const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.1.0");
    }
}

/// Checks the library's ABI version and layout and returns its root module. Use this instead of
/// `LibHeader::init_root_module`, which would refuse plugins built against an older minor ABI.
pub fn init_plugin_module(header: &'static LibHeader) -> Result<PluginModRef, LibraryError> {
    let plugin = VersionNumber::new(header.version_strings())?;
    let host = VersionNumber::new(PluginModRef::VERSION_STRINGS)?;
    if plugin.major != host.major || plugin.minor >= host.minor {
        // Another major version is refused by the version check; the same or a newer minor
        // version has at least our fields, which abi_stable accepts as it is.
        return header.init_root_module::<PluginModRef>();
    }
    match (plugin.major, plugin.minor) {
        (1, 0) => {
            let old = header.init_root_module::<v1_0::PluginModRef>()?;
            // SAFETY: v1_0::PluginMod is a prefix of the current PluginMod (held by the test
            // below), and the prefix metadata the plugin wrote marks the later fields absent,
            // so every accessor of the current type reads only what the plugin provides. The
            // same holds for the authenticators' vtables its `init` returns: a sabi_trait
            // vtable is a prefix type, and the methods 1.1 appended have default bodies, which
            // the host runs when the plugin's vtable has no entry for them; and for its
            // resolvers' vtables (1.1 appended `self_check`, `login_names_of` and
            // `password_roles`, each with a default body). The host
            // hands `init` its current services, whose vtable is a prefix type that begins
            // with 1.0's methods: the plugin reads only those.
            Ok(PluginModRef::from_prefix_ref(unsafe { old.0.cast() }))
        }
        #[cfg(feature = "__abi_next_probe")]
        (1, 1) => {
            let old = header.init_root_module::<v1_1::PluginModRef>()?;
            // SAFETY: as for 1.0 above.
            Ok(PluginModRef::from_prefix_ref(unsafe { old.0.cast() }))
        }
        // A minor version whose layout was never frozen: let the layout check explain it.
        _ => header.init_root_module::<PluginModRef>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
    use abi_stable::StableAbi;

    /// Every frozen layout must be a prefix of the current one: abi_stable accepts a layout with
    /// more fields in the place of one with fewer, so checking frozen (expected) against current
    /// (found) fails exactly when a field was changed, reordered or removed.
    #[test]
    fn frozen_layouts_are_prefixes_of_the_current_one() {
        let result = check_layout_compatibility(
            <v1_0::PluginModRef as StableAbi>::LAYOUT,
            <PluginModRef as StableAbi>::LAYOUT,
        );
        assert!(
            result.is_ok(),
            "ABI 1.0's layout is no longer a prefix of the current one"
        );
    }

    /// The 1.0 layouts are frozen for real: the current ones (1.1 appended four authenticator
    /// methods) don't pass for them, which is why the host loads a 1.0 plugin through them.
    #[test]
    fn the_current_layout_is_not_the_frozen_one() {
        let result = check_layout_compatibility(
            <PluginModRef as StableAbi>::LAYOUT,
            <v1_0::PluginModRef as StableAbi>::LAYOUT,
        );
        assert!(result.is_err(), "1.1 appended nothing to 1.0's layout?");
        let authenticators = check_layout_compatibility(
            <crate::AuthenticatorBox as StableAbi>::LAYOUT,
            <v1_0::AuthenticatorBox as StableAbi>::LAYOUT,
        );
        assert!(authenticators.is_err());
        let resolvers = check_layout_compatibility(
            <crate::ResolverBox as StableAbi>::LAYOUT,
            <v1_0::ResolverBox as StableAbi>::LAYOUT,
        );
        assert!(resolvers.is_err(), "1.1 appended self_check to Resolver");
        let host = check_layout_compatibility(
            <crate::HostServicesBox as StableAbi>::LAYOUT,
            <v1_0::HostServicesBox as StableAbi>::LAYOUT,
        );
        assert!(host.is_err(), "1.1 appended methods to HostServices");
    }

    /// Each frozen trait object, on its own, is a prefix of the current one (so the failure of
    /// the root module's check, if any, points at the right type).
    #[test]
    fn frozen_trait_objects_are_prefixes_of_the_current_ones() {
        for (name, frozen, current) in [
            (
                "Authenticator",
                <v1_0::AuthenticatorBox as StableAbi>::LAYOUT,
                <crate::AuthenticatorBox as StableAbi>::LAYOUT,
            ),
            (
                "Resolver",
                <v1_0::ResolverBox as StableAbi>::LAYOUT,
                <crate::ResolverBox as StableAbi>::LAYOUT,
            ),
            (
                "HostServices",
                <v1_0::HostServicesBox as StableAbi>::LAYOUT,
                <crate::HostServicesBox as StableAbi>::LAYOUT,
            ),
        ] {
            assert!(
                check_layout_compatibility(frozen, current).is_ok(),
                "ABI 1.0's {name} is no longer a prefix of the current one"
            );
        }
    }
}
