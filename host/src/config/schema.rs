//! The settings prp-host knows, in the flattened `Section:Key` form that appsettings.json, the
//! XML `.config` format and environment variables (`Section__Key`) all map to.

/// One known setting. In `pattern`, `#` stands for an array index and `*` for a free name.
struct Setting {
    pattern: &'static str,
    check: fn(&str) -> Result<(), String>,
    help: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting {
        pattern: "ConnectionStrings:*",
        check: check_any,
        help: "a connection string, by name",
    },
    Setting {
        pattern: "Host:Listen",
        check: check_listen,
        help: "address to serve HTTP on, e.g. 127.0.0.1:8080 or http://*:8080 (https with Host:Certificate and Host:PrivateKey)",
    },
    Setting {
        pattern: "Host:Certificate",
        check: check_non_empty,
        help: "PEM certificate chain (leaf first) to serve https with; needs Host:PrivateKey; reloaded on SIGHUP",
    },
    Setting {
        pattern: "Host:PrivateKey",
        check: check_non_empty,
        help: "PEM private key of Host:Certificate; reloaded on SIGHUP",
    },
    Setting {
        pattern: "Host:ServerName",
        check: check_server_name,
        help: "this server's name, for API configuration keys set --local (default: the host name)",
    },
    Setting {
        pattern: "Host:Authenticator",
        check: check_non_empty,
        help: "the id of the authenticator that handles logins (default: password-reset)",
    },
    Setting {
        pattern: "Host:HashWorkers",
        check: check_concurrency,
        help: "how many password hashes may run at once (default: the number of cores)",
    },
    Setting {
        pattern: "Host:MaxPendingLogins",
        check: check_concurrency,
        help: "logins in progress beyond which new ones get 503 (default: 16 per hash worker)",
    },
    Setting {
        pattern: "Host:Argon2MemoryKiB",
        check: check_argon2_memory,
        help: "argon2id memory per hash in KiB, at least 19456 (the default)",
    },
    Setting {
        pattern: "Host:Argon2Iterations",
        check: check_argon2_iterations,
        help: "argon2id passes, at least 2 (the default)",
    },
    Setting {
        pattern: "Host:SessionMinutes",
        check: check_minutes,
        help: "lifetime of a session opened with user name and password (default: 60)",
    },
    Setting {
        pattern: "Host:ResetSessionMinutes",
        check: check_minutes,
        help: "lifetime of a session opened with a passcode or questions (default: 15)",
    },
    Setting {
        pattern: "Host:SessionIdleMinutes",
        check: check_minutes,
        help: "a session unused this long ends (default: 15)",
    },
    Setting {
        pattern: "Host:PublicUrl",
        check: check_public_url,
        help: "the URL people reach the portal at; https:// makes the session cookie Secure",
    },
    Setting {
        pattern: "Host:AdminListen",
        check: check_listen,
        help: "address of the admin listener that serves /metrics and the detail of /health/ready (default: none; keep it on loopback or a private network)",
    },
    Setting {
        pattern: "Host:TrustedProxies:#",
        check: check_ip,
        help: "the IP address of a reverse proxy whose X-Forwarded-For is believed (default: none; the TCP peer is the client)",
    },
    Setting {
        pattern: "Host:MaxConnections",
        check: check_connections,
        help: "open connections at most; more wait in the kernel's backlog (default: 1024)",
    },
    Setting {
        pattern: "Host:HeaderTimeoutMs",
        check: check_timeout_ms,
        help: "a request's header must arrive within this (default: 10000)",
    },
    Setting {
        pattern: "Host:BodyTimeoutMs",
        check: check_timeout_ms,
        help: "a request's body must arrive within this (default: 10000)",
    },
    Setting {
        pattern: "Plugins:Resolvers:#",
        check: check_non_empty,
        help: "the id of a resolver to use, in order (default: only the resolvers of the plugin that provides Host:Authenticator)",
    },
    Setting {
        pattern: "Plugins:Optional:#",
        check: check_non_empty,
        help: "a resolver id or plugin name whose resolvers are optional: when one fails, only its own accounts are dropped (default: every resolver is required; a failure denies)",
    },
    Setting {
        pattern: "Plugins:Settings:*:*",
        check: check_any,
        help: "a plugin's own setting, Plugins:Settings:<plugin name>:<key>; keys ending in Password, Secret or Token are secrets and never printed",
    },
    Setting {
        pattern: "Plugins:Settings:*:*:*",
        check: check_any,
        help: "a plugin's own setting with a two-part key",
    },
    Setting {
        pattern: "Plugins:Directory",
        check: check_non_empty,
        help: "directory whose every shared library is loaded as a plugin (default: /usr/lib/prp/plugins when Plugins:Files is empty too)",
    },
    Setting {
        pattern: "Plugins:Files:#",
        check: check_non_empty,
        help: "a plugin library to load, in addition to the directory",
    },
    Setting {
        pattern: "Plugins:Required:#",
        check: check_non_empty,
        help: "name of a plugin the host refuses to serve without",
    },
    Setting {
        pattern: "Plugins:Sha256:*",
        check: check_sha256,
        help: "pinned SHA-256 of a plugin file, by file name",
    },
    Setting {
        pattern: "Plugins:RequirePins",
        check: check_bool,
        help: "true: refuse every plugin library without a Plugins:Sha256 pin (default: false)",
    },
    Setting {
        pattern: "Plugins:CallTimeoutMs",
        check: check_timeout_ms,
        help: "how long one plugin call may take before it is denied",
    },
    Setting {
        pattern: "Plugins:MaxConcurrentCalls",
        check: check_concurrency,
        help: "how many plugin calls may run at once",
    },
    Setting {
        pattern: "Notify:Smtp:Host",
        check: check_non_empty,
        help: "the SMTP server notifications are delivered through (default: none; nothing is delivered)",
    },
    Setting {
        pattern: "Notify:Smtp:Port",
        check: check_port,
        help: "its port (default: 587 with starttls, 465 with tls, 25 with none)",
    },
    Setting {
        pattern: "Notify:Smtp:Security",
        check: check_smtp_security,
        help: "starttls (the default), tls (implicit TLS) or none (only for a relay on loopback)",
    },
    Setting {
        pattern: "Notify:Smtp:User",
        check: check_non_empty,
        help: "the user to authenticate as; its password is ConnectionStrings:Smtp",
    },
    Setting {
        pattern: "Notify:Smtp:CaFile",
        check: check_non_empty,
        help: "PEM certificates of the CAs that sign the SMTP server's certificate, trusted besides the public roots (relative to the configuration file)",
    },
    Setting {
        pattern: "Notify:Smtp:TimeoutMs",
        check: check_timeout_ms,
        help: "one SMTP conversation must end within this (default: 30000)",
    },
    Setting {
        pattern: "Notify:From",
        check: check_mailbox,
        help: "the sender, e.g. Password Reset Portal <prp@example.org> (required with Notify:Smtp:Host)",
    },
    Setting {
        pattern: "Notify:EmailColumn",
        check: check_column,
        help: "the Person column with the recipient's address (default: DefaultEmailAddress)",
    },
    Setting {
        pattern: "Notify:LanguageColumn",
        check: check_column,
        help: "a Person column with the person's language, e.g. de or en-GB (default: none)",
    },
    Setting {
        pattern: "Notify:Language",
        check: check_language,
        help: "the language of messages when the person has none: en (the default) or de",
    },
    Setting {
        pattern: "Notify:HelpDesk",
        check: check_non_empty,
        help: "how to reach the help desk, named in every message (default: just \"the help desk\")",
    },
    Setting {
        pattern: "Notify:PollMs",
        check: check_timeout_ms,
        help: "how often the outbox is looked at for messages to send (default: 5000)",
    },
    Setting {
        pattern: "Notify:RetryMinMs",
        check: check_timeout_ms,
        help: "the wait before the first retry of a failed delivery, doubled on each retry (default: 30000)",
    },
    Setting {
        pattern: "Notify:RetryMaxMs",
        check: check_retry_max,
        help: "the longest wait between retries (default: 3600000)",
    },
    Setting {
        pattern: "Notify:GiveUpHours",
        check: check_give_up,
        help: "a message not delivered this long after it was queued is undeliverable (default: 72)",
    },
    Setting {
        pattern: "Logging:Level",
        check: check_level,
        help: "error, warn, info, debug or trace, or a tracing filter",
    },
    Setting {
        pattern: "Logging:Format",
        check: check_format,
        help: "text or json",
    },
];

/// The known top-level sections, in their canonical spelling.
pub const SECTIONS: &[&str] = &["ConnectionStrings", "Host", "Plugins", "Notify", "Logging"];

/// Whether `name` is a known section (case-insensitive); used to pick environment variables.
pub fn is_section(name: &str) -> bool {
    SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Maps a key (any case) to its canonical spelling and checks the value. The error says what is
/// wrong in words an operator understands and never repeats a connection string's value.
pub fn validate(key: &str, value: &str) -> Result<String, String> {
    let segments: Vec<&str> = key.split(':').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!("setting name \"{key}\" has an empty part"));
    }
    let Some(section) = SECTIONS
        .iter()
        .find(|s| s.eq_ignore_ascii_case(segments[0]))
    else {
        return Err(format!(
            "unknown section \"{}\" (known sections: {})",
            segments[0],
            SECTIONS.join(", ")
        ));
    };
    for setting in SETTINGS {
        if let Some(canonical) = match_pattern(setting.pattern, &segments) {
            (setting.check)(value).map_err(|msg| format!("{canonical}: {msg}"))?;
            return Ok(canonical);
        }
    }
    // A list written as one value (`"Required": "x"`) reaches here as `Plugins:Required`.
    let mut as_list = segments.clone();
    as_list.push("0");
    if SETTINGS
        .iter()
        .any(|s| s.pattern.ends_with(":#") && match_pattern(s.pattern, &as_list).is_some())
    {
        return Err(format!(
            "\"{key}\" is a list: write it as [\"{value}\"], not as one value"
        ));
    }
    let known: Vec<String> = SETTINGS
        .iter()
        .filter(|s| s.pattern.starts_with(section))
        .map(|s| format!("{} ({})", s.pattern.replace('#', "0"), s.help))
        .collect();
    Err(format!(
        "unknown setting \"{key}\"; known settings in {section}: {}",
        known.join("; ")
    ))
}

fn match_pattern(pattern: &str, segments: &[&str]) -> Option<String> {
    let parts: Vec<&str> = pattern.split(':').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut out = Vec::with_capacity(parts.len());
    for (p, s) in parts.iter().zip(segments) {
        match *p {
            "*" => out.push((*s).to_owned()),
            "#" if s.chars().all(|c| c.is_ascii_digit()) => out.push((*s).to_owned()),
            "#" => return None,
            lit if lit.eq_ignore_ascii_case(s) => out.push(lit.to_owned()),
            _ => return None,
        }
    }
    Some(out.join(":"))
}

fn check_any(_: &str) -> Result<(), String> {
    Ok(())
}

fn check_non_empty(v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(())
    }
}

fn check_sha256(v: &str) -> Result<(), String> {
    if v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("expected 64 hexadecimal digits, got \"{v}\""))
    }
}

fn parse_u64_in(v: &str, min: u64, max: u64, what: &str) -> Result<u64, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected {what} from {min} to {max}, got \"{v}\"")),
    }
}

pub(super) fn parse_timeout_ms(v: &str) -> Result<u64, String> {
    parse_u64_in(v, 1, 600_000, "a whole number of milliseconds")
}

pub(super) fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("expected true or false, got \"{v}\"")),
    }
}

fn check_bool(v: &str) -> Result<(), String> {
    parse_bool(v).map(drop)
}

fn check_server_name(v: &str) -> Result<(), String> {
    if !v.trim().is_empty()
        && v.trim()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(())
    } else {
        Err(format!(
            "\"{v}\" is not a server name (letters, digits, -, _ and .)"
        ))
    }
}

pub(super) fn parse_u32_in(v: &str, min: u64, max: u64, what: &str) -> Result<u32, String> {
    parse_u64_in(v, min, max, what).map(|n| n as u32)
}

fn check_argon2_memory(v: &str) -> Result<(), String> {
    parse_u32_in(v, 19_456, 4_194_304, "a memory size in KiB").map(drop)
}

fn check_argon2_iterations(v: &str) -> Result<(), String> {
    parse_u32_in(v, 2, 100, "a number of passes").map(drop)
}

fn check_minutes(v: &str) -> Result<(), String> {
    parse_u32_in(v, 1, 43_200, "a number of minutes").map(drop)
}

fn check_public_url(v: &str) -> Result<(), String> {
    let v = v.trim();
    if (v.starts_with("https://") || v.starts_with("http://"))
        && v.len() > 8
        && !v.contains(char::is_whitespace)
    {
        Ok(())
    } else {
        Err(format!("\"{v}\" is not an http:// or https:// URL"))
    }
}

fn check_timeout_ms(v: &str) -> Result<(), String> {
    parse_timeout_ms(v).map(drop)
}

pub(super) fn parse_concurrency(v: &str) -> Result<usize, String> {
    parse_u64_in(v, 1, 1024, "a whole number").map(|n| n as usize)
}

fn check_concurrency(v: &str) -> Result<(), String> {
    parse_concurrency(v).map(drop)
}

/// Parses `Host:Listen`: `ip:port`, `http://host:port`, with `*`/`+` for all interfaces and
/// `localhost` for the loopback address.
pub(super) fn parse_listen(v: &str) -> Result<std::net::SocketAddr, String> {
    let raw = v.trim();
    if raw.starts_with("https://") {
        return Err(
            "give the address as host:port or http://host:port; https is served when Host:Certificate and Host:PrivateKey are set"
                .into(),
        );
    }
    let rest = raw
        .strip_prefix("http://")
        .unwrap_or(raw)
        .trim_end_matches('/');
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(format!("expected host:port, got \"{v}\""));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("\"{port}\" is not a port number (0-65535) in \"{v}\""))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = match host {
        "*" | "+" | "0.0.0.0" => std::net::Ipv4Addr::UNSPECIFIED.into(),
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        other => other
            .parse()
            .map_err(|_| format!("\"{other}\" is not an IP address, localhost or * in \"{v}\""))?,
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

fn check_ip(v: &str) -> Result<(), String> {
    v.trim()
        .parse::<std::net::IpAddr>()
        .map(drop)
        .map_err(|_| format!("\"{}\" is not an IP address", v.trim()))
}

pub(super) fn parse_connections(v: &str) -> Result<usize, String> {
    parse_u64_in(v, 1, 1_000_000, "a whole number").map(|n| n as usize)
}

fn check_connections(v: &str) -> Result<(), String> {
    parse_connections(v).map(drop)
}

fn check_listen(v: &str) -> Result<(), String> {
    parse_listen(v).map(drop)
}

pub(super) fn parse_port(v: &str) -> Result<u16, String> {
    parse_u64_in(v, 1, 65_535, "a port number").map(|n| n as u16)
}

fn check_port(v: &str) -> Result<(), String> {
    parse_port(v).map(drop)
}

fn check_smtp_security(v: &str) -> Result<(), String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "none" | "starttls" | "tls" => Ok(()),
        _ => Err(format!("expected starttls, tls or none, got \"{v}\"")),
    }
}

/// `addr@domain` or `Display Name <addr@domain>`; lettre parses it again when it sends.
fn check_mailbox(v: &str) -> Result<(), String> {
    let v = v.trim();
    let addr = match (v.rfind('<'), v.ends_with('>')) {
        (Some(open), true) => &v[open + 1..v.len() - 1],
        _ => v,
    };
    match addr.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !addr.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(format!("\"{v}\" is not an e-mail address")),
    }
}

fn check_column(v: &str) -> Result<(), String> {
    if crate::store::is_identifier(v.trim()) {
        Ok(())
    } else {
        Err(format!(
            "\"{v}\" is not a column name (letters, digits and _)"
        ))
    }
}

fn check_language(v: &str) -> Result<(), String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "en" | "de" => Ok(()),
        _ => Err(format!("expected en or de, got \"{v}\"")),
    }
}

pub(super) fn parse_retry_max_ms(v: &str) -> Result<u64, String> {
    parse_u64_in(v, 1, 86_400_000, "a whole number of milliseconds")
}

fn check_retry_max(v: &str) -> Result<(), String> {
    parse_retry_max_ms(v).map(drop)
}

pub(super) fn parse_give_up_hours(v: &str) -> Result<u64, String> {
    parse_u64_in(v, 1, 8_760, "a number of hours")
}

fn check_give_up(v: &str) -> Result<(), String> {
    parse_give_up_hours(v).map(drop)
}

const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

fn check_level(v: &str) -> Result<(), String> {
    // A bare word that isn't a level is a target to tracing, which then logs nothing else:
    // almost always a misspelt level ("loud" turned every log off), so it is refused.
    for directive in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains('=') && !directive.contains('[');
        let numeric = matches!(directive, "0" | "1" | "2" | "3" | "4" | "5");
        if bare && !numeric && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
            return Err(format!(
                "\"{directive}\" is not a log level ({}); a filter names its target, as target=level",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(v.trim())
        .map(drop)
        .map_err(|e| format!("\"{v}\" is not a log level or filter: {e}"))
}

fn check_format(v: &str) -> Result<(), String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "text" | "json" => Ok(()),
        _ => Err(format!("expected text or json, got \"{v}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_canonicalised_case_insensitively() {
        assert_eq!(
            validate("host:listen", "127.0.0.1:1").as_deref(),
            Ok("Host:Listen")
        );
        assert_eq!(
            validate("PLUGINS:required:3", "x").as_deref(),
            Ok("Plugins:Required:3")
        );
        assert_eq!(
            validate(r"connectionstrings:QER\X", "v").as_deref(),
            Ok(r"ConnectionStrings:QER\X")
        );
    }

    #[test]
    fn a_list_written_as_one_value_says_so() {
        let e = validate("Plugins:Required", "password-reset-authenticator").unwrap_err();
        assert!(
            e.contains(
                r#""Plugins:Required" is a list: write it as ["password-reset-authenticator"]"#
            ),
            "{e}"
        );
    }

    #[test]
    fn a_misspelt_log_level_is_refused() {
        for ok in [
            "info",
            "WARN",
            "info,sqlx=warn",
            "prp_host=debug",
            "off",
            "info,[span]=debug",
        ] {
            assert!(check_level(ok).is_ok(), "{ok}");
        }
        let e = check_level("loud").unwrap_err();
        assert!(
            e.contains("\"loud\" is not a log level (error, warn"),
            "{e}"
        );
        assert!(check_level("info,verbose").is_err());
    }

    #[test]
    fn unknown_sections_and_settings_are_named() {
        let e = validate("Hots:Listen", "x").unwrap_err();
        assert!(e.contains("unknown section \"Hots\""), "{e}");
        let e = validate("Host:Lisen", "x").unwrap_err();
        assert!(e.contains("unknown setting \"Host:Lisen\""), "{e}");
        assert!(e.contains("Host:Listen"), "{e}");
        let e = validate("Plugins:Required:first", "x").unwrap_err();
        assert!(e.contains("unknown setting"), "{e}");
    }

    #[test]
    fn any_plugin_may_have_settings() {
        assert_eq!(
            validate("plugins:settings:ldap-resolver:BindPassword", "x"),
            Ok("Plugins:Settings:ldap-resolver:BindPassword".to_owned())
        );
        assert_eq!(
            validate("Plugins:Settings:my_plugin:Map:Mail", ""),
            Ok("Plugins:Settings:my_plugin:Map:Mail".to_owned())
        );
        assert!(validate("Plugins:Settings:only-a-plugin", "x").is_err());
        assert_eq!(
            validate("Plugins:Optional:0", "ldap"),
            Ok("Plugins:Optional:0".to_owned())
        );
    }

    #[test]
    fn values_are_checked() {
        assert!(validate("Plugins:CallTimeoutMs", "0")
            .unwrap_err()
            .contains("Plugins:CallTimeoutMs"));
        assert!(validate("Plugins:Sha256:a.so", "abc").is_err());
        assert!(validate("Plugins:RequirePins", "True").is_ok());
        assert!(validate("Plugins:RequirePins", "yes")
            .unwrap_err()
            .contains("expected true or false"));
        assert!(validate("Logging:Format", "xml").is_err());
        assert!(validate("Host:Listen", "https://x:1")
            .unwrap_err()
            .contains("Host:Certificate"));
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:8080").map(|a| a.to_string()),
            Ok("127.0.0.1:8080".into())
        );
        assert_eq!(
            parse_listen("http://*:80/").map(|a| a.to_string()),
            Ok("0.0.0.0:80".into())
        );
        assert_eq!(
            parse_listen("http://localhost:9").map(|a| a.to_string()),
            Ok("127.0.0.1:9".into())
        );
        assert_eq!(
            parse_listen("[::1]:9").map(|a| a.to_string()),
            Ok("[::1]:9".into())
        );
        assert!(parse_listen("127.0.0.1").is_err());
        assert!(parse_listen("127.0.0.1:99999").is_err());
    }
}
