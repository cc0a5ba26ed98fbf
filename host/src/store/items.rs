//! Password items: the central account and the target-system accounts of a person, in the
//! tables `PRP\Portal\AccountTables` lists; and the all-or-nothing password change.

use super::identity::{is_identifier, quote};
use super::{Store, StoreError, StoredPassword};
use sqlx::Row;

/// The parameter listing the tables whose accounts are password items (pipe-separated).
pub const ACCOUNT_TABLES: &str = r"PRP\Portal\AccountTables";
/// `PRP\Portal\DisplayColumn\<Table>`: the column shown as an account's name (default: its key).
pub const DISPLAY_COLUMN: &str = r"PRP\Portal\DisplayColumn";

/// A validated account table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTable {
    pub table: String,
    key: String,
    uid_person: String,
    display: String,
}

/// An account of a person in an account table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableAccount {
    pub table: String,
    pub account_uid: String,
    pub display: String,
}

/// One item of a password change.
#[derive(Debug, Clone)]
pub struct ItemChange {
    pub source: String,
    pub account_uid: String,
    /// The account's name as people know it (for the notification).
    pub display_name: String,
    /// The new hash to store (of the password's NFKC form); `None` stores nothing.
    pub new_hash: Option<String>,
    /// A resolver plugin set the password in its own system: `new_hash` is kept only for the
    /// history rule and the item's "last set" (never to verify a login), and no
    /// `password.changed` provisioning event is queued (the system has the password already).
    pub set_by_resolver: bool,
    /// Keep this many earlier hashes of the item.
    pub history_count: usize,
}

/// A change of one password for several items, applied in one transaction.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    pub person_uid: String,
    /// The session that made the change (it stays; the person's others are revoked).
    pub session_token_hash: Option<String>,
    pub items: Vec<ItemChange>,
    pub actor: String,
    pub remote_addr: Option<String>,
}

impl Store {
    /// The configured account tables, checked against the live schema. Problems name the
    /// parameter; a table with a problem is left out.
    pub async fn account_tables(&self) -> Result<(Vec<AccountTable>, Vec<String>), StoreError> {
        let Some(list) = self.parameter_value(ACCOUNT_TABLES).await? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let d = self.dialect();
        let mut tables = Vec::new();
        let mut problems = Vec::new();
        for name in list.split('|').map(str::trim).filter(|s| !s.is_empty()) {
            let problem = |m: String| format!("{ACCOUNT_TABLES}: {m}");
            if !is_identifier(name) {
                problems.push(problem(format!("\"{name}\" is not a valid table name")));
                continue;
            }
            let Some(table) = d.table_name(self, name).await? else {
                problems.push(problem(format!("table \"{name}\" does not exist")));
                continue;
            };
            let cols = d.columns(self, &table).await?;
            let find = |n: &str| {
                cols.iter()
                    .find(|(c, _, _)| c.eq_ignore_ascii_case(n))
                    .map(|(c, _, _)| c.clone())
            };
            let fks = d.foreign_keys(self, &table).await?;
            let Some(uid_person) = ["UID_Person", "CCC_UID_Person"]
                .iter()
                .find_map(|c| find(c))
            else {
                problems.push(problem(format!(
                    "table \"{table}\" has no UID_Person column"
                )));
                continue;
            };
            if !fks.iter().any(|(c, t, r)| {
                c.eq_ignore_ascii_case(&uid_person)
                    && t.eq_ignore_ascii_case("Person")
                    && (r.is_empty() || r.eq_ignore_ascii_case("UID_Person"))
            }) {
                problems.push(problem(format!("table \"{table}\": \"{uid_person}\" is not a foreign key to Person(UID_Person)")));
                continue;
            }
            let keys: Vec<&(String, String, bool)> = cols.iter().filter(|(_, _, pk)| *pk).collect();
            let [key] = keys.as_slice() else {
                problems.push(problem(format!(
                    "table \"{table}\" needs a one-column primary key"
                )));
                continue;
            };
            let display_param = format!(r"{DISPLAY_COLUMN}\{table}");
            let display = match self.parameter_value(&display_param).await? {
                None => key.0.clone(),
                Some(col) => match find(col.trim()) {
                    Some(c) => c,
                    None => {
                        problems.push(format!(
                            "{display_param}: table \"{table}\" has no column \"{}\"",
                            col.trim()
                        ));
                        key.0.clone()
                    }
                },
            };
            if ![&table, &key.0, &uid_person, &display]
                .iter()
                .all(|n| is_identifier(n))
            {
                problems.push(problem(format!(
                    "table \"{table}\" has names the portal won't quote into SQL"
                )));
                continue;
            }
            tables.push(AccountTable {
                table,
                key: key.0.clone(),
                uid_person,
                display,
            });
        }
        Ok((tables, problems))
    }

    /// The person's accounts in one account table.
    pub async fn accounts_in(
        &self,
        t: &AccountTable,
        person_uid: &str,
    ) -> Result<Vec<TableAccount>, StoreError> {
        let sql = format!(
            "SELECT CAST({key} AS TEXT) AS account_uid, CAST({display} AS TEXT) AS display FROM {table} WHERE {uid} = $1 ORDER BY 1",
            key = quote(&t.key),
            display = quote(&t.display),
            table = quote(&t.table),
            uid = quote(&t.uid_person),
        );
        let rows = sqlx::query(&sql)
            .bind(person_uid)
            .fetch_all(self.db())
            .await?;
        rows.iter()
            .map(|r| {
                let account_uid: String = r.try_get("account_uid")?;
                let display: Option<String> = r.try_get("display")?;
                Ok(TableAccount {
                    table: t.table.clone(),
                    display: display.unwrap_or_else(|| account_uid.clone()),
                    account_uid,
                })
            })
            .collect()
    }

    /// When the portal last stored a password for the item.
    pub async fn credential_set_at(
        &self,
        source: &str,
        account_uid: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT set_at FROM prp_credential WHERE source = $1 AND account_uid = $2",
        )
        .bind(source)
        .bind(account_uid)
        .fetch_optional(self.db())
        .await?)
    }

    /// The item's current hash and up to `count - 1` earlier ones, newest first: the passwords a
    /// history of `count` forbids.
    pub async fn recent_hashes(
        &self,
        source: &str,
        account_uid: &str,
        count: usize,
    ) -> Result<Vec<StoredPassword>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let stored = |r: &sqlx::any::AnyRow| {
            Ok::<_, StoreError>(StoredPassword {
                hash: r.try_get("hash")?,
                normalized: r.try_get::<i64, _>("normalized")? != 0,
            })
        };
        let mut out = sqlx::query(
            "SELECT hash, normalized FROM prp_credential WHERE source = $1 AND account_uid = $2",
        )
        .bind(source)
        .bind(account_uid)
        .fetch_all(self.db())
        .await?
        .iter()
        .map(stored)
        .collect::<Result<Vec<_>, _>>()?;
        let earlier = sqlx::query(
            "SELECT hash, normalized FROM prp_password_history WHERE source = $1 AND account_uid = $2 ORDER BY set_at DESC LIMIT $3",
        )
        .bind(source)
        .bind(account_uid)
        .bind((count.saturating_sub(1)) as i64)
        .fetch_all(self.db())
        .await?;
        for r in &earlier {
            out.push(stored(r)?);
        }
        out.truncate(count);
        Ok(out)
    }

    /// Applies a password change in one transaction: the new hashes with the old ones moved to
    /// the history, an audit event and a provisioning event per item, the person's password
    /// locks cleared, their other sessions revoked, their outstanding passcode removed (with
    /// its second half), and a "password changed" notification. Either all of it is stored or
    /// none of it.
    pub async fn apply_password_change(&self, change: &PasswordChange) -> Result<(), StoreError> {
        let now = self.now();
        let mut tx = self.pool().begin().await?;
        for item in &change.items {
            if let Some(hash) = &item.new_hash {
                sqlx::query(
                    "INSERT INTO prp_password_history (source, account_uid, hash, set_at, normalized, external)
                     SELECT source, account_uid, hash, set_at, normalized, external FROM prp_credential WHERE source = $1 AND account_uid = $2",
                )
                .bind(&item.source)
                .bind(&item.account_uid)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO prp_credential (source, account_uid, person_uid, hash, set_at, normalized, external) VALUES ($1, $2, $3, $4, $5, 1, $6)
                     ON CONFLICT (source, account_uid) DO UPDATE SET person_uid = $3, hash = $4, set_at = $5, normalized = 1, external = $6",
                )
                .bind(&item.source)
                .bind(&item.account_uid)
                .bind(&change.person_uid)
                .bind(hash)
                .bind(now)
                .bind(i64::from(item.set_by_resolver))
                .execute(&mut *tx)
                .await?;
                // Keep only what the history needs.
                sqlx::query(
                    "DELETE FROM prp_password_history WHERE source = $1 AND account_uid = $2 AND set_at < (
                       SELECT COALESCE(MIN(set_at), 0) FROM (
                         SELECT set_at FROM prp_password_history WHERE source = $1 AND account_uid = $2
                         ORDER BY set_at DESC LIMIT $3) AS kept)",
                )
                .bind(&item.source)
                .bind(&item.account_uid)
                .bind(item.history_count.max(1) as i64)
                .execute(&mut *tx)
                .await?;
                if !item.set_by_resolver {
                    sqlx::query(
                        "INSERT INTO prp_provisioning_outbox (created_at, event, source, account_uid, person_uid)
                         VALUES ($1, 'password.changed', $2, $3, $4)",
                    )
                    .bind(now)
                    .bind(&item.source)
                    .bind(&item.account_uid)
                    .bind(&change.person_uid)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query(
                "INSERT INTO prp_audit (at, event, outcome, person_uid, reason, actor, remote_addr)
                 VALUES ($1, 'password.set', 'success', $2, $3, $4, $5)",
            )
            .bind(now)
            .bind(&change.person_uid)
            .bind(format!(
                "{}:{}{}",
                item.source,
                item.account_uid,
                if item.set_by_resolver {
                    " (set by its resolver)"
                } else {
                    ""
                }
            ))
            .bind(&change.actor)
            .bind(change.remote_addr.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "DELETE FROM prp_failure WHERE person_uid = $1 AND scope IN ('password', 'all')",
        )
        .bind(&change.person_uid)
        .execute(&mut *tx)
        .await?;
        // A passcode issued before the change would still open a reset session for hours.
        super::secrets::purge_passcode_half(&mut tx, &change.person_uid, None).await?;
        sqlx::query("DELETE FROM prp_passcode WHERE person_uid = $1")
            .bind(&change.person_uid)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE prp_session SET revoked_at = $2
             WHERE person_uid = $1 AND revoked_at IS NULL AND token_hash <> $3",
        )
        .bind(&change.person_uid)
        .bind(now)
        .bind(change.session_token_hash.as_deref().unwrap_or(""))
        .execute(&mut *tx)
        .await?;
        let names: Vec<String> = change
            .items
            .iter()
            .map(|i| {
                if i.source == "Person" {
                    "your central account".to_owned()
                } else {
                    format!("\"{}\" in {}", i.display_name, i.source)
                }
            })
            .collect();
        // The facts the delivered message is written from, in the recipient's language.
        let data = serde_json::json!({
            "items": change.items.iter().map(|i| serde_json::json!({
                "system": i.source,
                "name": i.display_name,
                "central": i.source == "Person",
            })).collect::<Vec<_>>(),
        });
        sqlx::query(
            "INSERT INTO prp_notification_outbox (created_at, recipient_uid, kind, subject, body, data)
             VALUES ($1, $2, 'password.changed', 'Your password was changed', $3, $4)",
        )
        .bind(now)
        .bind(&change.person_uid)
        .bind(format!(
            "The password of {} was changed in the Password Reset Portal. If this was not you, contact the help desk.",
            names.join(", ")
        ))
        .bind(data.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queues a notification: `subject` and `body` as a fallback in English, `data` the facts the
    /// delivery worker renders the message from in the recipient's language, `secret` the second
    /// half of a four-eyes passcode.
    pub async fn notify(
        &self,
        recipient_uid: &str,
        kind: &str,
        subject: &str,
        body: &str,
        secret: Option<&str>,
        data: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO prp_notification_outbox (created_at, recipient_uid, kind, subject, body, secret, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(self.now())
        .bind(recipient_uid)
        .bind(kind)
        .bind(subject)
        .bind(body)
        .bind(secret)
        .bind(data.map(|d| d.to_string()))
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// The queued notifications of a recipient, oldest first: (kind, subject, body, secret).
    pub async fn notifications(
        &self,
        recipient_uid: &str,
    ) -> Result<Vec<(String, String, String, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, subject, body, secret FROM prp_notification_outbox WHERE recipient_uid = $1 ORDER BY id",
        )
        .bind(recipient_uid)
        .fetch_all(self.db())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("kind")?,
                    r.try_get("subject")?,
                    r.try_get("body")?,
                    r.try_get("secret")?,
                ))
            })
            .collect()
    }

    /// Provisioning events of a person, oldest first: (source, account_uid).
    pub async fn provisioning_events(
        &self,
        person_uid: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT source, account_uid FROM prp_provisioning_outbox WHERE person_uid = $1 ORDER BY id")
            .bind(person_uid)
            .fetch_all(self.db())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("source")?, r.try_get("account_uid")?)))
            .collect()
    }
}
