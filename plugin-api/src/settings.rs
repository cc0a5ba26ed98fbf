//! A plugin's own settings, typed: `Plugins:Settings:<plugin name>:<key>` in the host's
//! configuration, read through [`crate::HostServices::setting`] and [`crate::HostServices::setting_path`].
//!
//! ```ignore
//! let settings = Settings::new(&host, "ldap-resolver");
//! let url = settings.required("Url")?;
//! let timeout = settings.u64("TimeoutMs")?.unwrap_or(5000);
//! let start_tls = settings.bool("StartTls")?.unwrap_or(false);
//! let ca_file = settings.path("CaFile")?;           // relative to the config file's folder
//! let password = settings.secret("BindPassword")?;  // Debug prints `***`
//! ```
//!
//! Plain Rust, not part of the ABI: it only calls the host's ABI methods.

use crate::error::PluginError;
use crate::host::HostServicesBox;
use std::fmt;
use std::path::PathBuf;

/// Whether a setting key names a secret: it ends in `Password`, `Secret` or `Token`
/// (ASCII case-insensitively). The host never prints the value of such a setting (`check`,
/// configuration dumps, logs), and [`Settings::secret`] is the way to read one.
pub fn is_secret_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|end| key.ends_with(end))
}

/// A plugin's settings, read from the host's configuration on each call (nothing is cached, so
/// read them once, in `init`, and keep the typed values).
///
/// `plugin` is the plugin's name, as the host knows it (the `name` of `export_plugin!`); it is
/// used to name the full setting path in errors (`Plugins:Settings:<plugin>:<key>`). The host
/// itself already knows which plugin is asking: each plugin gets its own services object.
pub struct Settings<'a> {
    host: &'a HostServicesBox,
    plugin: String,
}

impl<'a> Settings<'a> {
    pub fn new(host: &'a HostServicesBox, plugin: &str) -> Self {
        Self {
            host,
            plugin: plugin.to_owned(),
        }
    }

    /// The full configuration path of a key: `Plugins:Settings:<plugin>:<key>`.
    pub fn full_path(&self, key: &str) -> String {
        format!("Plugins:Settings:{}:{}", self.plugin, key)
    }

    fn config_error(&self, key: &str, what: impl fmt::Display) -> PluginError {
        PluginError::config(format!("{}: {what}", self.full_path(key)))
    }

    /// The raw value, or `None` when unset.
    pub fn string(&self, key: &str) -> Result<Option<String>, PluginError> {
        let value = self.host.setting(key.into()).into_result()?;
        Ok(value.into_option().map(|v| v.into_string()))
    }

    /// The raw value; an error of kind `config` naming the full path when unset or empty.
    pub fn required(&self, key: &str) -> Result<String, PluginError> {
        match self.string(key)? {
            Some(v) if !v.trim().is_empty() => Ok(v),
            Some(_) => Err(self.config_error(key, "is empty")),
            None => Err(self.config_error(key, "is required but not set")),
        }
    }

    /// A non-negative integer, or `None` when unset; anything else is an error naming the
    /// path and the value.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, PluginError> {
        match self.string(key)? {
            None => Ok(None),
            Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                self.config_error(key, format!("`{v}` is not a non-negative integer"))
            }),
        }
    }

    /// `true` or `false` (ASCII case-insensitive), or `None` when unset; anything else is an
    /// error naming the path and the value.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, PluginError> {
        match self.string(key)? {
            None => Ok(None),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(self.config_error(key, format!("`{v}` is not `true` or `false`"))),
            },
        }
    }

    /// A path, relative ones resolved against the directory of the host's configuration file,
    /// or `None` when unset.
    pub fn path(&self, key: &str) -> Result<Option<PathBuf>, PluginError> {
        let value = self.host.setting_path(key.into()).into_result()?;
        Ok(value.into_option().map(|v| PathBuf::from(v.into_string())))
    }

    /// A path that must be set.
    pub fn required_path(&self, key: &str) -> Result<PathBuf, PluginError> {
        self.path(key)?
            .ok_or_else(|| self.config_error(key, "is required but not set"))
    }

    /// A secret (a password, a token), or `None` when unset. Its `Debug` is redacted; read
    /// it with [`SecretString::expose`] where it is used, and never log it.
    pub fn secret(&self, key: &str) -> Result<Option<SecretString>, PluginError> {
        if !is_secret_setting(key) {
            // The host redacts settings by their key; a secret under another key would be
            // printed by `check` and configuration dumps.
            return Err(self.config_error(
                key,
                "a secret setting's key must end in `Password`, `Secret` or `Token`",
            ));
        }
        Ok(self.string(key)?.map(SecretString::new))
    }

    /// A secret that must be set.
    pub fn required_secret(&self, key: &str) -> Result<SecretString, PluginError> {
        match self.secret(key)? {
            Some(s) if !s.expose().is_empty() => Ok(s),
            Some(_) => Err(self.config_error(key, "is empty")),
            None => Err(self.config_error(key, "is required but not set")),
        }
    }
}

/// A secret value: `Debug` prints `***`, there is no `Display`, and the bytes are overwritten
/// when it is dropped. [`SecretString::expose`] hands out the value where it is really used.
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Never log it or put it into an error message.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        // SAFETY: zero bytes are valid UTF-8; volatile writes so the wipe isn't optimised out.
        unsafe {
            for b in self.0.as_bytes_mut() {
                std::ptr::write_volatile(b, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::testing::FakeHost;

    fn host() -> (FakeHost, HostServicesBox) {
        let fake = FakeHost::new("my-plugin");
        fake.set_setting("Url", "ldap://127.0.0.1:389")
            .set_setting("TimeoutMs", "2500")
            .set_setting("StartTls", "TRUE")
            .set_setting("Broken", "maybe")
            .set_setting("Empty", " ")
            .set_setting("BindPassword", "s3cret")
            .set_setting("CaFile", "certs/ca.pem")
            .set_config_dir("/etc/prp");
        let boxed = fake.services();
        (fake, boxed)
    }

    #[test]
    fn typed_getters_read_and_check_values() {
        let (_fake, host) = host();
        let s = Settings::new(&host, "my-plugin");
        assert_eq!(
            s.string("url").unwrap().as_deref(),
            Some("ldap://127.0.0.1:389")
        );
        assert_eq!(s.string("Missing").unwrap(), None);
        assert_eq!(s.u64("TimeoutMs").unwrap(), Some(2500));
        assert_eq!(s.bool("StartTls").unwrap(), Some(true));
        assert_eq!(s.bool("Missing").unwrap(), None);
        let e = s.bool("Broken").unwrap_err();
        assert_eq!(e.kind, ErrorKind::CONFIG);
        assert!(
            e.message.contains("Plugins:Settings:my-plugin:Broken"),
            "{e}"
        );
        assert!(e.message.contains("`maybe`"), "{e}");
        let e = s.u64("Url").unwrap_err();
        assert!(e.message.contains("Plugins:Settings:my-plugin:Url"), "{e}");
        let e = s.required("Missing").unwrap_err();
        assert_eq!(e.kind, ErrorKind::CONFIG);
        assert!(
            e.message.contains("Plugins:Settings:my-plugin:Missing"),
            "{e}"
        );
        assert!(s.required("Empty").is_err());
        assert_eq!(
            s.path("CaFile").unwrap(),
            Some(PathBuf::from("/etc/prp/certs/ca.pem"))
        );
    }

    #[test]
    fn secrets_are_redacted_and_only_read_under_secret_keys() {
        let (_fake, host) = host();
        let s = Settings::new(&host, "my-plugin");
        let secret = s.secret("BindPassword").unwrap().unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(format!("{secret:?}"), "SecretString(***)");
        assert!(s.secret("Url").is_err());
        assert!(s.required_secret("ApiToken").is_err());
        assert!(is_secret_setting("BindPassword"));
        assert!(is_secret_setting("clientsecret"));
        assert!(is_secret_setting("API_TOKEN"));
        assert!(!is_secret_setting("Url"));
        assert!(!is_secret_setting("PasswordPolicy"));
    }
}
