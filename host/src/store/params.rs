//! The configuration store: hierarchical parameters (`QER\Person\PasswordResetAuthenticator\…`)
//! and the portal's API configuration keys, global or local to one server.
//!
//! Reads go to the database every time, so a change made with `prp-host params`/`keys` takes
//! effect on every server at its next request, without a restart.

use super::{flag, Store, StoreError};
use crate::params_spec::{self, KnownParameter};
use crate::policy::PasswordPolicy;
use crate::store::LockoutPolicy;
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// One stored parameter and whether it is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub path: String,
    pub value: Option<String>,
    pub enabled: bool,
    /// The nearest disabled ancestor (or the parameter itself), when there is one.
    pub disabled_by: Option<String>,
}

impl Parameter {
    /// In force: it and all its parents are enabled.
    pub fn in_force(&self) -> bool {
        self.disabled_by.is_none()
    }
}

/// Normalises a parameter path: the UI form `QER | Person | X` and the stored form `QER\Person\X`
/// are the same path. Segments are letters, digits, `_`, `-` and `.`.
pub fn normalize_path(path: &str) -> Result<String, StoreError> {
    let segments: Vec<&str> = path.split(['\\', '|']).map(str::trim).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(StoreError::Invalid(format!(
            "parameter path \"{path}\" has an empty segment"
        )));
    }
    if let Some(bad) = segments.iter().find(|s| {
        !s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    }) {
        return Err(StoreError::Invalid(format!(
            "parameter path \"{path}\": segment \"{bad}\" may only hold letters, digits, _, - and ."
        )));
    }
    Ok(segments.join("\\"))
}

/// `A\B\C` → `["A", "A\B", "A\B\C"]`.
fn ancestors_and_self(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for seg in path.split('\\') {
        if !current.is_empty() {
            current.push('\\');
        }
        current.push_str(seg);
        out.push(current.clone());
    }
    out
}

/// A parameter as `params list` and `params get` show it: what is stored, and what the host's
/// parameter table documents about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterView {
    pub path: String,
    /// The stored row, if there is one.
    pub stored: Option<Parameter>,
    /// The documentation, when the host reads this parameter. Its `default` is what applies
    /// when no value is stored (for a policy of a table or system: what it inherits from
    /// `PRP\PasswordPolicy\Default`).
    pub known: Option<KnownParameter>,
    /// Why the stored value is not used, when it isn't allowed (it names the allowed range).
    pub problem: Option<String>,
}

impl ParameterView {
    /// Whether the value shown is the default: no value is stored, and there is a default.
    pub fn is_default(&self) -> bool {
        self.stored
            .as_ref()
            .and_then(|p| p.value.as_ref())
            .is_none()
            && self
                .known
                .as_ref()
                .and_then(|k| k.default.as_ref())
                .is_some()
    }

    /// The stored value, else the default.
    pub fn value(&self) -> Option<&str> {
        self.stored
            .as_ref()
            .and_then(|p| p.value.as_deref())
            .or_else(|| self.known.as_ref().and_then(|k| k.default.as_deref()))
    }
}

/// The part of a problem message before its first `": "`: the path (or policy) it is about.
fn problem_key(problem: &str) -> String {
    problem
        .split_once(": ")
        .map_or(problem, |(k, _)| k)
        .to_ascii_lowercase()
}

/// Every stored parameter, read in one query, to answer many questions about them.
#[derive(Clone)]
pub struct ParameterSnapshot {
    /// By lower-case path: (path as written, value, enabled).
    rows: HashMap<String, (String, Option<String>, bool)>,
    /// The lockout policy these rows make, once asked for (a login asks up to three times:
    /// the gate, and the plugin's reservation and settlement).
    lockout: OnceLock<(LockoutPolicy, Vec<String>)>,
}

impl ParameterSnapshot {
    fn from_rows(rows: HashMap<String, (String, Option<String>, bool)>) -> Self {
        Self {
            rows,
            lockout: OnceLock::new(),
        }
    }

    /// The lockout policy and its problems, made by `resolve` the first time.
    pub(super) fn lockout_policy_with(
        &self,
        resolve: impl FnOnce() -> Result<(LockoutPolicy, Vec<String>), StoreError>,
    ) -> Result<(LockoutPolicy, Vec<String>), StoreError> {
        if let Some(made) = self.lockout.get() {
            return Ok(made.clone());
        }
        let made = resolve()?;
        Ok(self.lockout.get_or_init(|| made).clone())
    }

    /// A parameter with its in-force state, or `None` when it was never stored.
    pub fn get(&self, path: &str) -> Result<Option<Parameter>, StoreError> {
        let path = normalize_path(path)?;
        let Some((stored_path, value, enabled)) =
            self.rows.get(&path.to_ascii_lowercase()).cloned()
        else {
            return Ok(None);
        };
        // Ancestors first: the outermost disabled node is what an operator has to enable.
        let disabled_by = ancestors_and_self(&path).into_iter().find_map(|c| {
            self.rows
                .get(&c.to_ascii_lowercase())
                .filter(|(_, _, e)| !e)
                .map(|(p, _, _)| p.clone())
        });
        Ok(Some(Parameter {
            path: stored_path,
            value,
            enabled,
            disabled_by,
        }))
    }

    /// The value of a parameter in force, else `None`.
    pub fn value(&self, path: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(path)?
            .filter(Parameter::in_force)
            .and_then(|p| p.value))
    }

    /// The snapshot as it would be after storing `value` at `path` (normalised).
    fn with_value(&self, path: &str, value: Option<&str>) -> Self {
        let mut rows = self.rows.clone();
        rows.entry(path.to_ascii_lowercase())
            .and_modify(|row| row.1 = value.map(str::to_owned))
            .or_insert_with(|| (path.to_owned(), value.map(str::to_owned), true));
        Self::from_rows(rows)
    }

    /// The snapshot as it would be after enabling or disabling `path` (normalised).
    fn with_enabled(&self, path: &str, enabled: bool) -> Self {
        let mut rows = self.rows.clone();
        rows.entry(path.to_ascii_lowercase())
            .and_modify(|row| row.2 = enabled)
            .or_insert_with(|| (path.to_owned(), None, enabled));
        Self::from_rows(rows)
    }

    /// `Default` and every table or system with a setting under `PRP\PasswordPolicy`.
    fn policy_sources(&self) -> Vec<String> {
        let mut seen = HashSet::from(["default".to_owned()]);
        let mut out = vec!["Default".to_owned()];
        let mut paths: Vec<&String> = self.rows.values().map(|(p, _, _)| p).collect();
        paths.sort();
        for path in paths {
            let segments: Vec<&str> = path.split('\\').collect();
            if let [root, branch, source, _] = segments.as_slice() {
                if root.eq_ignore_ascii_case("PRP")
                    && branch.eq_ignore_ascii_case("PasswordPolicy")
                    && seen.insert(source.to_ascii_lowercase())
                {
                    out.push((*source).to_owned());
                }
            }
        }
        out
    }

    /// Every problem with the host's parameters in force, one message each naming the path
    /// and what is allowed: values outside the table's range (the default applies instead),
    /// policies whose MinLength is above their MaxLength, and names in a closed branch
    /// (`PRP\Lockout`, `PRP\PasswordPolicy`) that the portal doesn't read.
    pub fn problems(&self) -> Result<Vec<String>, StoreError> {
        let value = |path: &str| self.value(path);
        let mut out = LockoutPolicy::resolve(value)?.1;
        for source in self.policy_sources() {
            out.extend(PasswordPolicy::resolve(&source, value)?.1);
        }
        let mut paths: Vec<&(String, Option<String>, bool)> = self.rows.values().collect();
        paths.sort_by_key(|(p, _, _)| p.to_ascii_lowercase());
        for (path, stored, _) in paths {
            if stored.is_none()
                || self.value(path)?.is_none()
                || params_spec::spec_for(path).is_some()
            {
                continue;
            }
            if params_spec::CLOSED_BRANCHES
                .iter()
                .any(|b| params_spec::is_under(path, b))
            {
                out.push(format!(
                    "{path}: not a parameter the portal reads; it is ignored (see README or `prp-host params list`)"
                ));
            }
        }
        let mut seen = HashSet::new();
        out.retain(|p| seen.insert(p.clone()));
        Ok(out)
    }
}

/// Refuses a change of the host's parameters that would bring a problem not there before
/// (compared by the path each problem is about, so unrelated old problems don't block it).
fn refuse_new_problems(
    path: &str,
    before: &ParameterSnapshot,
    after: &ParameterSnapshot,
) -> Result<(), StoreError> {
    let old: HashSet<String> = before.problems()?.iter().map(|p| problem_key(p)).collect();
    match after
        .problems()?
        .into_iter()
        .find(|p| !old.contains(&problem_key(p)))
    {
        Some(p) => Err(StoreError::Invalid(format!(
            "{path}: not changed, because then {p}"
        ))),
        None => Ok(()),
    }
}

impl Store {
    /// All parameters as they are now (one query; the table holds dozens of rows).
    pub async fn parameters(&self) -> Result<ParameterSnapshot, StoreError> {
        let rows = sqlx::query("SELECT path_key, path, value, enabled FROM prp_parameter")
            .fetch_all(self.db())
            .await?;
        let mut map = HashMap::with_capacity(rows.len());
        for r in rows {
            map.insert(
                r.try_get::<String, _>("path_key")?,
                (
                    r.try_get("path")?,
                    r.try_get("value")?,
                    r.try_get::<i64, _>("enabled")? != 0,
                ),
            );
        }
        Ok(ParameterSnapshot::from_rows(map))
    }

    /// A parameter with its in-force state, or `None` when it was never set.
    pub async fn parameter(&self, path: &str) -> Result<Option<Parameter>, StoreError> {
        self.parameters().await?.get(path)
    }

    /// The value of a parameter in force, else `None`. What plugins see.
    pub async fn parameter_value(&self, path: &str) -> Result<Option<String>, StoreError> {
        self.parameters().await?.value(path)
    }

    /// Every problem with the host's parameters in force (see [`ParameterSnapshot::problems`]).
    pub async fn parameter_problems(&self) -> Result<Vec<String>, StoreError> {
        self.parameters().await?.problems()
    }

    /// Sets a value, keeping the enabled state (new parameters are enabled). A value for one of
    /// the host's parameters must be allowed by its table (the error names the range), a name
    /// in `PRP\Lockout` or `PRP\PasswordPolicy` must be one the portal reads, and the change
    /// must not make a policy's MinLength exceed its MaxLength.
    pub async fn set_parameter(&self, path: &str, value: Option<&str>) -> Result<(), StoreError> {
        let path = normalize_path(path)?;
        // Stored as it is read: spaces around a value (` 50`) are a typing accident.
        let value = value.map(str::trim);
        if let Some(v) = value {
            params_spec::check_value(&path, v).map_err(StoreError::Invalid)?;
        }
        if params_spec::is_under(&path, "PRP") {
            let before = self.parameters().await?;
            refuse_new_problems(&path, &before, &before.with_value(&path, value))?;
        }
        sqlx::query(
            "INSERT INTO prp_parameter (path_key, path, value, enabled, updated_at) VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (path_key) DO UPDATE SET value = $3, updated_at = $4",
        )
        .bind(path.to_ascii_lowercase())
        .bind(&path)
        .bind(value)
        .bind(self.now())
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Enables or disables a parameter or a whole branch (a parent node is created if needed).
    /// Refused when it would bring a problem with the host's parameters (a bad value or a
    /// MinLength above MaxLength coming into force).
    pub async fn set_parameter_enabled(&self, path: &str, enabled: bool) -> Result<(), StoreError> {
        let path = normalize_path(path)?;
        if params_spec::is_under(&path, "PRP") {
            let before = self.parameters().await?;
            refuse_new_problems(&path, &before, &before.with_enabled(&path, enabled))?;
        }
        sqlx::query(
            "INSERT INTO prp_parameter (path_key, path, value, enabled, updated_at) VALUES ($1, $2, NULL, $3, $4)
             ON CONFLICT (path_key) DO UPDATE SET enabled = $3, updated_at = $4",
        )
        .bind(path.to_ascii_lowercase())
        .bind(&path)
        .bind(flag(enabled))
        .bind(self.now())
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Every stored parameter under `prefix` (all when `None`), sorted by path.
    pub async fn list_parameters(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<Parameter>, StoreError> {
        let prefix = prefix
            .map(normalize_path)
            .transpose()?
            .map(|p| p.to_ascii_lowercase());
        let snapshot = self.parameters().await?;
        let mut keys: Vec<&String> = snapshot.rows.keys().collect();
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            if let Some(p) = &prefix {
                if key != p && !key.starts_with(&format!("{p}\\")) {
                    continue;
                }
            }
            let (path, _, _) = &snapshot.rows[key];
            if let Some(param) = snapshot.get(path)? {
                out.push(param);
            }
        }
        Ok(out)
    }
}

impl Store {
    /// One parameter as `params get` shows it: stored or not, with its documentation and
    /// default when the host reads it. `None` when it is neither stored nor documented.
    pub async fn parameter_view(&self, path: &str) -> Result<Option<ParameterView>, StoreError> {
        let path = normalize_path(path)?;
        let snapshot = self.parameters().await?;
        view(&snapshot, &path, snapshot.get(&path)?)
    }

    /// Every stored parameter under `prefix` (all when `None`), and every documented one
    /// (see [`params_spec::known_parameters`]) that isn't stored, with its default; sorted by
    /// path.
    pub async fn list_parameter_views(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<ParameterView>, StoreError> {
        let snapshot = self.parameters().await?;
        let prefix = prefix.map(normalize_path).transpose()?;
        let under = |p: &str| {
            prefix
                .as_deref()
                .is_none_or(|b| params_spec::is_under(p, b))
        };
        let mut out = Vec::new();
        for stored in self.list_parameters(prefix.as_deref()).await? {
            let path = stored.path.clone();
            out.extend(view(&snapshot, &path, Some(stored))?);
        }
        for known in params_spec::known_parameters() {
            if under(&known.path) && snapshot.get(&known.path)?.is_none() {
                out.extend(view(&snapshot, &known.path, None)?);
            }
        }
        out.sort_by_key(|v| v.path.to_ascii_lowercase());
        Ok(out)
    }
}

fn view(
    snapshot: &ParameterSnapshot,
    path: &str,
    stored: Option<Parameter>,
) -> Result<Option<ParameterView>, StoreError> {
    let mut known = params_spec::lookup(path);
    // A table's or system's policy setting inherits the Default policy's.
    if let (Some(k), [_, _, source, setting]) = (
        known.as_mut(),
        path.split('\\').collect::<Vec<_>>().as_slice(),
    ) {
        if params_spec::is_under(path, PasswordPolicy::ROOT)
            && !source.eq_ignore_ascii_case("Default")
        {
            let (policy, _) = PasswordPolicy::resolve("Default", |p| snapshot.value(p))?;
            let inherited = match setting.to_ascii_lowercase().as_str() {
                "minlength" => Some(policy.min_length),
                "maxlength" => Some(policy.max_length),
                "historycount" => Some(policy.history_count),
                "rejectnames" => Some(usize::from(policy.reject_names)),
                "rejectcommon" => Some(usize::from(policy.reject_common)),
                _ => None,
            };
            if let Some(n) = inherited {
                k.default = Some(n.to_string());
                k.description = format!(
                    "{}; unset, {}\\Default\\{setting} applies",
                    k.description,
                    PasswordPolicy::ROOT
                );
            }
        }
    }
    let problem = match (&stored, params_spec::spec_for(path)) {
        (Some(Parameter { value: Some(v), .. }), Some(spec)) => spec
            .check(v)
            .err()
            .map(|e| format!("{path}: {e}; the default applies")),
        _ => None,
    };
    if stored.is_none() && known.is_none() {
        return Ok(None);
    }
    Ok(Some(ParameterView {
        path: stored
            .as_ref()
            .map_or_else(|| path.to_owned(), |p| p.path.clone()),
        stored,
        known,
        problem,
    }))
}

/// Where an API configuration key value lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyScope {
    /// In the database, for every server.
    Global,
    /// In the database, for the named server only; overrides global.
    Local(String),
}

impl ApiKeyScope {
    fn column(&self) -> String {
        match self {
            Self::Global => "global".to_owned(),
            Self::Local(server) => format!("local:{}", server.to_ascii_lowercase()),
        }
    }
}

/// The effective value of a key and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyValue {
    pub name: &'static str,
    pub value: String,
    /// `local`, `global` or `default`.
    pub source: &'static str,
    pub description: &'static str,
}

struct KeySpec {
    name: &'static str,
    default: &'static str,
    description: &'static str,
    check: fn(&str) -> Result<String, String>,
}

/// A boolean key, stored as `true` or `false` whichever way it was written.
fn check_bool(v: &str) -> Result<String, String> {
    match prp_plugin_api::rules::parse_flag(v) {
        Some(on) => Ok(on.to_string()),
        None => Err(format!("\"{v}\" is not a boolean (true or false)")),
    }
}

fn check_hours(v: &str) -> Result<String, String> {
    match v.trim().parse::<u32>() {
        Ok(h) if (1..=720).contains(&h) => Ok(h.to_string()),
        _ => Err(format!("\"{v}\" is not a number of hours from 1 to 720")),
    }
}

const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "EnablePasscodeLogin",
        default: "false",
        description: "people may log in with a passcode from their manager or the help desk",
        check: check_bool,
    },
    KeySpec {
        name: "EnablePasswordProfileLogin",
        default: "false",
        description: "people may log in by answering their password questions",
        check: check_bool,
    },
    KeySpec {
        name: "VI_Employee_MasterData_PassCode_HoursValid",
        default: "8",
        description: "how many hours a passcode stays valid",
        check: check_hours,
    },
];

fn spec(name: &str) -> Result<&'static KeySpec, StoreError> {
    KEYS.iter()
        .find(|k| k.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "unknown API configuration key \"{name}\" (known: {})",
                KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            ))
        })
}

impl Store {
    /// Sets a key in a scope, after checking the value.
    pub async fn set_api_key(
        &self,
        scope: &ApiKeyScope,
        name: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let spec = spec(name)?;
        let value =
            (spec.check)(value).map_err(|e| StoreError::Invalid(format!("{}: {e}", spec.name)))?;
        sqlx::query(
            "INSERT INTO prp_api_key (scope, name_key, name, value, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (scope, name_key) DO UPDATE SET value = $4, updated_at = $5",
        )
        .bind(scope.column())
        .bind(spec.name.to_ascii_lowercase())
        .bind(spec.name)
        .bind(&value)
        .bind(self.now())
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Removes a key from a scope, so the next scope (or the default) applies.
    pub async fn unset_api_key(&self, scope: &ApiKeyScope, name: &str) -> Result<bool, StoreError> {
        let spec = spec(name)?;
        let done = sqlx::query("DELETE FROM prp_api_key WHERE scope = $1 AND name_key = $2")
            .bind(scope.column())
            .bind(spec.name.to_ascii_lowercase())
            .execute(self.db())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The effective value for `server`: local, else global, else the default.
    pub async fn api_key(&self, server: &str, name: &str) -> Result<ApiKeyValue, StoreError> {
        let spec = spec(name)?;
        for (scope, source) in [
            (ApiKeyScope::Local(server.to_owned()), "local"),
            (ApiKeyScope::Global, "global"),
        ] {
            let v: Option<String> = sqlx::query_scalar(
                "SELECT value FROM prp_api_key WHERE scope = $1 AND name_key = $2",
            )
            .bind(scope.column())
            .bind(spec.name.to_ascii_lowercase())
            .fetch_optional(self.db())
            .await?;
            if let Some(value) = v {
                return Ok(ApiKeyValue {
                    name: spec.name,
                    value,
                    source,
                    description: spec.description,
                });
            }
        }
        Ok(ApiKeyValue {
            name: spec.name,
            value: spec.default.to_owned(),
            source: "default",
            description: spec.description,
        })
    }

    /// Every known key's effective value for `server`.
    pub async fn api_keys(&self, server: &str) -> Result<Vec<ApiKeyValue>, StoreError> {
        let mut out = Vec::new();
        for k in KEYS {
            out.push(self.api_key(server, k.name).await?);
        }
        Ok(out)
    }

    /// A boolean key's effective value.
    pub async fn api_flag(&self, server: &str, name: &str) -> Result<bool, StoreError> {
        Ok(
            prp_plugin_api::rules::parse_flag(&self.api_key(server, name).await?.value)
                == Some(true),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise() {
        assert_eq!(
            normalize_path("QER | Person | PasswordResetAuthenticator | SearchTable")
                .ok()
                .as_deref(),
            Some(r"QER\Person\PasswordResetAuthenticator\SearchTable")
        );
        assert!(normalize_path(r"QER\\X").is_err());
        assert!(normalize_path(r"QER\X Y").is_err());
        assert_eq!(ancestors_and_self(r"A\B\C"), vec!["A", r"A\B", r"A\B\C"]);
    }

    #[test]
    fn key_values_are_checked() {
        assert_eq!(check_bool("1").ok().as_deref(), Some("true"));
        assert!(check_bool("maybe").is_err());
        assert!(check_hours("0").is_err());
        assert!(spec("enablepasscodelogin").is_ok());
        assert!(spec("EnablePascodeLogin").is_err());
    }

    #[test]
    fn a_snapshot_keeps_its_lockout_policy_and_a_changed_one_makes_its_own() {
        let path = r"PRP\Lockout\Password\MaxFailures";
        let before = ParameterSnapshot::from_rows(HashMap::new());
        let default = LockoutPolicy::from_parameters(&before).expect("policy").0;
        assert_eq!(default, LockoutPolicy::default());
        let after = before.with_value(path, Some("3"));
        let changed = LockoutPolicy::from_parameters(&after).expect("policy").0;
        assert_eq!(changed.password.max_failures, 3);
        assert_ne!(default.password.max_failures, 3);
        // Each keeps its own, however often asked.
        assert_eq!(
            LockoutPolicy::from_parameters(&before).expect("again").0,
            default
        );
        assert_eq!(
            LockoutPolicy::from_parameters(&after).expect("again").0,
            changed
        );
        let off = after.with_enabled(path, false);
        assert_eq!(
            LockoutPolicy::from_parameters(&off).expect("off").0,
            default
        );
        let bad = before.with_value(path, Some("0"));
        let (policy, problems) = LockoutPolicy::from_parameters(&bad).expect("bad");
        assert_eq!(policy, default, "a value out of range leaves the default");
        assert!(
            problems.iter().any(|p| p.contains("MaxFailures")),
            "{problems:?}"
        );
    }
}
