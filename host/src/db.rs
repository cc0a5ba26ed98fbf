//! The portal's database connection. The host owns every connection: plugins never open the
//! database themselves (see ARCHITECTURE.md).

use crate::config::{ConnectionString, DATABASE};
use sqlx::AnyPool;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("connection string \"{DATABASE}\" is not set")]
    NotConfigured,
    #[error("connection string \"{DATABASE}\" ({shown}): unsupported database; use sqlite://… or postgres://…")]
    Unsupported { shown: String },
    #[error("database file {path} does not exist (check creates nothing): {}", missing_file_advice(*.creatable))]
    MissingFile {
        path: String,
        /// Whether the connection string lets the portal create the file (`mode=rwc`).
        creatable: bool,
    },
    #[error("database {shown}: {message}")]
    Unreachable { shown: String, message: String },
}

/// What to run about a SQLite file that doesn't exist yet.
fn missing_file_advice(creatable: bool) -> String {
    let run = "run `prp-host demo` to create it with the demo's data, or `prp-host migrate` to create an empty portal database (then the identity tables, Person and the account tables, must come from you: README, \"The identity schema\")";
    if creatable {
        run.to_owned()
    } else {
        format!("add ?mode=rwc to the connection string \"{DATABASE}\" so that the portal may create it, then {run}")
    }
}

/// The URL handed to sqlx: a relative SQLite path is resolved against the config file's
/// directory, so the portal finds its database wherever it is started from.
pub fn database_url(cs: &ConnectionString, base_dir: &Path) -> Result<String, DbError> {
    let raw = cs.expose().trim();
    if let Some(rest) = raw.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = rest
            .split_once('?')
            .map_or((rest, None), |(p, q)| (p, Some(q)));
        let path = if path == ":memory:" || path.is_empty() || Path::new(path).is_absolute() {
            path.to_owned()
        } else {
            base_dir.join(path).to_string_lossy().into_owned()
        };
        return Ok(match query {
            Some(q) => format!("sqlite://{path}?{q}"),
            None => format!("sqlite://{path}"),
        });
    }
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        return Ok(raw.to_owned());
    }
    Err(DbError::Unsupported {
        shown: cs.redacted(),
    })
}

/// The URL to read the database without changing it (for `prp-host check`): a SQLite file must
/// exist and is opened with `mode=ro` (in place of any other `mode`), so nothing is created or
/// written. Other databases are read as they are: reading creates nothing there.
pub fn read_only_url(url: &str) -> Result<String, DbError> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Ok(url.to_owned());
    };
    let (path, query) = rest
        .split_once('?')
        .map_or((rest, None), |(p, q)| (p, Some(q)));
    if path.is_empty() || path == ":memory:" {
        return Ok(url.to_owned());
    }
    let params = query.into_iter().flat_map(|q| q.split('&'));
    if !Path::new(path).exists() {
        return Err(DbError::MissingFile {
            path: path.to_owned(),
            creatable: params.clone().any(|kv| kv == "mode=rwc"),
        });
    }
    let mut params: Vec<&str> = params
        .filter(|kv| !kv.is_empty() && !kv.starts_with("mode="))
        .collect();
    params.push("mode=ro");
    Ok(format!("sqlite://{path}?{}", params.join("&")))
}

/// Opens the portal's database for reading only (see [`read_only_url`]).
pub async fn open_read_only(
    settings: &crate::config::Settings,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> Result<crate::store::Store, DbError> {
    let cs = settings
        .connection_string(DATABASE)
        .ok_or(DbError::NotConfigured)?;
    let url = read_only_url(&database_url(cs, &settings.base_dir)?)?;
    let dialect = crate::store::Dialect::of_url(&url).ok_or_else(|| DbError::Unsupported {
        shown: cs.redacted(),
    })?;
    // Not `Store::connect`: it switches SQLite to WAL, a write a read-only file refuses.
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(&url)
        .await
        .map_err(|e| DbError::Unreachable {
            shown: cs.redacted(),
            message: scrub(&e.to_string(), cs),
        })?;
    Ok(crate::store::Store::from_pool(pool, dialect, clock))
}

/// With `mode=rwc` SQLite creates the file but not its directory; create that too.
pub fn create_sqlite_parent(url: &str) {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return;
    };
    let Some((path, query)) = rest.split_once('?') else {
        return;
    };
    if query.split('&').any(|kv| kv == "mode=rwc") {
        if let Some(parent) = Path::new(path).parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                if let Err(e) = std::fs::create_dir_all(parent) {
                    tracing::warn!(dir = %parent.display(), "cannot create the database directory: {e}");
                }
            }
        }
    }
}

pub async fn ping(pool: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop)
}

/// Removes the clear connection string from a driver message, should a driver ever echo it.
pub fn scrub(message: &str, cs: &ConnectionString) -> String {
    let clear = cs.expose();
    if clear.is_empty() {
        message.to_owned()
    } else {
        message.replace(clear, &cs.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sqlite_paths_follow_the_config_file() {
        let cs = ConnectionString::new(DATABASE, "sqlite://data/prp.db?mode=rwc");
        assert_eq!(
            database_url(&cs, Path::new("/etc/prp")).ok().as_deref(),
            Some("sqlite:///etc/prp/data/prp.db?mode=rwc")
        );
        let cs = ConnectionString::new(DATABASE, "sqlite:///var/lib/prp.db");
        assert_eq!(
            database_url(&cs, Path::new("/etc")).ok().as_deref(),
            Some("sqlite:///var/lib/prp.db")
        );
        let cs = ConnectionString::new(DATABASE, "mysql://u:p@h/db");
        let err = database_url(&cs, Path::new("/")).unwrap_err().to_string();
        assert!(err.contains("unsupported") && !err.contains(":p@"), "{err}");
    }

    #[test]
    fn read_only_urls_create_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prp.db");
        let url = format!("sqlite://{}?mode=rwc&cache=shared", file.display());
        let err = read_only_url(&url).unwrap_err();
        assert!(
            matches!(
                err,
                DbError::MissingFile {
                    creatable: true,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("`prp-host demo`"), "{err}");
        let plain = format!("sqlite://{}", file.display());
        let err = read_only_url(&plain).unwrap_err().to_string();
        assert!(err.contains("add ?mode=rwc"), "{err}");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(
            read_only_url(&url).ok(),
            Some(format!("sqlite://{}?cache=shared&mode=ro", file.display()))
        );
        let pg = "postgres://u@h/db";
        assert_eq!(read_only_url(pg).ok().as_deref(), Some(pg));
    }

    #[test]
    fn scrub_removes_the_clear_value() {
        let cs = ConnectionString::new(DATABASE, "postgres://u:pw@h/db");
        assert_eq!(
            scrub("failed postgres://u:pw@h/db", &cs),
            "failed postgres://u:***@h/db"
        );
    }
}
