//! Read-only access to the operator's identity tables: `Person`, and the target-system table
//! named by `SearchTable`. Table and column names come from configuration, so they are checked
//! against the live schema first and only the names the schema reports, which are also valid
//! identifiers, are ever quoted into SQL.
//!
//! Case rule: login names match case-insensitively for the ASCII letters A–Z; every other
//! character must match exactly. Both dialects apply the same rule ([`Dialect::ascii_lower`]).

use super::{Dialect, Store, StoreError};
use prp_plugin_api::rules::fold_login_name;
use sqlx::Row;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A person, as the portal needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub uid: String,
    pub central_account: String,
    pub first_name: String,
    pub last_name: String,
    pub manager_uid: Option<String>,
    pub inactive: bool,
}

/// The target-system search the `SearchTable`, `SearchColumn`, `DisabledBy` and `EnabledBy`
/// parameters describe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchTableConfig {
    pub table: String,
    pub columns: Vec<String>,
    pub disabled_by: Vec<String>,
    pub enabled_by: Vec<String>,
}

/// A login-name search in a target-system table.
#[derive(Debug, Clone)]
pub struct AccountSearch {
    pub config: SearchTableConfig,
    pub login_name: String,
}

/// An account whose login name matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub table: String,
    pub account_uid: String,
    /// `None` when the account is assigned to nobody.
    pub person_uid: Option<String>,
    pub matched_column: String,
    /// `DisabledBy: Locked` or `EnabledBy: Active` when a flag refuses the account.
    pub refused_by: Option<String>,
}

/// What is wrong with the configured search table, naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    pub parameter: &'static str,
    pub message: String,
}

impl std::fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.parameter, self.message)
    }
}

/// A login-name column without an index the case-folded lookup can use: each lookup on it
/// reads the whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingIndex {
    /// `Table.Column`, as the live schema spells them.
    pub column: String,
    /// The statement that adds an index the lookup can use, in the database's dialect.
    pub create_index: String,
}

/// The search table as the live schema spells it.
#[derive(Debug, Clone)]
struct ResolvedTable {
    table: String,
    /// The column that holds the account's person.
    uid_person: String,
    columns: Vec<String>,
    disabled_by: Vec<String>,
    enabled_by: Vec<String>,
    /// One statement for all search columns (a `UNION ALL`, one index lookup each), built once.
    lookup_sql: String,
}

/// The lookup statement of a validated search table: every name in it came from the live
/// schema and passed `is_identifier`.
fn lookup_sql(
    d: Dialect,
    table: &str,
    key: &str,
    uid_person: &str,
    columns: &[String],
    disabled_by: &[String],
    enabled_by: &[String],
) -> String {
    let flags: String = disabled_by
        .iter()
        .chain(enabled_by)
        .map(|c| format!(", CAST(CASE WHEN {} THEN 1 ELSE 0 END AS BIGINT)", quote(c)))
        .collect();
    let parts: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(k, col)| {
            format!(
                "SELECT CAST({k} AS BIGINT) AS k, CAST({key} AS TEXT) AS account_uid, CAST({uid} AS TEXT) AS person_uid{flags} FROM {table} WHERE {col} = $1",
                key = quote(key),
                uid = quote(uid_person),
                table = quote(table),
                col = d.ascii_lower(&quote(col)),
            )
        })
        .collect();
    format!("{} ORDER BY 1", parts.join(" UNION ALL "))
}

type Validation = Result<ResolvedTable, Vec<SchemaProblem>>;

/// Schema validations, remembered for a minute so a login doesn't introspect the schema.
#[derive(Default)]
pub struct IdentitySchema {
    cache: Mutex<HashMap<SearchTableConfig, (Instant, Validation)>>,
    /// The columns of `Person` as the live schema spells them, for the columns plugins name
    /// (`persons_by_column`, `person_column`); `None` inside when there is no `Person` table.
    person: Mutex<Option<(Instant, Option<Vec<PersonColumn>>)>>,
    /// How often the schema was read for `Person`'s columns (what the cache saves).
    #[cfg(test)]
    person_reads: std::sync::atomic::AtomicU64,
}

/// A `Person` column as the live schema spells it, and whether it holds text.
#[derive(Debug, Clone)]
struct PersonColumn {
    name: String,
    text: bool,
}

const CACHE_FOR: Duration = Duration::from_secs(60);
/// The `Person` columns the portal reads, each with the definition `prp-host check` proposes
/// when it is missing (README, "The identity schema").
const PERSON_COLUMNS: &[(&str, &str)] = &[
    ("UID_Person", "VARCHAR(38)"),
    ("CentralAccount", "VARCHAR(256)"),
    ("FirstName", "VARCHAR(256)"),
    ("LastName", "VARCHAR(256)"),
    (
        "UID_PersonHead",
        "VARCHAR(38) REFERENCES \"Person\" (\"UID_Person\")",
    ),
    ("IsInActive", "BOOLEAN NOT NULL DEFAULT FALSE"),
];

/// The statements that add the missing `Person` columns (`columns` from [`PERSON_COLUMNS`]) to
/// `table`, in the dialect's words: SQLite can't add a UNIQUE column, so the key gets an index.
fn person_columns_ddl(d: Dialect, table: &str, columns: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, definition) in columns {
        let add = format!("ALTER TABLE {} ADD COLUMN {}", quote(table), quote(name));
        match (*name, d) {
            ("UID_Person", Dialect::Postgres) => out.push(format!("{add} {definition} UNIQUE;")),
            ("UID_Person", Dialect::Sqlite) => {
                out.push(format!("{add} {definition};"));
                out.push(format!(
                    "CREATE UNIQUE INDEX {} ON {} ({});",
                    quote(&format!("{table}_UID_Person")),
                    quote(table),
                    quote(name)
                ));
            }
            _ => out.push(format!("{add} {definition};")),
        }
    }
    out
}

/// The statement that creates a `Person` table with the columns the portal reads.
fn person_table_ddl() -> String {
    let columns: Vec<String> = PERSON_COLUMNS
        .iter()
        .map(|(name, definition)| match *name {
            "UID_Person" => format!("{} {definition} PRIMARY KEY NOT NULL", quote(name)),
            _ => format!("{} {definition}", quote(name)),
        })
        .collect();
    format!("CREATE TABLE \"Person\" ({});", columns.join(", "))
}

/// A column as the live schema describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ColumnInfo {
    pub name: String,
    pub declared_type: String,
    pub primary_key: bool,
    pub not_null: bool,
}

/// A table or column name that may be quoted into SQL: the rule plugins apply too.
pub use prp_plugin_api::rules::is_identifier;

pub(super) fn quote(ident: &str) -> String {
    // Only ever called with names that passed `is_identifier`, which excludes `"`.
    format!("\"{ident}\"")
}

impl Dialect {
    /// Lower-cases A–Z only, identically in both dialects (SQLite's `lower` already does just
    /// that; PostgreSQL's would fold other letters too): the SQL side of
    /// [`prp_plugin_api::rules::fold_login_name`], which folds the value it is compared with.
    pub fn ascii_lower(self, expr: &str) -> String {
        match self {
            Self::Sqlite => format!("lower({expr})"),
            Self::Postgres => format!(
                "translate({expr}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
            ),
        }
    }

    /// The actual name of a table, matched case-insensitively.
    pub(super) async fn table_name(
        self,
        store: &Store,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        let sql = match self {
            Self::Sqlite => "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND lower(name) = lower($1)",
            Self::Postgres => "SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = current_schema() AND lower(table_name::text) = lower($1)",
        };
        Ok(sqlx::query_scalar(sql)
            .bind(name)
            .fetch_optional(store.db())
            .await?)
    }

    /// `(column, declared type, is primary key)` of a table.
    pub(super) async fn columns(
        self,
        store: &Store,
        table: &str,
    ) -> Result<Vec<(String, String, bool)>, StoreError> {
        Ok(self
            .column_details(store, table)
            .await?
            .into_iter()
            .map(|c| (c.name, c.declared_type, c.primary_key))
            .collect())
    }

    /// The columns of a table as the live schema describes them, in table order.
    pub(super) async fn column_details(
        self,
        store: &Store,
        table: &str,
    ) -> Result<Vec<ColumnInfo>, StoreError> {
        let sql = match self {
            Self::Sqlite => "SELECT name, type, CAST(pk AS BIGINT) AS pk, CAST(\"notnull\" AS BIGINT) AS not_null FROM pragma_table_info($1)",
            Self::Postgres => {
                "SELECT c.column_name::text AS name, c.data_type::text AS type,
                        CAST(CASE WHEN c.is_nullable = 'NO' THEN 1 ELSE 0 END AS BIGINT) AS not_null,
                        CAST(CASE WHEN EXISTS (
                            SELECT 1 FROM information_schema.table_constraints tc
                            JOIN information_schema.key_column_usage k
                              ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema
                            WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = c.table_schema
                              AND tc.table_name = c.table_name AND k.column_name = c.column_name
                        ) THEN 1 ELSE 0 END AS BIGINT) AS pk
                 FROM information_schema.columns c
                 WHERE c.table_schema = current_schema() AND c.table_name = $1
                 ORDER BY c.ordinal_position"
            }
        };
        let rows = sqlx::query(sql).bind(table).fetch_all(store.db()).await?;
        rows.iter()
            .map(|r| {
                Ok(ColumnInfo {
                    name: r.try_get("name")?,
                    declared_type: r.try_get("type")?,
                    primary_key: r.try_get::<i64, _>("pk")? > 0,
                    not_null: r.try_get::<i64, _>("not_null")? > 0,
                })
            })
            .collect()
    }

    /// `(column, referenced table, referenced column)` of a table's foreign keys.
    pub(super) async fn foreign_keys(
        self,
        store: &Store,
        table: &str,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let sql = match self {
            Self::Sqlite => "SELECT \"from\" AS col, \"table\" AS ref_table, \"to\" AS ref_col FROM pragma_foreign_key_list($1)",
            Self::Postgres => {
                "SELECT k.column_name::text AS col, u.table_name::text AS ref_table, u.column_name::text AS ref_col
                 FROM information_schema.table_constraints tc
                 JOIN information_schema.key_column_usage k
                   ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema
                 JOIN information_schema.constraint_column_usage u
                   ON u.constraint_name = tc.constraint_name AND u.table_schema = tc.table_schema
                 WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema() AND tc.table_name = $1"
            }
        };
        let rows = sqlx::query(sql).bind(table).fetch_all(store.db()).await?;
        rows.iter()
            .map(|r| {
                let ref_col: Option<String> = r.try_get("ref_col")?;
                Ok((
                    r.try_get("col")?,
                    r.try_get("ref_table")?,
                    ref_col.unwrap_or_default(),
                ))
            })
            .collect()
    }

    pub(super) fn is_boolean_type(self, declared: &str) -> bool {
        let t = declared.to_ascii_lowercase();
        match self {
            Self::Sqlite => t.contains("bool") || t == "bit",
            Self::Postgres => t == "boolean",
        }
    }
}

/// The schema's spelling of each configured column, checking that it exists (and is boolean
/// when `boolean`).
fn resolve_columns(
    d: Dialect,
    table: &str,
    cols: &[(String, String, bool)],
    parameter: &'static str,
    names: &[String],
    boolean: bool,
    problems: &mut Vec<SchemaProblem>,
) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        let problem = |message: String| SchemaProblem { parameter, message };
        match cols.iter().find(|(c, _, _)| c.eq_ignore_ascii_case(n)) {
            None => problems.push(problem(format!("table \"{table}\" has no column \"{n}\""))),
            Some((actual, ty, _)) if boolean && !d.is_boolean_type(ty) => problems.push(problem(
                format!("column \"{table}.{actual}\" is {ty}, not boolean"),
            )),
            Some((actual, _, _)) if !is_identifier(actual) => problems.push(problem(format!(
                "column \"{actual}\" has a name the portal won't quote into SQL"
            ))),
            Some((actual, _, _)) => out.push(actual.clone()),
        }
    }
    out
}

impl Store {
    /// Checks that `Person` has the columns the portal reads. Every missing column is named in
    /// one problem, with the statements that would add them (or create the table).
    pub async fn check_person_table(&self) -> Result<Vec<SchemaProblem>, StoreError> {
        let d = self.dialect();
        let Some(table) = d.table_name(self, "Person").await? else {
            return Ok(vec![SchemaProblem {
                parameter: "Person",
                message: format!(
                    "the identity table \"Person\" does not exist in this database; create it with: {}",
                    person_table_ddl()
                ),
            }]);
        };
        if !is_identifier(&table) {
            return Ok(vec![SchemaProblem {
                parameter: "Person",
                message: format!("table \"{table}\" has a name the portal won't quote into SQL"),
            }]);
        }
        let cols = d.columns(self, &table).await?;
        // Quoted names are exact in PostgreSQL; SQLite matches them regardless of case.
        let has = |c: &str| {
            cols.iter().any(|(n, _, _)| match d {
                Dialect::Postgres => n == c,
                Dialect::Sqlite => n.eq_ignore_ascii_case(c),
            })
        };
        let missing: Vec<(&str, &str)> = PERSON_COLUMNS
            .iter()
            .filter(|(c, _)| !has(c))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = missing.iter().map(|(c, _)| format!("\"{c}\"")).collect();
        Ok(vec![SchemaProblem {
            parameter: "Person",
            message: format!(
                "table \"{table}\" lacks {} of the columns the portal reads: {}; add them with: {}",
                missing.len(),
                names.join(", "),
                person_columns_ddl(d, &table, &missing).join(" ")
            ),
        }])
    }

    async fn resolve_search_table(
        &self,
        config: &SearchTableConfig,
    ) -> Result<Result<ResolvedTable, Vec<SchemaProblem>>, StoreError> {
        if let Ok(cache) = self.identity.cache.lock() {
            if let Some((at, result)) = cache.get(config) {
                if at.elapsed() < CACHE_FOR {
                    return Ok(result.clone());
                }
            }
        }
        let result = self.introspect_search_table(config).await?;
        if let Ok(mut cache) = self.identity.cache.lock() {
            cache.insert(config.clone(), (Instant::now(), result.clone()));
        }
        Ok(result)
    }

    async fn introspect_search_table(
        &self,
        config: &SearchTableConfig,
    ) -> Result<Result<ResolvedTable, Vec<SchemaProblem>>, StoreError> {
        let d = self.dialect();
        let problem =
            |parameter: &'static str, message: String| SchemaProblem { parameter, message };
        if !is_identifier(&config.table) {
            return Ok(Err(vec![problem(
                "SearchTable",
                format!("\"{}\" is not a valid table name", config.table),
            )]));
        }
        let Some(table) = d.table_name(self, &config.table).await? else {
            return Ok(Err(vec![problem(
                "SearchTable",
                format!("table \"{}\" does not exist", config.table),
            )]));
        };
        if !is_identifier(&table) {
            return Ok(Err(vec![problem(
                "SearchTable",
                format!("table \"{table}\" has a name the portal won't quote into SQL"),
            )]));
        }
        let cols = d.columns(self, &table).await?;
        let mut problems = Vec::new();
        let find = |name: &str| {
            cols.iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
                .cloned()
        };

        let fks = d.foreign_keys(self, &table).await?;
        let uid_person = ["UID_Person", "CCC_UID_Person"]
            .iter()
            .find_map(|c| find(c));
        let uid_person = match uid_person {
            None => {
                problems.push(problem(
                    "SearchTable",
                    format!("table \"{table}\" has no UID_Person column"),
                ));
                None
            }
            Some((name, _, _)) => {
                let references_person = fks.iter().any(|(col, ref_table, ref_col)| {
                    col.eq_ignore_ascii_case(&name)
                        && ref_table.eq_ignore_ascii_case("Person")
                        && (ref_col.is_empty() || ref_col.eq_ignore_ascii_case("UID_Person"))
                });
                if !references_person {
                    problems.push(problem(
                        "SearchTable",
                        format!("table \"{table}\": column \"{name}\" is not a foreign key to Person(UID_Person)"),
                    ));
                }
                Some(name)
            }
        };
        let pk: Vec<&(String, String, bool)> = cols.iter().filter(|(_, _, pk)| *pk).collect();
        let key = match pk.as_slice() {
            [one] if is_identifier(&one.0) => Some(one.0.clone()),
            [one] => {
                problems.push(problem(
                    "SearchTable",
                    format!("the primary key \"{}\" of table \"{table}\" has a name the portal won't quote into SQL", one.0),
                ));
                None
            }
            _ => {
                problems.push(problem(
                    "SearchTable",
                    format!("table \"{table}\" needs a one-column primary key to tell its accounts apart"),
                ));
                None
            }
        };
        if config.columns.is_empty() {
            problems.push(problem(
                "SearchColumn",
                "is not set: name the column(s) that hold login names".into(),
            ));
        }
        let columns = resolve_columns(
            d,
            &table,
            &cols,
            "SearchColumn",
            &config.columns,
            false,
            &mut problems,
        );
        let disabled_by = resolve_columns(
            d,
            &table,
            &cols,
            "DisabledBy",
            &config.disabled_by,
            true,
            &mut problems,
        );
        let enabled_by = resolve_columns(
            d,
            &table,
            &cols,
            "EnabledBy",
            &config.enabled_by,
            true,
            &mut problems,
        );
        match (problems.is_empty(), key, uid_person) {
            (true, Some(key), Some(uid_person)) => Ok(Ok(ResolvedTable {
                lookup_sql: lookup_sql(
                    d,
                    &table,
                    &key,
                    &uid_person,
                    &columns,
                    &disabled_by,
                    &enabled_by,
                ),
                table,
                uid_person,
                columns,
                disabled_by,
                enabled_by,
            })),
            _ => Ok(Err(problems)),
        }
    }

    /// The search table of `config` as the live schema spells it; an error naming every problem
    /// when the configuration doesn't match the schema.
    async fn validated_search_table(
        &self,
        config: &SearchTableConfig,
    ) -> Result<ResolvedTable, StoreError> {
        self.resolve_search_table(config)
            .await?
            .map_err(|problems| {
                let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
                StoreError::Invalid(format!("search table misconfigured: {}", text.join("; ")))
            })
    }

    /// Accounts in the search table whose configured columns match the login name. Fails
    /// (closed) when the configuration doesn't match the live schema.
    pub async fn search_accounts(
        &self,
        search: &AccountSearch,
    ) -> Result<Vec<AccountRow>, StoreError> {
        let t = self.validated_search_table(&search.config).await?;
        let name = fold_login_name(&search.login_name);
        let rows = sqlx::query(&t.lookup_sql)
            .bind(&name)
            .fetch_all(self.db())
            .await?;
        let mut out: Vec<AccountRow> = Vec::with_capacity(rows.len());
        // Columns: k, account_uid, person_uid, then DisabledBy flags, then EnabledBy flags.
        for r in &rows {
            let account_uid: String = r.try_get(1)?;
            if out.iter().any(|a| a.account_uid == account_uid) {
                continue;
            }
            let k: i64 = r.try_get(0)?;
            let mut refused_by = None;
            for (i, c) in t.disabled_by.iter().enumerate() {
                if refused_by.is_none() && r.try_get::<i64, _>(3 + i)? != 0 {
                    refused_by = Some(format!("DisabledBy: {c}"));
                }
            }
            for (i, c) in t.enabled_by.iter().enumerate() {
                if refused_by.is_none() && r.try_get::<i64, _>(3 + t.disabled_by.len() + i)? == 0 {
                    refused_by = Some(format!("EnabledBy: {c}"));
                }
            }
            out.push(AccountRow {
                table: t.table.clone(),
                account_uid,
                person_uid: r.try_get(2)?,
                matched_column: t.columns.get(k as usize).cloned().unwrap_or_default(),
                refused_by,
            });
        }
        Ok(out)
    }

    /// The login names of the person's accounts in the search table: the values of its search
    /// columns in the rows that belong to `person_uid`, without NULLs and repeats. Fails, as
    /// [`Store::search_accounts`] does, when the configuration doesn't match the live schema.
    pub async fn account_login_names(
        &self,
        config: &SearchTableConfig,
        person_uid: &str,
    ) -> Result<Vec<String>, StoreError> {
        let t = self.validated_search_table(config).await?;
        // Every name here came from the live schema and passed `is_identifier`.
        let columns: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("CAST({} AS TEXT)", quote(c)))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = $1",
            columns.join(", "),
            quote(&t.table),
            quote(&t.uid_person)
        );
        let rows = sqlx::query(&sql)
            .bind(person_uid)
            .fetch_all(self.db())
            .await?;
        let mut out: Vec<String> = Vec::new();
        for r in &rows {
            for i in 0..t.columns.len() {
                if let Some(name) = r.try_get::<Option<String>, _>(i)? {
                    if !out.contains(&name) {
                        out.push(name);
                    }
                }
            }
        }
        Ok(out)
    }

    fn person_select(&self) -> String {
        "SELECT CAST(\"UID_Person\" AS TEXT) AS uid, \"CentralAccount\" AS central_account, \"FirstName\" AS first_name,
                \"LastName\" AS last_name, CAST(\"UID_PersonHead\" AS TEXT) AS manager_uid,
                CAST(CASE WHEN \"IsInActive\" THEN 1 ELSE 0 END AS BIGINT) AS inactive
         FROM \"Person\""
            .to_owned()
    }

    fn person_from(r: &sqlx::any::AnyRow) -> Result<Person, StoreError> {
        Ok(Person {
            uid: r.try_get("uid")?,
            central_account: r
                .try_get::<Option<String>, _>("central_account")?
                .unwrap_or_default(),
            first_name: r
                .try_get::<Option<String>, _>("first_name")?
                .unwrap_or_default(),
            last_name: r
                .try_get::<Option<String>, _>("last_name")?
                .unwrap_or_default(),
            manager_uid: r
                .try_get::<Option<String>, _>("manager_uid")?
                .filter(|m| !m.is_empty()),
            inactive: r.try_get::<i64, _>("inactive")? != 0,
        })
    }

    /// Persons whose central account matches the login name (by the case rule).
    pub async fn persons_by_central_account(
        &self,
        login_name: &str,
    ) -> Result<Vec<Person>, StoreError> {
        let sql = format!(
            "{} WHERE {} = $1",
            self.person_select(),
            self.dialect().ascii_lower("\"CentralAccount\"")
        );
        let rows = sqlx::query(&sql)
            .bind(fold_login_name(login_name))
            .fetch_all(self.db())
            .await?;
        rows.iter().map(Self::person_from).collect()
    }

    /// The columns of `Person` (`None`: no such table), remembered for a minute as search-table
    /// validations are ([`CACHE_FOR`]), so a plugin's every lookup doesn't introspect the schema.
    async fn person_columns(&self) -> Result<Option<Vec<PersonColumn>>, StoreError> {
        if let Ok(cache) = self.identity.person.lock() {
            if let Some((at, columns)) = cache.as_ref() {
                if at.elapsed() < CACHE_FOR {
                    return Ok(columns.clone());
                }
            }
        }
        #[cfg(test)]
        self.identity
            .person_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = self.dialect();
        let columns = match d.table_name(self, "Person").await? {
            None => None,
            Some(table) => Some(
                d.columns(self, &table)
                    .await?
                    .into_iter()
                    .map(|(name, ty, _)| {
                        let ty = ty.to_ascii_lowercase();
                        let text = ty.is_empty() || ty.contains("char") || ty.contains("text");
                        PersonColumn { name, text }
                    })
                    .collect(),
            ),
        };
        if let Ok(mut cache) = self.identity.person.lock() {
            *cache = Some((Instant::now(), columns.clone()));
        }
        Ok(columns)
    }

    /// The live schema's spelling of a `Person` column a plugin names, and whether it holds
    /// text; an error naming the column when it doesn't exist or can't be quoted.
    async fn person_column_name(&self, column: &str) -> Result<(String, bool), StoreError> {
        if !is_identifier(column) {
            return Err(StoreError::Invalid(format!(
                "\"{column}\" is not a column name the portal accepts (ASCII letters, digits and _, at most 63)"
            )));
        }
        let cols = self.person_columns().await?.ok_or_else(|| {
            StoreError::Invalid("the identity database has no table \"Person\"".into())
        })?;
        match cols.iter().find(|c| c.name.eq_ignore_ascii_case(column)) {
            None => Err(StoreError::Invalid(format!(
                "table \"Person\" has no column \"{column}\""
            ))),
            Some(c) if !is_identifier(&c.name) => Err(StoreError::Invalid(format!(
                "column \"Person.{}\" has a name the portal won't quote into SQL",
                c.name
            ))),
            Some(c) => Ok((c.name.clone(), c.text)),
        }
    }

    /// Persons whose `Person.<column>` equals `value` exactly; the column is checked against
    /// the live schema first.
    pub async fn persons_by_column(
        &self,
        column: &str,
        value: &str,
    ) -> Result<Vec<Person>, StoreError> {
        let (column, text) = self.person_column_name(column).await?;
        let lhs = if text {
            quote(&column)
        } else {
            format!("CAST({} AS TEXT)", quote(&column))
        };
        let sql = format!("{} WHERE {lhs} = $1", self.person_select());
        let rows = sqlx::query(&sql).bind(value).fetch_all(self.db()).await?;
        rows.iter().map(Self::person_from).collect()
    }

    /// `Person.<column>` of one person as text, `None` when the person doesn't exist or the
    /// value is NULL; the column is checked against the live schema first.
    pub async fn person_column_value(
        &self,
        uid: &str,
        column: &str,
    ) -> Result<Option<String>, StoreError> {
        let (column, _) = self.person_column_name(column).await?;
        let sql = format!(
            "SELECT CAST({} AS TEXT) AS v FROM \"Person\" WHERE \"UID_Person\" = $1",
            quote(&column)
        );
        let row: Option<Option<String>> = sqlx::query_scalar(&sql)
            .bind(uid)
            .fetch_optional(self.db())
            .await?;
        Ok(row.flatten())
    }

    pub async fn person(&self, uid: &str) -> Result<Option<Person>, StoreError> {
        let sql = format!("{} WHERE \"UID_Person\" = $1", self.person_select());
        let row = sqlx::query(&sql)
            .bind(uid)
            .fetch_optional(self.db())
            .await?;
        row.as_ref().map(Self::person_from).transpose()
    }
}

impl Store {
    /// The host's own login-name column, `Person.CentralAccount`, when it has no index the
    /// lookup can use, with the statement that would add one. (The search table's columns are
    /// the plugin's to check, through [`Store::unindexed_search_columns`].)
    pub async fn missing_login_indexes(&self) -> Result<Vec<MissingIndex>, StoreError> {
        let Some(person) = self.dialect().table_name(self, "Person").await? else {
            return Ok(Vec::new());
        };
        self.missing_indexes(&person, &["CentralAccount"]).await
    }

    /// The search columns of `config` that have no index the lookup can use, each with the
    /// statement that would add one. Fails, as [`Store::search_accounts`] does, when the
    /// configuration doesn't match the live schema.
    pub async fn unindexed_search_columns(
        &self,
        config: &SearchTableConfig,
    ) -> Result<Vec<MissingIndex>, StoreError> {
        let t = self.validated_search_table(config).await?;
        let columns: Vec<&str> = t.columns.iter().map(String::as_str).collect();
        self.missing_indexes(&t.table, &columns).await
    }

    /// Each `table.column` (as the live schema spells them) that none of the table's indexes
    /// (read once) has on the column's case-folded value ([`Dialect::ascii_lower`]), the
    /// expression login lookups compare. A plain index on the column doesn't serve them.
    async fn missing_indexes(
        &self,
        table: &str,
        columns: &[&str],
    ) -> Result<Vec<MissingIndex>, StoreError> {
        let columns: Vec<&str> = columns
            .iter()
            .copied()
            .filter(|c| is_identifier(c))
            .collect();
        if !is_identifier(table) || columns.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.dialect();
        let defs: Vec<String> = match d {
            Dialect::Sqlite => sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL",
            ),
            Dialect::Postgres => sqlx::query_scalar(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
            ),
        }
        .bind(table)
        .fetch_all(self.db())
        .await?;
        let normalized: Vec<String> = defs
            .iter()
            .map(|s| {
                s.to_ascii_lowercase()
                    .replace("::text", "")
                    .chars()
                    .filter(|c| !matches!(c, '"' | ' ' | '(' | ')' | '\n' | '\t'))
                    .collect()
            })
            .collect();
        Ok(columns
            .into_iter()
            .filter(|column| {
                let col = column.to_ascii_lowercase();
                let needle = match d {
                    Dialect::Sqlite => format!("lower{col}"),
                    Dialect::Postgres => format!("translate{col},"),
                };
                !normalized.iter().any(|def| def.contains(&needle))
            })
            .map(|column| MissingIndex {
                column: format!("{table}.{column}"),
                create_index: format!(
                    "CREATE INDEX {} ON {} ({});",
                    quote(&format!("{table}_{column}_login")),
                    quote(table),
                    d.ascii_lower(&quote(column))
                ),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    /// A plugin's `Person` lookups read the schema once, then take the validated columns from
    /// the cache; an unknown column is still an error naming it.
    #[tokio::test(flavor = "multi_thread")]
    async fn person_columns_are_read_from_the_schema_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&url, Arc::new(SystemClock)).await.unwrap();
        sqlx::query(
            "CREATE TABLE \"Person\" (\"UID_Person\" VARCHAR(38) PRIMARY KEY, \"CentralAccount\" VARCHAR(256),
             \"FirstName\" VARCHAR(256), \"LastName\" VARCHAR(256), \"UID_PersonHead\" VARCHAR(38),
             \"IsInActive\" BOOLEAN NOT NULL DEFAULT FALSE, \"PersonnelNumber\" INTEGER)",
        )
        .execute(store.db())
        .await
        .unwrap();
        sqlx::query("INSERT INTO \"Person\" (\"UID_Person\", \"CentralAccount\", \"PersonnelNumber\") VALUES ('P-1', 'one', 42)")
            .execute(store.db())
            .await
            .unwrap();
        let reads = || store.identity.person_reads.load(Ordering::Relaxed);
        assert_eq!(reads(), 0);
        let found = store
            .persons_by_column("personnelnumber", "42")
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|p| p.uid.as_str()).collect::<Vec<_>>(),
            ["P-1"]
        );
        assert_eq!(reads(), 1);
        assert_eq!(
            store
                .person_column_value("P-1", "CentralAccount")
                .await
                .unwrap()
                .as_deref(),
            Some("one")
        );
        assert!(store
            .persons_by_column("PersonnelNumber", "7")
            .await
            .unwrap()
            .is_empty());
        let e = store
            .persons_by_column("NoSuchColumn", "x")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid(m) if m.contains("\"NoSuchColumn\"")),
            "{e}"
        );
        assert_eq!(reads(), 1, "later lookups use the cached columns");
    }
}
