//! Bringing identity data in from CSV: `prp-host import persons FILE.csv` fills `Person`,
//! `prp-host import accounts TABLE FILE.csv` an account table. Rows are upserted by key in one
//! transaction; nothing is written when any row is malformed. The tables must exist already:
//! import never creates or alters them, and never deletes a row.
//!
//! The rules (README, "Importing identity data"):
//! - The header row names the columns, matched to the live schema regardless of ASCII case; a
//!   name the table doesn't have is refused. Columns the file leaves out are left as they are in
//!   rows that exist, and get the table's default in rows that are added.
//! - The key is `UID_Person` for persons, the one-column primary key for an account table. A
//!   persons file must also name `CentralAccount`; both may not be empty in any row.
//! - An empty cell is NULL. Booleans are `true`/`false` or `1`/`0`; integers are decimal.
//!   Text is taken as it is, spaces included. Other column types are refused.
//! - A UTF-8 byte order mark is skipped; the file must be UTF-8, at most [`MAX_IMPORT_BYTES`].
//! - A key that appears twice is refused with both line numbers; a reference (a foreign key such
//!   as `UID_PersonHead` or an account's `UID_Person`) must name a row that exists or that the
//!   file adds.

use super::identity::{is_identifier, quote, ColumnInfo};
use super::{Dialect, Store, StoreError};
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The largest file `import` reads.
pub const MAX_IMPORT_BYTES: u64 = 64 * 1024 * 1024;

/// How many row problems an error lists before it says how many more there are.
const LISTED_PROBLEMS: usize = 50;

/// What to import into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportTarget {
    /// The `Person` table, keyed by `UID_Person`.
    Persons,
    /// An account table (a one-column primary key and a `UID_Person` foreign key to `Person`).
    Accounts(String),
}

/// A malformed row: its line in the file (the header is line 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_IMPORT_BYTES} bytes; split it into several files")]
    TooLarge { path: String },
    /// The table can't be imported into (missing, not an account table, badly named).
    #[error("{0}")]
    Table(String),
    /// The header row: unknown, repeated or missing columns, columns of a type import doesn't fill.
    #[error("the header (line 1) is refused, nothing was written: {}", .0.join("; "))]
    Header(Vec<String>),
    #[error("{} malformed row(s), nothing was written:\n{}", .0.len(), list(.0))]
    Rows(Vec<RowProblem>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

fn list(problems: &[RowProblem]) -> String {
    let mut lines: Vec<String> = problems
        .iter()
        .take(LISTED_PROBLEMS)
        .map(ToString::to_string)
        .collect();
    if problems.len() > LISTED_PROBLEMS {
        lines.push(format!("… and {} more", problems.len() - LISTED_PROBLEMS));
    }
    lines.join("\n")
}

/// One row the import added or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    pub line: u64,
    pub key: String,
    /// The columns whose values changed (empty for an added row).
    pub columns: Vec<String>,
}

/// What an import did (or, in a dry run, would have done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The table as the schema spells it.
    pub table: String,
    pub added: Vec<RowChange>,
    pub changed: Vec<RowChange>,
    /// Rows of the file that were already as the file has them.
    pub unchanged: usize,
    /// Rolled back: nothing was written.
    pub dry_run: bool,
}

impl ImportReport {
    /// `added N, changed M, unchanged K`.
    pub fn summary(&self) -> String {
        format!(
            "added {}, changed {}, unchanged {}",
            self.added.len(),
            self.changed.len(),
            self.unchanged
        )
    }
}

/// Reads an import file, refusing one larger than [`MAX_IMPORT_BYTES`].
pub fn read_import_file(path: &Path) -> Result<Vec<u8>, ImportError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let read_err = |source| ImportError::Read {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_IMPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_IMPORT_BYTES {
        return Err(ImportError::TooLarge { path: shown });
    }
    Ok(bytes)
}

/// How import reads and writes a column's cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Boolean,
}

impl Kind {
    fn of(d: Dialect, declared: &str) -> Option<Self> {
        if d.is_boolean_type(declared) {
            return Some(Self::Boolean);
        }
        let t = declared.to_ascii_lowercase();
        match d {
            // SQLite's affinity rules: INT first, then CHAR/CLOB/TEXT; no type is text too.
            Dialect::Sqlite if t.contains("int") => Some(Self::Integer),
            Dialect::Sqlite
                if t.is_empty()
                    || t.contains("char")
                    || t.contains("clob")
                    || t.contains("text") =>
            {
                Some(Self::Text)
            }
            Dialect::Postgres if matches!(t.as_str(), "smallint" | "integer" | "bigint") => {
                Some(Self::Integer)
            }
            Dialect::Postgres
                if matches!(t.as_str(), "text" | "character varying" | "character") =>
            {
                Some(Self::Text)
            }
            _ => None,
        }
    }

    /// The column's value as text, the way [`Value::canonical`] writes it; NULL stays NULL.
    fn read_expr(self, column: &str) -> String {
        let c = quote(column);
        match self {
            Self::Text | Self::Integer => format!("CAST({c} AS TEXT)"),
            Self::Boolean => {
                format!("CASE WHEN {c} IS NULL THEN NULL WHEN {c} THEN '1' ELSE '0' END")
            }
        }
    }
}

/// A cell, read by its column's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Null(Kind),
    Text(String),
    Integer(i64),
    Boolean(bool),
}

impl Value {
    fn parse(kind: Kind, cell: &str) -> Result<Self, String> {
        if cell.is_empty() {
            return Ok(Self::Null(kind));
        }
        match kind {
            Kind::Text => Ok(Self::Text(cell.to_owned())),
            Kind::Integer => cell
                .trim()
                .parse()
                .map(Self::Integer)
                .map_err(|_| format!("\"{cell}\" is not an integer")),
            Kind::Boolean => match cell.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Self::Boolean(true)),
                "false" | "0" => Ok(Self::Boolean(false)),
                _ => Err(format!("\"{cell}\" is not a boolean (true, false, 1 or 0)")),
            },
        }
    }

    fn canonical(&self) -> Option<String> {
        match self {
            Self::Null(_) => None,
            Self::Text(s) => Some(s.clone()),
            Self::Integer(i) => Some(i.to_string()),
            Self::Boolean(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        }
    }

    fn bind<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        // A NULL is bound with its column's type: PostgreSQL refuses text into a boolean.
        match self {
            Self::Null(Kind::Text) => q.bind(None::<String>),
            Self::Null(Kind::Integer) => q.bind(None::<i64>),
            Self::Null(Kind::Boolean) => q.bind(None::<bool>),
            Self::Text(s) => q.bind(s.clone()),
            Self::Integer(i) => q.bind(*i),
            Self::Boolean(b) => q.bind(*b),
        }
    }
}

/// A header column, as the schema spells it.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
    not_null: bool,
    /// `(table, column)` it references, when it is a foreign key.
    references: Option<(String, String)>,
}

/// The table to import into, checked against the live schema.
struct Target {
    table: String,
    key: String,
    /// Columns the header must name, whose cells may not be empty.
    required: Vec<String>,
    columns: Vec<ColumnInfo>,
    foreign_keys: Vec<(String, String, String)>,
}

/// A parsed data row.
struct Record {
    line: u64,
    key: Value,
    values: Vec<Value>,
}

impl Store {
    /// Imports `csv` (the bytes of a file, see [`read_import_file`]) into `target`: every row is
    /// upserted by key in one transaction, which a dry run rolls back. Nothing is written when
    /// any row is malformed; every malformed row is named by its line.
    pub async fn import_csv(
        &self,
        target: &ImportTarget,
        csv: &[u8],
        dry_run: bool,
    ) -> Result<ImportReport, ImportError> {
        let t = self.import_target(target).await?;
        let csv = csv.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(csv);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(csv);
        let mut records = reader.byte_records();
        let header = match records.next() {
            None => return Err(ImportError::Header(vec!["the file is empty".into()])),
            Some(Err(e)) => return Err(ImportError::Header(vec![e.to_string()])),
            Some(Ok(h)) => h,
        };
        let columns = self.header_columns(&t, &header).await?;
        let key_index = columns
            .iter()
            .position(|c| c.name == t.key)
            .ok_or_else(|| ImportError::Header(vec![format!("no \"{}\" column", t.key)]))?;

        // Every row is read and checked before the database is touched.
        let mut problems = Vec::new();
        let mut rows: Vec<Record> = Vec::new();
        let mut first_line: HashMap<String, u64> = HashMap::new();
        for record in records {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, csv::Position::line);
                    problems.push(RowProblem {
                        line,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let line = record.position().map_or(0, csv::Position::line);
            let problem = |message: String| RowProblem { line, message };
            if record.len() != columns.len() {
                problems.push(problem(format!(
                    "{} field(s), but the header names {} column(s)",
                    record.len(),
                    columns.len()
                )));
                continue;
            }
            let mut values = Vec::with_capacity(columns.len());
            let mut ok = true;
            for (cell, column) in record.iter().zip(&columns) {
                let parsed = std::str::from_utf8(cell)
                    .map_err(|_| "is not UTF-8".to_owned())
                    .and_then(|cell| Value::parse(column.kind, cell));
                match parsed {
                    Ok(Value::Null(_)) if t.required.contains(&column.name) || column.not_null => {
                        problems.push(problem(format!("{} may not be empty", column.name)));
                        ok = false;
                    }
                    Ok(v) => values.push(v),
                    Err(e) => {
                        problems.push(problem(format!("{}: {e}", column.name)));
                        ok = false;
                    }
                }
            }
            // A key is checked for repeats even when another cell of its row is malformed.
            let key = std::str::from_utf8(&record[key_index])
                .ok()
                .and_then(|cell| Value::parse(columns[key_index].kind, cell).ok())
                .and_then(|v| v.canonical());
            if let Some(key) = key {
                match first_line.get(&key) {
                    Some(first) => problems.push(problem(format!(
                        "{} \"{key}\" is also on line {first}",
                        t.key
                    ))),
                    None => {
                        first_line.insert(key, line);
                    }
                }
            }
            if ok {
                let key = values[key_index].clone();
                rows.push(Record { line, key, values });
            }
        }

        // The well-formed rows' references are checked too, so that one run names every
        // problem; nothing is written when there is any.
        let mut tx = self.pool().begin().await?;
        let plans = self.classify(&mut tx, &t, &columns, &rows).await?;
        problems.extend(
            self.check_references(&mut tx, &t, &columns, &rows, &plans)
                .await?,
        );
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(ImportError::Rows(problems));
        }
        let report = self
            .write(&mut tx, &t, &columns, &rows, &plans, dry_run)
            .await?;
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(report)
    }

    /// The table `target` names, checked: it exists, its name may be quoted, and an account
    /// table has a one-column primary key and a `UID_Person` foreign key to `Person`.
    async fn import_target(&self, target: &ImportTarget) -> Result<Target, ImportError> {
        let d = self.dialect();
        let refuse = |m: String| Err(ImportError::Table(m));
        let name = match target {
            ImportTarget::Persons => "Person",
            ImportTarget::Accounts(name) => name.as_str(),
        };
        if !is_identifier(name) {
            return refuse(format!("\"{name}\" is not a valid table name"));
        }
        let Some(table) = d.table_name(self, name).await? else {
            return refuse(format!(
                "table \"{name}\" does not exist; import fills existing tables and never creates one"
            ));
        };
        if !is_identifier(&table) {
            return refuse(format!(
                "table \"{table}\" has a name the portal won't quote into SQL"
            ));
        }
        let columns = d.column_details(self, &table).await?;
        let foreign_keys = d.foreign_keys(self, &table).await?;
        let find = |n: &str| {
            columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(n))
                .map(|c| c.name.clone())
        };
        match target {
            ImportTarget::Persons => {
                let (Some(key), Some(central)) = (find("UID_Person"), find("CentralAccount"))
                else {
                    return refuse(format!(
                        "table \"{table}\" lacks UID_Person or CentralAccount; run prp-host check"
                    ));
                };
                Ok(Target {
                    table,
                    required: vec![key.clone(), central],
                    key,
                    columns,
                    foreign_keys,
                })
            }
            ImportTarget::Accounts(_) => {
                if table.eq_ignore_ascii_case("Person") {
                    return refuse("Person is imported with `import persons`".into());
                }
                let Some(uid_person) = ["UID_Person", "CCC_UID_Person"]
                    .iter()
                    .find_map(|c| find(c))
                else {
                    return refuse(format!(
                        "table \"{table}\" has no UID_Person column, so it is not an account table"
                    ));
                };
                if !foreign_keys.iter().any(|(c, t, r)| {
                    c.eq_ignore_ascii_case(&uid_person)
                        && t.eq_ignore_ascii_case("Person")
                        && (r.is_empty() || r.eq_ignore_ascii_case("UID_Person"))
                }) {
                    return refuse(format!(
                        "table \"{table}\": \"{uid_person}\" is not a foreign key to Person(UID_Person), so it is not an account table"
                    ));
                }
                let keys: Vec<&ColumnInfo> = columns.iter().filter(|c| c.primary_key).collect();
                let [key] = keys.as_slice() else {
                    return refuse(format!(
                        "table \"{table}\" needs a one-column primary key to import by"
                    ));
                };
                let key = key.name.clone();
                Ok(Target {
                    table,
                    required: vec![key.clone()],
                    key,
                    columns,
                    foreign_keys,
                })
            }
        }
    }

    /// The header's columns as the schema spells them; every problem at once.
    async fn header_columns(
        &self,
        t: &Target,
        header: &csv::ByteRecord,
    ) -> Result<Vec<Column>, ImportError> {
        let d = self.dialect();
        let mut problems = Vec::new();
        let mut unknown = Vec::new();
        let mut columns: Vec<Column> = Vec::new();
        for cell in header {
            let Ok(name) = std::str::from_utf8(cell) else {
                problems.push("a column name is not UTF-8".to_owned());
                continue;
            };
            let Some(info) = t.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)) else {
                unknown.push(format!("\"{name}\""));
                continue;
            };
            if columns.iter().any(|c| c.name == info.name) {
                problems.push(format!("column \"{}\" is named twice", info.name));
                continue;
            }
            if !is_identifier(&info.name) {
                problems.push(format!(
                    "column \"{}\" has a name the portal won't quote into SQL",
                    info.name
                ));
                continue;
            }
            let Some(kind) = Kind::of(d, &info.declared_type) else {
                problems.push(format!(
                    "column \"{}\" is of type {}; import fills text, integer and boolean columns",
                    info.name, info.declared_type
                ));
                continue;
            };
            let references = match t
                .foreign_keys
                .iter()
                .find(|(c, _, _)| c.eq_ignore_ascii_case(&info.name))
            {
                None => None,
                Some((_, ref_table, ref_col)) => match self.referenced(ref_table, ref_col).await {
                    Ok(r) => Some(r),
                    Err(m) => {
                        problems.push(format!("column \"{}\": {m}", info.name));
                        continue;
                    }
                },
            };
            columns.push(Column {
                name: info.name.clone(),
                kind,
                not_null: info.not_null,
                references,
            });
        }
        if !unknown.is_empty() {
            problems.insert(
                0,
                format!("table \"{}\" has no column {}", t.table, unknown.join(", ")),
            );
        }
        for required in &t.required {
            if !columns.iter().any(|c| &c.name == required) {
                problems.push(format!("the file must have a \"{required}\" column"));
            }
        }
        if !problems.is_empty() {
            return Err(ImportError::Header(problems));
        }
        Ok(columns)
    }

    /// The `(table, column)` a foreign key references, as the schema spells them; SQLite leaves
    /// the column out when it is the referenced table's primary key.
    async fn referenced(&self, table: &str, column: &str) -> Result<(String, String), String> {
        let d = self.dialect();
        let unusable = || format!("references {table}({column}), which import can't check");
        let Ok(Some(actual)) = d.table_name(self, table).await else {
            return Err(unusable());
        };
        let cols = d
            .column_details(self, &actual)
            .await
            .map_err(|e| e.to_string())?;
        let found = if column.is_empty() {
            let keys: Vec<&ColumnInfo> = cols.iter().filter(|c| c.primary_key).collect();
            match keys.as_slice() {
                [one] => Some(one.name.clone()),
                _ => None,
            }
        } else {
            cols.iter()
                .find(|c| c.name.eq_ignore_ascii_case(column))
                .map(|c| c.name.clone())
        };
        match found {
            Some(c) if is_identifier(&actual) && is_identifier(&c) => Ok((actual, c)),
            _ => Err(unusable()),
        }
    }

    /// For each row: `None` when its key is new, else the indexes of the columns that change.
    async fn classify(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        t: &Target,
        columns: &[Column],
        rows: &[Record],
    ) -> Result<Vec<Option<Vec<usize>>>, ImportError> {
        let select = format!(
            "SELECT {} FROM {} WHERE {} = $1",
            columns
                .iter()
                .map(|c| c.kind.read_expr(&c.name))
                .collect::<Vec<_>>()
                .join(", "),
            quote(&t.table),
            quote(&t.key)
        );
        let mut plans = Vec::with_capacity(rows.len());
        for row in rows {
            let existing = row
                .key
                .bind(sqlx::query(&select))
                .fetch_optional(&mut **tx)
                .await?;
            plans.push(match existing {
                None => None,
                Some(r) => {
                    let mut changed = Vec::new();
                    for (i, v) in row.values.iter().enumerate() {
                        if r.try_get::<Option<String>, _>(i)? != v.canonical() {
                            changed.push(i);
                        }
                    }
                    Some(changed)
                }
            });
        }
        Ok(plans)
    }

    /// The rows whose references (foreign keys) name no row that exists or that the file adds
    /// to the same table.
    async fn check_references(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        t: &Target,
        columns: &[Column],
        rows: &[Record],
        plans: &[Option<Vec<usize>>],
    ) -> Result<Vec<RowProblem>, ImportError> {
        let new_keys = new_keys(rows, plans);
        let mut problems = Vec::new();
        let mut known: HashSet<(usize, String)> = HashSet::new();
        for row in rows {
            for (i, (column, value)) in columns.iter().zip(&row.values).enumerate() {
                let (Some((ref_table, ref_col)), Some(v)) = (&column.references, value.canonical())
                else {
                    continue;
                };
                let self_reference = ref_table == &t.table && ref_col == &t.key;
                if (self_reference && new_keys.contains(&Some(v.clone())))
                    || known.contains(&(i, v.clone()))
                {
                    continue;
                }
                let sql = format!(
                    "SELECT COUNT(*) FROM {} WHERE {} = $1",
                    quote(ref_table),
                    quote(ref_col)
                );
                let n: i64 = value
                    .bind(sqlx::query(&sql))
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get(0)?;
                if n == 0 {
                    problems.push(RowProblem {
                        line: row.line,
                        message: format!("{} \"{v}\" names no row of {ref_table}", column.name),
                    });
                } else {
                    known.insert((i, v));
                }
            }
        }
        Ok(problems)
    }

    /// Inserts the new rows and updates the changed columns of the others.
    async fn write(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        t: &Target,
        columns: &[Column],
        rows: &[Record],
        plans: &[Option<Vec<usize>>],
        dry_run: bool,
    ) -> Result<ImportReport, ImportError> {
        let table = quote(&t.table);
        let new_keys = new_keys(rows, plans);
        // Writes. A reference to a row the file adds later is set once that row exists.
        let refused = |line: u64, e: sqlx::Error| {
            ImportError::Rows(vec![RowProblem {
                line,
                message: format!("the database refused the row: {e}"),
            }])
        };
        let mut pending = new_keys;
        let mut deferred: Vec<(&Record, usize)> = Vec::new();
        let mut report = ImportReport {
            table: t.table.clone(),
            added: Vec::new(),
            changed: Vec::new(),
            unchanged: 0,
            dry_run,
        };
        for (row, plan) in rows.iter().zip(plans) {
            let later = |i: usize| {
                let c = &columns[i];
                c.references
                    .as_ref()
                    .is_some_and(|(rt, rc)| rt == &t.table && rc == &t.key)
                    && row.key.canonical() != row.values[i].canonical()
                    && pending.contains(&row.values[i].canonical())
            };
            match plan {
                None => {
                    let now: Vec<usize> = (0..columns.len()).filter(|&i| !later(i)).collect();
                    deferred.extend((0..columns.len()).filter(|&i| later(i)).map(|i| (row, i)));
                    let sql = format!(
                        "INSERT INTO {table} ({}) VALUES ({})",
                        now.iter()
                            .map(|&i| quote(&columns[i].name))
                            .collect::<Vec<_>>()
                            .join(", "),
                        (1..=now.len())
                            .map(|n| format!("${n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for &i in &now {
                        q = row.values[i].bind(q);
                    }
                    q.execute(&mut **tx)
                        .await
                        .map_err(|e| refused(row.line, e))?;
                    pending.remove(&row.key.canonical());
                    report.added.push(RowChange {
                        line: row.line,
                        key: row.key.canonical().unwrap_or_default(),
                        columns: Vec::new(),
                    });
                }
                Some(changed) if changed.is_empty() => report.unchanged += 1,
                Some(changed) => {
                    let now: Vec<usize> = changed.iter().copied().filter(|&i| !later(i)).collect();
                    deferred.extend(changed.iter().filter(|&&i| later(i)).map(|&i| (row, i)));
                    if !now.is_empty() {
                        self.update(tx, t, columns, row, &now)
                            .await
                            .map_err(|e| refused(row.line, e))?;
                    }
                    report.changed.push(RowChange {
                        line: row.line,
                        key: row.key.canonical().unwrap_or_default(),
                        columns: changed.iter().map(|&i| columns[i].name.clone()).collect(),
                    });
                }
            }
        }
        for (row, i) in deferred {
            self.update(tx, t, columns, row, &[i])
                .await
                .map_err(|e| refused(row.line, e))?;
        }
        Ok(report)
    }

    /// Sets the columns `which` of the row's key to the row's values.
    async fn update(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        t: &Target,
        columns: &[Column],
        row: &Record,
        which: &[usize],
    ) -> Result<(), sqlx::Error> {
        let sets: Vec<String> = which
            .iter()
            .enumerate()
            .map(|(n, &i)| format!("{} = ${}", quote(&columns[i].name), n + 1))
            .collect();
        let sql = format!(
            "UPDATE {} SET {} WHERE {} = ${}",
            quote(&t.table),
            sets.join(", "),
            quote(&t.key),
            which.len() + 1
        );
        let mut q = sqlx::query(&sql);
        for &i in which {
            q = row.values[i].bind(q);
        }
        row.key.bind(q).execute(&mut **tx).await?;
        Ok(())
    }
}

/// The keys of the rows that are new.
fn new_keys(rows: &[Record], plans: &[Option<Vec<usize>>]) -> HashSet<Option<String>> {
    rows.iter()
        .zip(plans)
        .filter(|(_, p)| p.is_none())
        .map(|(r, _)| r.key.canonical())
        .collect()
}
