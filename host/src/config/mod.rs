//! The host's settings: `appsettings.json` or the XML `.config` format, an optional
//! `{name}.{Environment}.{ext}` layer on top, then environment variables in the ASP.NET form
//! (`ConnectionStrings__Database`, `Plugins__Required__0`). Every form flattens to the same
//! `Section:Key` entries, so the same settings in either format give equal [`Settings`].

mod json;
mod schema;
mod secret;
mod xml;

pub use secret::ConnectionString;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of the connection string holding the clear ApplicationToken.
pub const APPLICATION_TOKEN: &str = r"QER\Person\PasswordResetAuthenticator\ApplicationToken";
/// The largest configuration file read (1 MiB): a real one is a few kilobytes, so anything
/// bigger is a mistake (a wrong path, a log file) and is refused before it is read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The name of the connection string of the portal's database.
pub const DATABASE: &str = "Database";
/// The name of the connection string holding the SMTP password (`Notify:Smtp:User`'s).
pub const SMTP_PASSWORD: &str = "Smtp";

/// For a relative config path: the folder it was looked for in.
fn missing_where(path: &Path) -> String {
    if path.is_absolute() {
        return String::new();
    }
    std::env::current_dir()
        .map(|d| format!(" in {}", d.display()))
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {}: not found{}; name another with --config FILE or PRP_CONFIG", .path.display(), missing_where(.path))]
    Missing { path: PathBuf },
    #[error("config file {}: cannot be read: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {} a configuration file may be at most 1 MiB ({MAX_CONFIG_BYTES} bytes)", .path.display(), match .size { Some(n) => format!("is {n} bytes;"), None => "is larger than that limit;".to_owned() })]
    TooLarge {
        path: PathBuf,
        /// The size the file system reported, when that was already over the limit.
        size: Option<u64>,
    },
    #[error("config file {}: unknown format; use .json for appsettings or .config/.xml for the XML form", .path.display())]
    UnknownFormat { path: PathBuf },
    #[error("{}:{line}:{column}: {message}", .path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Environment { var: String, message: String },
    #[error("config file {}: {message}", .path.display())]
    Inconsistent { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// Every shared library in it is loaded.
    pub directory: Option<PathBuf>,
    /// Libraries loaded in addition to the directory.
    pub files: Vec<PathBuf>,
    /// Plugin names the host refuses to serve without.
    pub required: Vec<String>,
    /// Pinned SHA-256 (lowercase hex) by file name.
    pub sha256: BTreeMap<String, String>,
    pub call_timeout: Duration,
    pub max_concurrent_calls: usize,
    /// Resolver ids to use, in order; empty means the resolvers of the plugin that provides
    /// the configured authenticator (the built-in ones).
    pub resolvers: Vec<String>,
    /// Refuse every library without a `Plugins:Sha256` pin.
    pub require_pins: bool,
    /// Resolver ids or plugin names whose resolvers are optional (`Plugins:Optional`): a
    /// failure of one drops only its own accounts instead of denying.
    pub optional: Vec<String>,
    /// The plugins' own settings (`Plugins:Settings:<plugin>:<key>`).
    pub own: PluginOwnSettings,
}

impl PluginSettings {
    /// Whether the resolver `id` of plugin `plugin` is optional (`Plugins:Optional` names the
    /// resolver's id or its plugin's name).
    pub fn is_optional(&self, id: &str, plugin: &str) -> bool {
        self.optional
            .iter()
            .any(|o| o.eq_ignore_ascii_case(id) || o.eq_ignore_ascii_case(plugin))
    }
}

/// The plugins' own settings, `Plugins:Settings:<plugin>:<key>`: plugin names and keys are
/// case-insensitive. `Debug` and [`PluginOwnSettings::shown`] print the value of a secret
/// setting (a key ending in `Password`, `Secret` or `Token`) as `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PluginOwnSettings {
    /// Lower-cased plugin name → lower-cased key → (key as written, value).
    values: BTreeMap<String, BTreeMap<String, (String, String)>>,
}

impl PluginOwnSettings {
    fn insert(&mut self, plugin: &str, key: &str, value: &str) {
        self.values
            .entry(plugin.to_ascii_lowercase())
            .or_default()
            .insert(key.to_ascii_lowercase(), (key.to_owned(), value.to_owned()));
    }

    /// The value of `Plugins:Settings:<plugin>:<key>`, if set.
    pub fn get(&self, plugin: &str, key: &str) -> Option<&str> {
        self.values
            .get(&plugin.to_ascii_lowercase())?
            .get(&key.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    /// Every setting of every plugin as `(plugin, key, printable value)`, secrets as `***`.
    pub fn shown(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (plugin, keys) in &self.values {
            for (key, value) in keys.values() {
                let shown = if prp_plugin_api::is_secret_setting(key) {
                    "***".to_owned()
                } else {
                    value.clone()
                };
                out.push((plugin.clone(), key.clone(), shown));
            }
        }
        out
    }
}

impl std::fmt::Debug for PluginOwnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.shown()
                    .into_iter()
                    .map(|(p, k, v)| format!("Plugins:Settings:{p}:{k} = {v}")),
            )
            .finish()
    }
}

/// The host's own settings (`Host` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    pub server_name: String,
    pub authenticator: String,
    pub hash_workers: usize,
    pub max_pending_logins: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub session_minutes: u32,
    pub reset_session_minutes: u32,
    pub session_idle_minutes: u32,
    /// The URL people reach the portal at, when configured.
    pub public_url: Option<String>,
    /// Where `/metrics` and the detail of `/health/ready` are served, when configured.
    pub admin_listen: Option<SocketAddr>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Serve https directly with this certificate and key (`Host:Certificate`, `Host:PrivateKey`).
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the public listener's TLS (resolved against the config file's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Where plugins are loaded from when neither `Plugins:Directory` nor `Plugins:Files` is set.
pub const DEFAULT_PLUGIN_DIRECTORY: &str = "/usr/lib/prp/plugins";

/// How the SMTP conversation is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP, upgraded with STARTTLS, which is required.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No TLS at all: only for a relay on loopback.
    None,
}

/// The SMTP server notifications are delivered through (`Notify:Smtp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Authenticate as this user, with `ConnectionStrings:Smtp` as the password.
    pub user: Option<String>,
    /// PEM certificates of the CAs that sign the server's certificate, trusted besides the
    /// public roots (an in-house relay's CA).
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// Delivery of the notification outbox (`Notify` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// `None`: no SMTP server configured; nothing is delivered.
    pub smtp: Option<SmtpSettings>,
    pub from: Option<String>,
    pub email_column: String,
    pub language_column: Option<String>,
    /// `en` or `de`.
    pub language: String,
    pub help_desk: Option<String>,
    pub poll: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub give_up_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingSettings {
    pub level: String,
    pub format: LogFormat,
}

/// The effective configuration. `Debug` never shows a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Relative paths in the settings are resolved against this: the main file's directory.
    pub base_dir: PathBuf,
    pub connection_strings: Vec<ConnectionString>,
    pub listen: SocketAddr,
    pub host: HostSettings,
    pub plugins: PluginSettings,
    pub notify: NotifySettings,
    pub logging: LoggingSettings,
}

impl Settings {
    /// A connection string by name, case-insensitively as in ASP.NET.
    pub fn connection_string(&self, name: &str) -> Option<&ConnectionString> {
        self.connection_strings
            .iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

/// Settings plus the files they came from, in the order they were applied.
#[derive(Debug)]
pub struct LoadedConfig {
    pub settings: Settings,
    pub sources: Vec<PathBuf>,
}

/// The environment the configuration is read in: variables and the environment name.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub vars: Vec<(String, String)>,
}

impl Environment {
    /// The process environment (variables that aren't valid UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `PRP_ENVIRONMENT`, else `ASPNETCORE_ENVIRONMENT`, else `DOTNET_ENVIRONMENT`.
    pub fn name(&self) -> Option<&str> {
        [
            "PRP_ENVIRONMENT",
            "ASPNETCORE_ENVIRONMENT",
            "DOTNET_ENVIRONMENT",
        ]
        .iter()
        .find_map(|n| self.get(n))
        .filter(|v| !v.trim().is_empty())
    }
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Xml,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "json" => Some(Format::Json),
        "config" | "xml" => Some(Format::Xml),
        _ => None,
    }
}

/// One applied entry: value and where it came from (for later error messages).
struct Entry {
    key: String,
    value: String,
}

/// Loads `path`, its environment layer when one exists, and the environment's overrides.
pub fn load(path: &Path, env: &Environment) -> Result<LoadedConfig, ConfigError> {
    let format = format_of(path).ok_or_else(|| ConfigError::UnknownFormat {
        path: path.to_owned(),
    })?;
    let mut merged: BTreeMap<String, Entry> = BTreeMap::new();
    let mut sources = Vec::new();

    apply(&mut merged, read_file(path, format)?);
    sources.push(path.to_owned());

    if let Some(env_name) = env.name() {
        let layer = environment_layer(path, env_name);
        if layer.exists() {
            apply(&mut merged, read_file(&layer, format)?);
            sources.push(layer);
        }
    }

    let mut from_env: Vec<(String, String)> = Vec::new();
    for (var, value) in &env.vars {
        let Some((section, _)) = var.split_once("__") else {
            continue;
        };
        if !schema::is_section(section) {
            continue;
        }
        let key = var.replace("__", ":");
        let key = schema::validate(&key, value).map_err(|message| ConfigError::Environment {
            var: var.clone(),
            message,
        })?;
        from_env.push((key, value.clone()));
    }
    apply(&mut merged, from_env);

    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
    let set = |k: &str| merged.contains_key(&k.to_ascii_lowercase());
    if set("Host:Certificate") != set("Host:PrivateKey") {
        return Err(ConfigError::Inconsistent {
            path: path.to_owned(),
            message: "Host:Certificate and Host:PrivateKey go together: set both to serve https, or neither".into(),
        });
    }
    Ok(LoadedConfig {
        settings: bind(merged, base_dir),
        sources,
    })
}

/// `appsettings.json` + `Production` → `appsettings.Production.json`.
fn environment_layer(path: &Path, env_name: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let ext = path
        .extension()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.{env_name}.{ext}"))
}

/// The file's bytes, refusing it from its size before reading when it is over the limit (and
/// reading at most one byte more than the limit, should it grow or not report a size).
fn read_limited(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let io_error = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::Missing {
                path: path.to_owned(),
            }
        } else {
            ConfigError::Unreadable {
                path: path.to_owned(),
                source,
            }
        }
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let size = file.metadata().map_err(io_error)?.len();
    if size > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            size: Some(size),
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            size: None,
        });
    }
    Ok(bytes)
}

/// The text of the file without a UTF-8 byte order mark; a byte that isn't UTF-8 is reported
/// at its line and column (in characters, as editors count them).
fn decode(path: &Path, bytes: &[u8]) -> Result<String, ConfigError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(e) => {
            let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let before = String::from_utf8_lossy(good);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let byte = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message: format!(
                    "the file is not UTF-8: byte 0x{byte:02X} is not valid here; save it as UTF-8"
                ),
            })
        }
    }
}

fn read_file(path: &Path, format: Format) -> Result<Vec<(String, String)>, ConfigError> {
    let text = decode(path, &read_limited(path)?)?;
    match format {
        Format::Json => json::parse(&text).map_err(|e| {
            let message = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            ConfigError::Invalid {
                path: path.to_owned(),
                line: e.line(),
                column: e.column(),
                message: message.strip_suffix(&suffix).unwrap_or(&message).to_owned(),
            }
        }),
        Format::Xml => xml::parse(&text).map_err(|p| ConfigError::Invalid {
            path: path.to_owned(),
            line: p.line,
            column: p.column,
            message: p.message,
        }),
    }
}

fn apply(merged: &mut BTreeMap<String, Entry>, entries: Vec<(String, String)>) {
    for (key, value) in entries {
        merged.insert(key.to_ascii_lowercase(), Entry { key, value });
    }
}

/// Values were validated as they were read, so binding only converts them.
fn bind(merged: BTreeMap<String, Entry>, base_dir: PathBuf) -> Settings {
    let get = |key: &str| {
        merged
            .get(&key.to_ascii_lowercase())
            .map(|e| e.value.as_str())
    };
    let with_prefix = |prefix: &str| {
        let prefix = prefix.to_ascii_lowercase();
        merged
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, e)| (k[prefix.len()..].to_owned(), e))
            .collect::<Vec<_>>()
    };
    let indexed = |prefix: &str| {
        let mut items: Vec<(u64, String)> = with_prefix(prefix)
            .into_iter()
            .filter_map(|(i, e)| Some((i.parse().ok()?, e.value.trim().to_owned())))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect::<Vec<_>>()
    };
    let resolve = |p: &str| base_dir.join(p.trim());

    let mut connection_strings: Vec<ConnectionString> = with_prefix("ConnectionStrings:")
        .into_iter()
        .map(|(_, e)| {
            let name = e.key.split_once(':').map_or("", |(_, n)| n);
            ConnectionString::new(name, e.value.clone())
        })
        .collect();
    connection_strings.sort_by_key(|c| c.name().to_ascii_lowercase());

    let files: Vec<PathBuf> = indexed("Plugins:Files:")
        .iter()
        .map(|p| resolve(p))
        .collect();
    let plugins = PluginSettings {
        // Neither a directory nor files: the installed layout's plugin directory.
        directory: match get("Plugins:Directory") {
            Some(d) => Some(resolve(d)),
            None if files.is_empty() => Some(PathBuf::from(DEFAULT_PLUGIN_DIRECTORY)),
            None => None,
        },
        files,
        required: indexed("Plugins:Required:"),
        sha256: with_prefix("Plugins:Sha256:")
            .into_iter()
            .map(|(_, e)| {
                let file = e.key.rsplit(':').next().unwrap_or_default().to_owned();
                (file, e.value.trim().to_ascii_lowercase())
            })
            .collect(),
        call_timeout: Duration::from_millis(
            get("Plugins:CallTimeoutMs")
                .and_then(|v| schema::parse_timeout_ms(v).ok())
                .unwrap_or(10_000),
        ),
        max_concurrent_calls: get("Plugins:MaxConcurrentCalls")
            .and_then(|v| schema::parse_concurrency(v).ok())
            .unwrap_or(8),
        resolvers: indexed("Plugins:Resolvers:"),
        require_pins: get("Plugins:RequirePins")
            .and_then(|v| schema::parse_bool(v).ok())
            .unwrap_or(false),
        optional: indexed("Plugins:Optional:"),
        own: {
            let mut own = PluginOwnSettings::default();
            for (_, e) in with_prefix("Plugins:Settings:") {
                // The canonical key is `Plugins:Settings:<plugin>:<key…>`.
                let mut parts = e.key.splitn(4, ':').skip(2);
                if let (Some(plugin), Some(key)) = (parts.next(), parts.next()) {
                    own.insert(plugin, key, &e.value);
                }
            }
            own
        },
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let hash_workers = get("Host:HashWorkers")
        .and_then(|v| schema::parse_concurrency(v).ok())
        .unwrap_or(cores);
    let u32_or = |key: &str, min: u64, max: u64, default: u32| {
        get(key)
            .and_then(|v| schema::parse_u32_in(v, min, max, "").ok())
            .unwrap_or(default)
    };
    let host = HostSettings {
        server_name: get("Host:ServerName")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(default_server_name),
        authenticator: get("Host:Authenticator")
            .unwrap_or("password-reset")
            .trim()
            .to_owned(),
        hash_workers,
        max_pending_logins: get("Host:MaxPendingLogins")
            .and_then(|v| schema::parse_concurrency(v).ok())
            .unwrap_or(hash_workers * 16),
        argon2_memory_kib: u32_or("Host:Argon2MemoryKiB", 19_456, 4_194_304, 19_456),
        argon2_iterations: u32_or("Host:Argon2Iterations", 2, 100, 2),
        session_minutes: u32_or("Host:SessionMinutes", 1, 43_200, 60),
        reset_session_minutes: u32_or("Host:ResetSessionMinutes", 1, 43_200, 15),
        session_idle_minutes: u32_or("Host:SessionIdleMinutes", 1, 43_200, 15),
        public_url: get("Host:PublicUrl").map(|u| u.trim().trim_end_matches('/').to_owned()),
        admin_listen: get("Host:AdminListen").and_then(|v| schema::parse_listen(v).ok()),
        trusted_proxies: indexed("Host:TrustedProxies:")
            .iter()
            .filter_map(|v| v.trim().parse().ok())
            .collect(),
        max_connections: get("Host:MaxConnections")
            .and_then(|v| schema::parse_connections(v).ok())
            .unwrap_or(1024),
        header_timeout: get("Host:HeaderTimeoutMs")
            .and_then(|v| schema::parse_timeout_ms(v).ok())
            .map_or(Duration::from_secs(10), Duration::from_millis),
        body_timeout: get("Host:BodyTimeoutMs")
            .and_then(|v| schema::parse_timeout_ms(v).ok())
            .map_or(Duration::from_secs(10), Duration::from_millis),
        tls: get("Host:Certificate")
            .zip(get("Host:PrivateKey"))
            .map(|(c, k)| TlsFiles {
                certificate: resolve(c),
                private_key: resolve(k),
            }),
    };
    let ms_or = |key: &str, default: u64| {
        get(key)
            .and_then(|v| schema::parse_timeout_ms(v).ok())
            .map_or(Duration::from_millis(default), Duration::from_millis)
    };
    let text = |key: &str| {
        get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let security = match get("Notify:Smtp:Security").map(|v| v.trim().to_ascii_lowercase()) {
        Some(s) if s == "tls" => SmtpSecurity::Tls,
        Some(s) if s == "none" => SmtpSecurity::None,
        _ => SmtpSecurity::StartTls,
    };
    let notify = NotifySettings {
        smtp: text("Notify:Smtp:Host").map(|host| SmtpSettings {
            host,
            port: get("Notify:Smtp:Port")
                .and_then(|v| schema::parse_port(v).ok())
                .unwrap_or(match security {
                    SmtpSecurity::StartTls => 587,
                    SmtpSecurity::Tls => 465,
                    SmtpSecurity::None => 25,
                }),
            security,
            user: text("Notify:Smtp:User"),
            ca_file: text("Notify:Smtp:CaFile").map(|f| resolve(&f)),
            timeout: ms_or("Notify:Smtp:TimeoutMs", 30_000),
        }),
        from: text("Notify:From"),
        email_column: text("Notify:EmailColumn").unwrap_or_else(|| "DefaultEmailAddress".into()),
        language_column: text("Notify:LanguageColumn"),
        language: text("Notify:Language")
            .map(|l| l.to_ascii_lowercase())
            .unwrap_or_else(|| "en".into()),
        help_desk: text("Notify:HelpDesk"),
        poll: ms_or("Notify:PollMs", 5_000),
        retry_min: ms_or("Notify:RetryMinMs", 30_000),
        retry_max: get("Notify:RetryMaxMs")
            .and_then(|v| schema::parse_retry_max_ms(v).ok())
            .map_or(Duration::from_secs(3600), Duration::from_millis),
        give_up_after: Duration::from_secs(
            get("Notify:GiveUpHours")
                .and_then(|v| schema::parse_give_up_hours(v).ok())
                .unwrap_or(72)
                * 3600,
        ),
    };
    let logging = LoggingSettings {
        level: get("Logging:Level").unwrap_or("info").trim().to_owned(),
        format: match get("Logging:Format").map(|v| v.trim().to_ascii_lowercase()) {
            Some(f) if f == "json" => LogFormat::Json,
            _ => LogFormat::Text,
        },
    };
    Settings {
        connection_strings,
        listen: get("Host:Listen")
            .and_then(|v| schema::parse_listen(v).ok())
            .unwrap_or(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 8080)),
        host,
        plugins,
        notify,
        logging,
        base_dir,
    }
}

/// The machine's host name, or `localhost`.
fn default_server_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn environment_layer_and_variables_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("appsettings.json");
        fs::write(
            &base,
            r#"{"Host":{"Listen":"127.0.0.1:1"},"Plugins":{"CallTimeoutMs":100,"Required":["a"]}}"#,
        )
        .unwrap();
        fs::write(
            dir.path().join("appsettings.Staging.json"),
            r#"{"Plugins":{"CallTimeoutMs":200}}"#,
        )
        .unwrap();
        let loaded = load(
            &base,
            &env(&[
                ("PRP_ENVIRONMENT", "Staging"),
                ("Host__Listen", "127.0.0.1:3"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.sources.len(), 2);
        let s = loaded.settings;
        assert_eq!(s.listen.to_string(), "127.0.0.1:3");
        assert_eq!(s.plugins.call_timeout, Duration::from_millis(200));
        assert_eq!(s.plugins.required, vec!["a".to_owned()]);
    }

    #[test]
    fn plugin_directory_default_and_tls_paths() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("appsettings.json");
        fs::write(&base, "{}").unwrap();
        let s = load(&base, &env(&[])).unwrap().settings;
        assert_eq!(
            s.plugins.directory.as_deref(),
            Some(Path::new(DEFAULT_PLUGIN_DIRECTORY))
        );
        assert_eq!(s.host.tls, None);
        fs::write(
            &base,
            r#"{"Plugins":{"Files":["a.so"]},"Host":{"Certificate":"tls/c.pem","PrivateKey":"/k.pem"}}"#,
        )
        .unwrap();
        let s = load(&base, &env(&[])).unwrap().settings;
        assert_eq!(s.plugins.directory, None);
        let tls = s.host.tls.unwrap();
        assert_eq!(tls.certificate, s.base_dir.join("tls/c.pem"));
        assert_eq!(tls.private_key, PathBuf::from("/k.pem"));
        fs::write(&base, r#"{"Host":{"PrivateKey":"k.pem"}}"#).unwrap();
        let err = load(&base, &env(&[])).unwrap_err().to_string();
        assert!(err.contains("go together"), "{err}");
    }

    #[test]
    fn bad_environment_variable_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("appsettings.json");
        fs::write(&base, "{}").unwrap();
        let err = load(&base, &env(&[("Plugins__CallTimeoutMs", "soon")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("environment variable Plugins__CallTimeoutMs: Plugins:CallTimeoutMs:"),
            "{err}"
        );
    }

    #[test]
    fn notify_settings_and_the_smtp_password() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("appsettings.json");
        fs::write(&base, "{}").unwrap();
        let n = load(&base, &Environment::default())
            .unwrap()
            .settings
            .notify;
        assert_eq!(n.smtp, None);
        assert_eq!(n.email_column, "DefaultEmailAddress");
        assert_eq!(n.language, "en");
        fs::write(
            &base,
            r#"{"ConnectionStrings":{"Smtp":"pw-SECRET"},
                "Notify":{"Smtp":{"Host":"mail.example.org","Security":"TLS","User":"prp"},
                          "From":"PRP <prp@example.org>","Language":"de","RetryMaxMs":60000}}"#,
        )
        .unwrap();
        let loaded = load(&base, &Environment::default()).unwrap();
        let n = &loaded.settings.notify;
        let smtp = n.smtp.as_ref().unwrap();
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.security),
            ("mail.example.org", 465, SmtpSecurity::Tls)
        );
        assert_eq!(smtp.user.as_deref(), Some("prp"));
        assert_eq!(n.language, "de");
        assert_eq!(n.retry_max, Duration::from_secs(60));
        assert!(!format!("{loaded:?}").contains("SECRET"));
        assert_eq!(
            loaded
                .settings
                .connection_string(SMTP_PASSWORD)
                .map(|c| c.redacted()),
            Some("***".to_owned())
        );
        for (key, value) in [
            ("Notify__Smtp__Security", "ssl"),
            ("Notify__Smtp__Port", "70000"),
            ("Notify__From", "not an address"),
            ("Notify__EmailColumn", "Mail; DROP"),
            ("Notify__Language", "fr"),
        ] {
            let err = load(&base, &env(&[(key, value)])).unwrap_err();
            assert!(err.to_string().contains(&key.replace("__", ":")), "{err}");
        }
    }

    #[test]
    fn missing_and_unknown_format() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&dir.path().join("nope.json"), &Environment::default()).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("nope.json: not found"));
        let err = load(&dir.path().join("x.yaml"), &Environment::default()).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownFormat { .. }), "{err}");
    }

    #[test]
    fn plugin_settings_layer_and_secret_ones_are_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("appsettings.json");
        fs::write(
            &base,
            r#"{"Plugins":{"Optional":["ldap"],"Settings":{"Ldap-Resolver":{"Url":"ldap://a","BindPassword":"pw-SECRET","TimeoutMs":1000}}}}"#,
        )
        .unwrap();
        let loaded = load(
            &base,
            &env(&[("Plugins__Settings__ldap-resolver__url", "ldap://b")]),
        )
        .unwrap();
        let own = &loaded.settings.plugins.own;
        assert_eq!(own.get("ldap-resolver", "URL"), Some("ldap://b"));
        assert_eq!(own.get("LDAP-RESOLVER", "timeoutms"), Some("1000"));
        assert_eq!(own.get("ldap-resolver", "BindPassword"), Some("pw-SECRET"));
        assert_eq!(own.get("other", "Url"), None);
        assert!(loaded.settings.plugins.is_optional("ldap", "ldap-resolver"));
        assert!(!loaded.settings.plugins.is_optional("search-table", "x"));
        let shown = format!("{loaded:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("BindPassword = ***"), "{shown}");
    }

    #[test]
    fn plugin_settings_in_the_xml_form() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("prp.config");
        fs::write(
            &base,
            r#"<configuration><appSettings>
                <add key="Plugins:Settings:ldap-resolver:Url" value="ldaps://dir"/>
                <add key="Plugins:Optional:0" value="ldap"/>
            </appSettings></configuration>"#,
        )
        .unwrap();
        let loaded = load(&base, &Environment::default()).unwrap();
        assert_eq!(
            loaded.settings.plugins.own.get("ldap-resolver", "url"),
            Some("ldaps://dir")
        );
        assert_eq!(loaded.settings.plugins.optional, vec!["ldap".to_owned()]);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("appsettings.json");
        fs::write(
            &base,
            r#"{"ConnectionStrings":{"QER\\Person\\PasswordResetAuthenticator\\ApplicationToken":"tok-SECRET","Database":"postgres://u:pw-SECRET@h/db"}}"#,
        )
        .unwrap();
        let loaded = load(&base, &Environment::default()).unwrap();
        let shown = format!("{loaded:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert_eq!(
            loaded
                .settings
                .connection_string(APPLICATION_TOKEN)
                .map(|c| c.expose()),
            Some("tok-SECRET")
        );
    }
}
