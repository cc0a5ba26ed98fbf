use crate::error::PluginResult;
use crate::host::HostServicesBox;
use crate::plugin::AuthenticatorBox;
use crate::resolver::ResolverBox;
use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RStr, RVec};
use abi_stable::StableAbi;

/// The ABI version, which is this crate's version (see "Versioning" in the crate docs).
#[cfg(not(feature = "__abi_next_probe"))]
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "__abi_next_probe")]
pub const ABI_VERSION: &str = "1.2.0";

#[cfg(not(feature = "__abi_changed_layout"))]
type CapabilityBits = u32;
// Test-only: a plugin built with this feature has a different `PluginMod` layout, which the
// host must refuse. See tests/fixtures/changed-layout.
#[cfg(feature = "__abi_changed_layout")]
type CapabilityBits = u64;

/// What a plugin provides, as bit flags. Unknown bits (from a newer ABI) are ignored.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities(CapabilityBits);

impl Capabilities {
    pub const NONE: Self = Self(0);
    pub const AUTHENTICATOR: Self = Self(1);
    pub const RESOLVER: Self = Self(2);

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// The names of the known flags that are set.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.contains(Self::AUTHENTICATOR) {
            names.push("authenticator");
        }
        if self.contains(Self::RESOLVER) {
            names.push("resolver");
        }
        names
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.names())
    }
}

/// What a plugin's `init` hands the host: its components, ready to be called.
#[repr(C)]
#[derive(StableAbi)]
pub struct PluginInstance {
    pub authenticators: RVec<AuthenticatorBox>,
    pub resolvers: RVec<ResolverBox>,
}

/// The root module every plugin library exports, with [`crate::export_plugin!`].
///
/// A prefix type: later minor versions append fields after `init`, and a host reading a plugin
/// built against an older version sees those fields as absent (`None`).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef, prefix_fields = PluginModPrefix)))]
#[sabi(missing_field(option))]
pub struct PluginMod {
    /// The plugin's name, e.g. `password-reset-authenticator`.
    pub name: RStr<'static>,
    /// The plugin's own version (not the ABI version).
    pub version: RStr<'static>,
    /// One line for operators.
    pub description: RStr<'static>,
    pub provides: Capabilities,
    /// Builds the plugin's components. Called once, on a blocking thread, with the host's
    /// services. Guarded against panics by `export_plugin!`.
    #[sabi(last_prefix_field)]
    pub init: extern "C" fn(host: HostServicesBox) -> PluginResult<PluginInstance>,
    /// Test-only: stands for a function a later ABI version appends.
    #[cfg(feature = "__abi_next_probe")]
    pub next_probe: extern "C" fn() -> u32,
}

impl PluginMod {
    /// Used by [`crate::export_plugin!`]; fills any appended fields this version knows.
    pub const fn new(
        name: &'static str,
        version: &'static str,
        description: &'static str,
        provides: Capabilities,
        init: extern "C" fn(HostServicesBox) -> PluginResult<PluginInstance>,
    ) -> Self {
        Self {
            name: RStr::from_str(name),
            version: RStr::from_str(version),
            description: RStr::from_str(description),
            provides,
            init,
            #[cfg(feature = "__abi_next_probe")]
            next_probe: next_probe_answer,
        }
    }
}

#[cfg(feature = "__abi_next_probe")]
extern "C" fn next_probe_answer() -> u32 {
    42
}

impl RootModule for PluginModRef {
    abi_stable::declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "prp_plugin";
    const NAME: &'static str = "prp_plugin";
    // With the test-only `__abi_next_probe` feature this is the next minor version, 1.2.0.
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ABI_VERSION);
}

/// Exports a plugin's root module. Use once per plugin library:
///
/// ```ignore
/// prp_plugin_api::export_plugin! {
///     name: "my-plugin",
///     version: env!("CARGO_PKG_VERSION"),
///     description: "What it does",
///     provides: prp_plugin_api::Capabilities::AUTHENTICATOR,
///     init: my_init, // fn(HostServicesBox) -> Result<PluginInstance, PluginError>
/// }
/// ```
/// `init` runs inside [`crate::guarded`], so a panic in it becomes an error the host reports.
/// The plugin crate needs no direct dependency on `abi_stable`: the macro writes out what
/// abi_stable's `#[export_root_module]` would (that attribute names `::abi_stable`), through
/// this crate's re-export, and a test holds the exported symbol's name equal to abi_stable's.
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        version: $version:expr,
        description: $description:expr,
        provides: $provides:expr,
        init: $init:path $(,)?
    ) => {
        pub fn __prp_plugin_root_module() -> $crate::PluginModRef {
            extern "C" fn __prp_plugin_init(
                host: $crate::HostServicesBox,
            ) -> $crate::PluginResult<$crate::PluginInstance> {
                $crate::guarded(move || $init(host))
            }
            $crate::abi_stable::prefix_type::PrefixTypeTrait::leak_into_prefix(
                $crate::PluginMod::new($name, $version, $description, $provides, __prp_plugin_init),
            )
        }

        /// The library header the host looks up (abi_stable's `ROOT_MODULE_LOADER_NAME`).
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::abi_stable::library::LibHeader = {
            pub extern "C" fn __prp_erased_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(__prp_plugin_root_module)
            }
            // SAFETY: as in abi_stable's `#[export_root_module]`: the constructor returns the
            // module type it is declared with, and the layout is checked by the host.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::PluginModRef>(
                    __prp_erased_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Exports a plugin that provides one resolver, built by `resolver` from the host's services:
///
/// ```ignore
/// prp_plugin_api::export_resolver! {
///     name: "my-resolver",
///     version: env!("CARGO_PKG_VERSION"),
///     description: "What it does",
///     resolver: MyResolver::new, // fn(HostServicesBox) -> Result<impl ResolverImpl, PluginError>
/// }
/// ```
/// The same as [`crate::export_plugin!`] with an `init` that wraps the resolver with
/// [`crate::resolver_box`] (panics caught at every entry point).
#[macro_export]
macro_rules! export_resolver {
    (
        name: $name:expr,
        version: $version:expr,
        description: $description:expr,
        resolver: $new:path $(,)?
    ) => {
        fn __prp_resolver_init(
            host: $crate::HostServicesBox,
        ) -> ::core::result::Result<$crate::PluginInstance, $crate::PluginError> {
            let resolver = $crate::resolver_box($new(host)?);
            ::core::result::Result::Ok($crate::PluginInstance {
                authenticators: $crate::abi_stable::std_types::RVec::new(),
                resolvers: $crate::abi_stable::std_types::RVec::from(::std::vec![resolver]),
            })
        }
        $crate::export_plugin! {
            name: $name,
            version: $version,
            description: $description,
            provides: $crate::Capabilities::RESOLVER,
            init: __prp_resolver_init,
        }
    };
}

/// The symbol `export_plugin!` exports must be the one abi_stable looks up.
#[cfg(test)]
mod export_tests {
    #[test]
    fn the_exported_header_has_abi_stables_symbol_name() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
