//! Values that must never be printed: connection strings and the ApplicationToken.

use std::fmt;

/// A connection string. `Debug` and `Display` show only [`ConnectionString::redacted`]; the
/// clear value is reachable through [`ConnectionString::expose`] alone.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    name: String,
    value: String,
}

impl ConnectionString {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The clear value. Only for handing to a driver or a plugin, never for printing.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// A printable form: tokens and secrets are hidden whole; in a URL the password in the
    /// user-info is hidden, and in an ADO.NET-style string every `Password=`/`Pwd=` value.
    pub fn redacted(&self) -> String {
        if is_whole_secret(&self.name) {
            return "***".to_owned();
        }
        redact_value(&self.value)
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionString({:?}: {})", self.name, self.redacted())
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Names whose whole value is a secret, not a connection string with a password in it.
fn is_whole_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    // `Smtp` holds the SMTP password (`Notify:Smtp:User`'s), as it is.
    lower == "smtp"
        || ["token", "secret", "key", "password"]
            .iter()
            .any(|s| lower.ends_with(s))
}

fn redact_value(value: &str) -> String {
    if let Some(scheme_end) = value.find("://") {
        let rest_start = scheme_end + 3;
        let rest = &value[rest_start..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let mut out = value[..rest_start].to_owned();
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        out.push_str(&redact_query(&rest[authority_end..]));
        return out;
    }
    if value.contains('=') {
        return value
            .split(';')
            .map(|part| match part.split_once('=') {
                Some((k, _)) if is_password_key(k) => format!("{k}=***"),
                _ => part.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(";");
    }
    // Neither a URL nor key=value pairs: nothing tells us which part is safe to show.
    "***".to_owned()
}

/// Hides `password=`-like query parameters of a URL's tail (`/db?password=x&mode=rw`).
fn redact_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_owned();
    };
    let (path, query) = tail.split_at(q + 1);
    let query = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_password_key(k) => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{path}{query}")
}

fn is_password_key(key: &str) -> bool {
    let k = key.trim().to_ascii_lowercase();
    k == "password"
        || k == "pwd"
        || k == "sslpassword"
        || k.ends_with("token")
        || k.ends_with("secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_token_is_hidden_whole() {
        let cs = ConnectionString::new(
            r"QER\Person\PasswordResetAuthenticator\ApplicationToken",
            "s3cr3t-token",
        );
        assert_eq!(cs.redacted(), "***");
        assert!(!format!("{cs:?}").contains("s3cr3t"));
        assert!(!format!("{cs}").contains("s3cr3t"));
    }

    #[test]
    fn url_password_is_hidden() {
        let cs = ConnectionString::new(
            "Database",
            "postgres://prp:hunter2@db:5432/prp?sslmode=require",
        );
        assert_eq!(
            cs.redacted(),
            "postgres://prp:***@db:5432/prp?sslmode=require"
        );
        let cs = ConnectionString::new("Database", "postgres://db/prp?user=a&password=hunter2");
        assert_eq!(cs.redacted(), "postgres://db/prp?user=a&password=***");
        let cs = ConnectionString::new("Database", "sqlite://data/prp.db?mode=rwc");
        assert_eq!(cs.redacted(), "sqlite://data/prp.db?mode=rwc");
    }

    #[test]
    fn ado_style_password_is_hidden() {
        let cs = ConnectionString::new("Database", "Server=db;User ID=prp;Password=hunter2;Pwd=x");
        assert_eq!(cs.redacted(), "Server=db;User ID=prp;Password=***;Pwd=***");
    }

    #[test]
    fn smtp_password_is_hidden_whole() {
        // Even one that looks like key=value pairs.
        let cs = ConnectionString::new("Smtp", "user=a;pass=hunter2");
        assert_eq!(cs.redacted(), "***");
    }

    #[test]
    fn opaque_value_is_hidden() {
        let cs = ConnectionString::new("Other", "hunter2");
        assert_eq!(cs.redacted(), "***");
    }
}
