//! Finds plugin libraries, checks them and loads them. Each library ends up either loaded, with
//! its name, versions and components, or rejected, with a short reason an operator can act on.
//!
//! Libraries are opened with `lib_header_from_path` and `prp_plugin_api::init_plugin_module`, never
//! with abi_stable's caching `load_from_*`, and are never unloaded.
//!
//! Before the dynamic loader sees a file, it is read once: its permissions are checked (neither
//! it nor its folder may be writable by others than the owner), the bytes are hashed and compared
//! with the pin, and their ELF structure is checked ([`super::file::check_elf`]). On Linux the
//! loader then opens a sealed in-memory copy of exactly those bytes, never the file again.

use super::file;
use super::gate::{CallError, CallGate};
use super::services::{host_services, HostContext, ResolverInUse};
use crate::config::PluginSettings;
use prp_plugin_api::abi_stable::library::{lib_header_from_path, LibraryError};
use prp_plugin_api::{
    init_plugin_module, AuthenticatorBox, ErrorKind, PluginModRef, ResolverBox, ABI_VERSION,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A plugin that loaded and initialised.
pub struct LoadedPlugin {
    pub name: String,
    pub version: String,
    pub abi_version: String,
    pub description: String,
    pub provides: Vec<&'static str>,
    pub path: PathBuf,
    pub sha256: String,
    /// Shared, so that a call can own its handle on the blocking thread.
    pub authenticators: Vec<Arc<AuthenticatorBox>>,
    pub resolvers: Vec<Arc<ResolverBox>>,
}

/// Why a library was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectCause {
    Missing,
    Unreadable(String),
    PinMismatch {
        expected: String,
        actual: String,
    },
    /// `Plugins:RequirePins` is on and the file has no pin.
    Unpinned {
        file: String,
    },
    /// The file, or the folder it is in, can be written by others than its owner.
    WritableByOthers {
        path: PathBuf,
        mode: u32,
    },
    NotALibrary(String),
    NotAPlugin,
    IncompatibleAbiStable(String),
    VersionMismatch {
        plugin: String,
        host: String,
    },
    LayoutMismatch(Vec<String>),
    InitFailed(String),
    InitPanicked(String),
    InitTimedOut(String),
    DuplicateName {
        name: String,
        first: PathBuf,
    },
}

impl RejectCause {
    /// A stable identifier for scripts and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Unreadable(_) => "unreadable",
            Self::PinMismatch { .. } => "sha256-mismatch",
            Self::Unpinned { .. } => "unpinned",
            Self::WritableByOthers { .. } => "writable-by-others",
            Self::NotALibrary(_) => "not-a-library",
            Self::NotAPlugin => "not-a-plugin",
            Self::IncompatibleAbiStable(_) => "abi-stable-mismatch",
            Self::VersionMismatch { .. } => "version-mismatch",
            Self::LayoutMismatch(_) => "layout-mismatch",
            Self::InitFailed(_) => "init-failed",
            Self::InitPanicked(_) => "init-panicked",
            Self::InitTimedOut(_) => "init-timed-out",
            Self::DuplicateName { .. } => "duplicate-name",
        }
    }

    /// One short paragraph for the operator.
    pub fn summary(&self) -> String {
        match self {
            Self::Missing => "file not found".into(),
            Self::Unreadable(e) => format!("cannot be read: {e}"),
            Self::PinMismatch { expected, actual } => format!(
                "SHA-256 does not match the pinned value (pinned {expected}, file has {actual}); it was not opened"
            ),
            Self::Unpinned { file } => format!(
                "no Plugins:Sha256 pin for \"{file}\" and Plugins:RequirePins is on; it was not opened"
            ),
            Self::WritableByOthers { path, mode } => format!(
                "{} is writable by others than its owner (mode {mode:04o}); it was not opened: remove the group and world write bits (chmod go-w)",
                path.display()
            ),
            Self::NotALibrary(e) => format!("not a loadable shared library: {e}"),
            Self::NotAPlugin => {
                "not a prp plugin: the library exports no abi_stable root module".into()
            }
            Self::IncompatibleAbiStable(e) => {
                format!("built with an incompatible abi_stable: {e}")
            }
            Self::VersionMismatch { plugin, host } => format!(
                "ABI version mismatch: the plugin was built for ABI {plugin}, this host speaks ABI {host}; rebuild the plugin against prp-plugin-api {host}"
            ),
            Self::LayoutMismatch(lines) => format!(
                "ABI layout mismatch (same ABI version, different types; the plugin was built against a modified prp-plugin-api):\n{}",
                lines.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
            ),
            Self::InitFailed(e) => format!("init returned an error: {e}"),
            Self::InitPanicked(e) => format!("init panicked: {e}"),
            Self::InitTimedOut(e) => format!("init did not finish: {e}"),
            Self::DuplicateName { name, first } => format!(
                "another library already provides plugin \"{name}\" ({})",
                first.display()
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rejection {
    pub path: PathBuf,
    pub cause: RejectCause,
}

/// The outcome of loading: what loaded, what didn't, and which required plugins are missing.
pub struct LoadReport {
    pub loaded: Vec<LoadedPlugin>,
    pub rejected: Vec<Rejection>,
    /// Required plugin names that are not among the loaded ones.
    pub missing_required: Vec<String>,
    /// Loaded resolvers the host does not use, and why (set by [`select_resolvers`]' caller).
    pub unused_resolvers: Vec<UnusedResolver>,
}

/// A loaded resolver that is not in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusedResolver {
    pub plugin: String,
    pub id: String,
    pub why: String,
}

/// Picks the resolvers to use. A resolver can vouch for any person, so loading one is not
/// enough to use it: `Plugins:Resolvers` names the resolvers to use, in order; without it only
/// the built-in ones are used, those of the plugin that provides the configured authenticator.
/// Every other loaded resolver is returned as unused, with the reason.
pub fn select_resolvers(
    loaded: &[LoadedPlugin],
    authenticator: &str,
    configured: &[String],
) -> (Vec<ResolverInUse>, Vec<UnusedResolver>) {
    let all: Vec<ResolverInUse> = loaded
        .iter()
        .flat_map(|p| {
            p.resolvers.iter().map(|r| ResolverInUse {
                id: r.id().to_string(),
                plugin: p.name.clone(),
                resolver: Arc::clone(r),
                optional: false,
                roles: r.password_roles(),
            })
        })
        .collect();
    let builtin_plugin = loaded
        .iter()
        .find(|p| {
            p.authenticators
                .iter()
                .any(|a| a.id().as_str() == authenticator)
        })
        .map(|p| p.name.as_str());
    let used: Vec<ResolverInUse> = if configured.is_empty() {
        all.iter()
            .filter(|r| Some(r.plugin.as_str()) == builtin_plugin)
            .cloned()
            .collect()
    } else {
        configured
            .iter()
            .filter_map(|id| all.iter().find(|r| &r.id == id).cloned())
            .collect()
    };
    let unused = all
        .iter()
        .filter(|r| !used.iter().any(|u| u.id == r.id && u.plugin == r.plugin))
        .map(|r| UnusedResolver {
            plugin: r.plugin.clone(),
            id: r.id.clone(),
            why: match (configured.is_empty(), builtin_plugin) {
                (false, _) if used.iter().any(|u| u.id == r.id) => {
                    "another plugin's resolver has the same id".to_owned()
                }
                (false, _) => "not listed in Plugins:Resolvers".to_owned(),
                (true, Some(builtin)) => format!(
                    "not built in: without Plugins:Resolvers only the resolvers of {builtin} (which provides the authenticator \"{authenticator}\") are used; a resolver can vouch for any person, so list it in Plugins:Resolvers to use it"
                ),
                (true, None) => format!(
                    "no loaded plugin provides the authenticator \"{authenticator}\", so no resolver is built in; list it in Plugins:Resolvers to use it"
                ),
            },
        })
        .collect();
    (used, unused)
}

impl LoadReport {
    /// Fail closed: the host must not serve when a required plugin is missing.
    pub fn required_ok(&self) -> bool {
        self.missing_required.is_empty()
    }
}

/// The candidate libraries: every shared library in the directory (sorted), then the explicit
/// files, each once.
pub fn candidates(settings: &PluginSettings) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    if let Some(dir) = &settings.directory {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("plugin directory {}: {e}", dir.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
            })
            .collect();
        found.sort();
        out.extend(found);
    }
    out.extend(settings.files.iter().cloned());
    let mut seen = BTreeSet::new();
    out.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    Ok(out)
}

/// Loads every candidate. Never fails as a whole: each library's problem lands in the report.
pub async fn load_all(
    settings: &PluginSettings,
    candidates: Vec<PathBuf>,
    gate: &CallGate,
    ctx: &Arc<HostContext>,
) -> LoadReport {
    let mut loaded: Vec<LoadedPlugin> = Vec::new();
    let mut rejected = Vec::new();
    for path in candidates {
        match load_one(settings, &path, gate, ctx, &loaded).await {
            Ok(plugin) => {
                tracing::info!(plugin = %plugin.name, version = %plugin.version, path = %path.display(), "plugin loaded");
                loaded.push(plugin);
            }
            Err(cause) => {
                tracing::warn!(path = %path.display(), reason = %cause.summary(), "plugin rejected");
                rejected.push(Rejection { path, cause });
            }
        }
    }
    let missing_required = settings
        .required
        .iter()
        .filter(|name| !loaded.iter().any(|p| &p.name == *name))
        .cloned()
        .collect();
    LoadReport {
        loaded,
        rejected,
        missing_required,
        unused_resolvers: Vec::new(),
    }
}

async fn load_one(
    settings: &PluginSettings,
    path: &Path,
    gate: &CallGate,
    ctx: &Arc<HostContext>,
    already: &[LoadedPlugin],
) -> Result<LoadedPlugin, RejectCause> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let pin = settings.sha256.get(&file_name).cloned();
    if pin.is_none() && settings.require_pins {
        return Err(RejectCause::Unpinned { file: file_name });
    }
    let owned = path.to_owned();
    let (module, sha256, abi_version) =
        tokio::task::spawn_blocking(move || open_checked(&owned, pin.as_deref()))
            .await
            .map_err(|e| RejectCause::Unreadable(format!("loader failed: {e}")))??;

    let name = module.name().to_string();
    if let Some(first) = already.iter().find(|p| p.name == name) {
        return Err(RejectCause::DuplicateName {
            name,
            first: first.path.clone(),
        });
    }
    let host = host_services(&name, Arc::clone(ctx));
    let init = module.init();
    let instance = gate.call(move || init(host)).await.map_err(|e| match e {
        CallError::Plugin(err) if err.kind == ErrorKind::PANICKED => {
            let message = err.message.as_str();
            RejectCause::InitPanicked(
                message
                    .strip_prefix("plugin panicked: ")
                    .unwrap_or(message)
                    .to_owned(),
            )
        }
        CallError::Plugin(err) => RejectCause::InitFailed(err.to_string()),
        other => RejectCause::InitTimedOut(other.to_string()),
    })?;
    Ok(LoadedPlugin {
        name,
        version: module.version().to_string(),
        abi_version,
        description: module.description().to_string(),
        provides: module.provides().names(),
        path: path.to_owned(),
        sha256,
        authenticators: instance.authenticators.into_iter().map(Arc::new).collect(),
        resolvers: instance.resolvers.into_iter().map(Arc::new).collect(),
    })
}

/// Reads the file once, refuses it when it or its folder is writable by others, when the hash
/// of what was read doesn't match the pin, or when its ELF structure is not a sound shared
/// object for this machine; then loads exactly the bytes that were read and checked (a sealed
/// in-memory copy, through `/proc/self/fd`, on Linux) and checks ABI version and layout.
fn open_checked(
    path: &Path,
    pin: Option<&str>,
) -> Result<(PluginModRef, String, String), RejectCause> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => RejectCause::Missing,
        _ => RejectCause::Unreadable(e.to_string()),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| RejectCause::Unreadable(e.to_string()))?;
    if meta.is_dir() {
        return Err(RejectCause::Unreadable("is a directory".into()));
    }
    if !meta.is_file() {
        return Err(RejectCause::Unreadable("not a regular file".into()));
    }
    // The file's own mode, from the descriptor that is read; the folder's, by path.
    let writable = |(path, mode)| RejectCause::WritableByOthers { path, mode };
    file::check_not_writable_by_others(path, &meta).map_err(writable)?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let folder_meta = std::fs::metadata(&folder)
        .map_err(|e| RejectCause::Unreadable(format!("folder {}: {e}", folder.display())))?;
    file::check_not_writable_by_others(&folder, &folder_meta).map_err(writable)?;
    if meta.len() > file::MAX_LIBRARY_BYTES {
        return Err(RejectCause::Unreadable(format!(
            "larger than {} MiB",
            file::MAX_LIBRARY_BYTES / 1024 / 1024
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(file::MAX_LIBRARY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RejectCause::Unreadable(e.to_string()))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    if let Some(expected) = pin {
        if expected != sha256 {
            return Err(RejectCause::PinMismatch {
                expected: expected.to_owned(),
                actual: sha256,
            });
        }
    }
    file::check_elf(&bytes).map_err(RejectCause::NotALibrary)?;
    let loadable = Loadable::new(path, &bytes)?;
    drop(bytes);
    let opened = lib_header_from_path(&loadable.path);
    // The library may now be mapped, and is never unloaded. The dynamic loader remembers it by
    // the name it was opened with, so that name (the fd number) must never be reused for another
    // file: keep the descriptor open for the life of the process, whatever the outcome.
    loadable.keep_open();
    let header = opened.map_err(classify)?;
    let abi_version = header.version_strings().version.to_string();
    let module = init_plugin_module(header).map_err(classify)?;
    Ok((module, sha256, abi_version))
}

/// What the dynamic loader is given to open.
struct Loadable {
    path: PathBuf,
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
}

impl Loadable {
    /// A sealed in-memory copy of `bytes`: nothing can change what is mapped after the check.
    #[cfg(target_os = "linux")]
    fn new(path: &Path, bytes: &[u8]) -> Result<Self, RejectCause> {
        use std::os::fd::AsRawFd;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fd = file::sealed_copy(&name, bytes).map_err(|e| {
            RejectCause::Unreadable(format!("cannot make a sealed in-memory copy: {e}"))
        })?;
        Ok(Self {
            path: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            fd,
        })
    }

    /// Elsewhere the file itself (checked, but not protected against a later change).
    #[cfg(not(target_os = "linux"))]
    fn new(path: &Path, _bytes: &[u8]) -> Result<Self, RejectCause> {
        Ok(Self {
            path: path.to_owned(),
        })
    }

    #[cfg(target_os = "linux")]
    fn keep_open(self) {
        use std::os::fd::IntoRawFd;
        let _fd = self.fd.into_raw_fd();
    }

    #[cfg(not(target_os = "linux"))]
    fn keep_open(self) {}
}

fn classify(err: LibraryError) -> RejectCause {
    match err {
        LibraryError::OpenError { err, .. } => {
            RejectCause::NotALibrary(strip_fd_path(&err.to_string()))
        }
        LibraryError::GetSymbolError { .. } => RejectCause::NotAPlugin,
        LibraryError::InvalidAbiHeader(h) => RejectCause::IncompatibleAbiStable(format!("{h:?}")),
        LibraryError::InvalidCAbi { .. } => {
            RejectCause::IncompatibleAbiStable("the C ABI of the compiler differs".into())
        }
        LibraryError::ParseVersionError(e) => RejectCause::VersionMismatch {
            plugin: format!("(unparsable: {e})"),
            host: ABI_VERSION.to_owned(),
        },
        LibraryError::IncompatibleVersionNumber {
            actual_version,
            expected_version,
            ..
        } => RejectCause::VersionMismatch {
            plugin: actual_version.to_string(),
            host: expected_version.to_string(),
        },
        LibraryError::AbiInstability(e) => {
            RejectCause::LayoutMismatch(summarize_layout_error(&e.to_string()))
        }
        LibraryError::RootModule { err, .. } => {
            RejectCause::InitFailed(format!("root module: {err}"))
        }
        LibraryError::Many(errs) => errs
            .into_iter()
            .next()
            .map(classify)
            .unwrap_or_else(|| RejectCause::InitFailed("unknown loading error".into())),
    }
}

/// libloading's message names the `/proc/self/fd/N` path we opened; the operator knows the file.
fn strip_fd_path(msg: &str) -> String {
    match msg.find("/proc/self/fd/") {
        Some(start) => {
            let rest = &msg[start..];
            let end = rest.find(':').map_or(rest.len(), |i| i + 1);
            format!("{}{}", &msg[..start], rest[end..].trim_start())
        }
        None => msg.to_owned(),
    }
}

/// abi_stable's layout error runs to hundreds of lines. Keep what says what differs: for each
/// `Error:` line, where (the field path of the `error(s)inside:` block before it) and the
/// expected and found values, at most a few of them.
pub fn summarize_layout_error(full: &str) -> Vec<String> {
    const MAX: usize = 6;
    let lines: Vec<&str> = full.lines().map(str::trim).collect();
    let value_after = |i: usize, label: &str| {
        lines
            .iter()
            .skip(i + 1)
            .take(4)
            .position(|l| *l == label)
            .and_then(|p| lines.get(i + 1 + p + 1))
            .map(|v| v.to_string())
    };
    let mut out = Vec::new();
    // Each level of the path to the difference: (field name, type).
    let mut levels: Vec<(String, String)> = Vec::new();
    let mut in_path = false;
    for (i, line) in lines.iter().enumerate() {
        if line.ends_with("error(s)inside:") {
            levels.clear();
            in_path = true;
        } else if line.starts_with("Layout of expected type") {
            in_path = false;
        } else if in_path {
            if let Some(field) = line.strip_prefix("field_name:") {
                levels.push((field.trim_end_matches(',').to_owned(), String::new()));
            } else if let Some(ty) = line.strip_prefix("type:") {
                if let Some(last) = levels.last_mut().filter(|l| l.1.is_empty()) {
                    last.1 = ty.to_owned();
                }
            }
        } else if let Some(what) = line.strip_prefix("Error:") {
            let mut entry = match readable_path(&levels) {
                Some(name) => format!("the plugin's {name} differs from the host's: "),
                None => String::new(),
            };
            entry.push_str(what.trim());
            if let (Some(e), Some(f)) = (value_after(i, "Expected:"), value_after(i, "Found:")) {
                entry.push_str(&format!(" (expected {e}, found {f})"));
            }
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    if out.is_empty() {
        out.push(
            lines
                .iter()
                .find(|l| !l.is_empty())
                .unwrap_or(&"(no detail)")
                .to_string(),
        );
    }
    let total = out.len();
    if total > MAX {
        out.truncate(MAX);
        out.push(format!("... and {} more differences", total - MAX));
    }
    out
}

/// The types abi_stable wraps the ABI's own types in, which say nothing to a plugin author.
const WRAPPERS: &[&str] = &[
    "RVec",
    "RSlice",
    "RSliceMut",
    "RStr",
    "RString",
    "ROption",
    "RResult",
    "RArc",
    "RBox",
    "RObject",
    "RRef",
    "PrefixRef",
    "ManuallyDrop",
    "PhantomData",
    "AFunctionPointer",
    "VTable",
    "UnsafeIgnoredType",
    "NonNull",
];

fn is_abi_type(ty: &str) -> bool {
    let base = ty.split('<').next().unwrap_or(ty).trim();
    base.starts_with(|c: char| c.is_ascii_uppercase())
        && !base.ends_with("_TO")
        && !WRAPPERS.contains(&base)
}

/// The innermost field of one of the ABI's own structs on the path, as `Type.field`.
fn struct_field(levels: &[(String, String)]) -> Option<String> {
    levels.windows(2).rev().find_map(|w| {
        let ((_, ty), (field, _)) = (&w[0], &w[1]);
        let named = !field.is_empty() && !field.starts_with(|c: char| c.is_ascii_digit());
        (is_abi_type(ty) && named && !field.starts_with("param_"))
            .then(|| format!("{}.{field}", ty.split('<').next().unwrap_or(ty)))
    })
}

/// The path abi_stable reports (`PluginMod.init.host.obj.vtable.0.verify_password.param_2…`)
/// in the words of the ABI's source: "`HostServices::verify_password` (parameter 2)", or a
/// struct's field, "`PluginMod.provides`".
fn readable_path(levels: &[(String, String)]) -> Option<String> {
    let Some(at) = levels.iter().rposition(|(_, t)| t.contains("_TO<")) else {
        return struct_field(levels).map(|f| format!("`{f}`"));
    };
    let name = levels[at].1.split("_TO<").next()?;
    let rest = &levels[at + 1..];
    let Some(v) = rest.iter().position(|(_, t)| t == "VTable") else {
        return Some(format!("`{name}`"));
    };
    let Some((method, _)) = rest.get(v + 1) else {
        return Some(format!("`{name}` (its methods)"));
    };
    let mut out = format!("`{name}::{method}`");
    match rest.get(v + 2).map(|(f, _)| f.as_str()) {
        Some(p) if p.starts_with("param_") => {
            out.push_str(&format!(" (parameter {})", &p["param_".len()..]));
        }
        Some(r) if r.contains("ret") => out.push_str(" (its return type)"),
        _ => {}
    }
    if let Some(inner) = rest.get(v + 2..).and_then(struct_field) {
        out.push_str(&format!(", in `{inner}`"));
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_path_is_removed_from_dlopen_messages() {
        assert_eq!(
            strip_fd_path("/proc/self/fd/7: invalid ELF header"),
            "invalid ELF header"
        );
        assert_eq!(strip_fd_path("plain"), "plain");
    }

    #[test]
    fn layout_summary_names_the_field_and_values() {
        let full = "header\n2 error(s)inside:\n    <other>\n\n    field_name:0\n    type:PluginMod\n    size:64\n\n    field_name:provides\n    type:Capabilities\nLayout of expected type:\n  dump\nError:incompatible type size\nExpected:\n    4\nFound:\n    8\n\n";
        assert_eq!(
            summarize_layout_error(full),
            vec!["the plugin's `PluginMod.provides` differs from the host's: incompatible type size (expected 4, found 8)".to_owned()]
        );
    }

    /// Two versions of a host-services trait that differ in one parameter of one method, as a
    /// plugin built against a modified prp-plugin-api would.
    #[allow(non_local_definitions)]
    mod host_a {
        use prp_plugin_api::abi_stable::std_types::{RArc, RSlice, RStr, RString};
        use prp_plugin_api::abi_stable::{sabi_trait, StableAbi};
        #[repr(C)]
        #[derive(StableAbi)]
        pub struct ResolvedAccount {
            pub person_uid: RString,
            pub source: RString,
        }
        #[sabi_trait]
        pub trait HostServices: Send + Sync + Clone {
            fn now(&self) -> i64;
            #[sabi(last_prefix_field)]
            fn verify_password(&self, who: RStr<'_>, accounts: RSlice<'_, ResolvedAccount>) -> u8;
        }
        #[repr(C)]
        #[derive(StableAbi)]
        pub struct PluginMod {
            pub init: extern "C" fn(host: HostServices_TO<'static, RArc<()>>) -> u32,
        }
    }
    #[allow(non_local_definitions)]
    mod host_b {
        use prp_plugin_api::abi_stable::std_types::{RArc, RSlice, RStr, RString};
        use prp_plugin_api::abi_stable::{sabi_trait, StableAbi};
        /// `ResolvedAccount` with a field changed.
        #[repr(C)]
        #[derive(StableAbi)]
        pub struct ResolvedAccount {
            pub person_uid: RString,
            pub source: u64,
        }
        #[sabi_trait]
        pub trait HostServices: Send + Sync + Clone {
            fn now(&self) -> i64;
            #[sabi(last_prefix_field)]
            fn verify_password(&self, who: RStr<'_>, accounts: RSlice<'_, ResolvedAccount>) -> u8;
        }
        #[repr(C)]
        #[derive(StableAbi)]
        pub struct PluginMod {
            pub init: extern "C" fn(host: HostServices_TO<'static, RArc<()>>) -> u32,
        }
    }

    #[test]
    fn layout_summary_names_the_trait_method_parameter_and_field() {
        use prp_plugin_api::abi_stable::abi_stability::abi_checking::check_layout_compatibility;
        use prp_plugin_api::abi_stable::StableAbi;
        let err = check_layout_compatibility(
            <host_a::PluginMod as StableAbi>::LAYOUT,
            <host_b::PluginMod as StableAbi>::LAYOUT,
        )
        .expect_err("the layouts differ");
        let summary = summarize_layout_error(&err.to_string());
        assert!(
            summary.iter().any(|l| l.starts_with(
                "the plugin's `HostServices::verify_password` (parameter 2), in `ResolvedAccount.source` differs from the host's: "
            )),
            "{summary:#?}"
        );
    }

    #[test]
    fn layout_summary_is_short() {
        let mut full = String::new();
        for i in 0..10 {
            full.push_str(&format!(
                "Error:Mismatched field {i}\nExpected:\n    u32\nFound:\n    u64\n"
            ));
        }
        let s = summarize_layout_error(&full);
        assert_eq!(s.len(), 7, "{s:?}");
        assert_eq!(s[0], "Mismatched field 0 (expected u32, found u64)");
        assert_eq!(s[6], "... and 4 more differences");
    }
}
