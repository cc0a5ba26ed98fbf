//! The demo and test identity databases: the only place prp-host creates operator tables
//! (`Person`, `ADSAccount`), and only on request (`prp-host demo`, and the tests).

use crate::security::Hasher;
use crate::store::{Dialect, Store, StoreError};
use std::sync::Arc;

/// Creates `Person` and `ADSAccount` as operators have them (a small subset of columns).
pub async fn create_identity_schema(store: &Store) -> Result<(), StoreError> {
    let text = "VARCHAR(256)";
    let statements = [
        format!(
            "CREATE TABLE \"Person\" (
                \"UID_Person\" VARCHAR(38) PRIMARY KEY NOT NULL,
                \"CentralAccount\" {text},
                \"FirstName\" {text},
                \"LastName\" {text},
                \"UID_PersonHead\" VARCHAR(38) REFERENCES \"Person\" (\"UID_Person\"),
                \"IsInActive\" BOOLEAN NOT NULL DEFAULT FALSE,
                \"DefaultEmailAddress\" {text}
            )"
        ),
        format!(
            "CREATE TABLE \"ADSAccount\" (
                \"UID_ADSAccount\" VARCHAR(38) PRIMARY KEY NOT NULL,
                \"UID_Person\" VARCHAR(38) REFERENCES \"Person\" (\"UID_Person\"),
                \"CN\" {text},
                \"SamAccountName\" {text},
                \"Locked\" BOOLEAN NOT NULL DEFAULT FALSE,
                \"Disabled\" BOOLEAN NOT NULL DEFAULT FALSE,
                \"Active\" BOOLEAN NOT NULL DEFAULT TRUE,
                \"Enabled\" BOOLEAN NOT NULL DEFAULT TRUE
            )"
        ),
    ];
    // One connection for all the DDL: another SQLite connection may still hold the schema as
    // it was before a statement here changed it.
    let mut conn = store.pool().acquire().await?;
    for sql in statements {
        sqlx::query(&sql).execute(&mut *conn).await?;
    }
    // The indexes login lookups use (what `prp-host check` advises operators to create).
    for (table, column) in [
        ("Person", "CentralAccount"),
        ("ADSAccount", "CN"),
        ("ADSAccount", "SamAccountName"),
    ] {
        let expr = store.dialect().ascii_lower(&format!("\"{column}\""));
        sqlx::query(&format!(
            "CREATE INDEX \"{table}_{column}_login\" ON \"{table}\" ({expr})"
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Whether the identity tables exist already.
pub async fn identity_schema_exists(store: &Store) -> Result<bool, StoreError> {
    let sql = match store.dialect() {
        Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'Person'",
        Dialect::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'Person'"
        }
    };
    let n: i64 = sqlx::query_scalar(sql).fetch_one(store.pool()).await?;
    Ok(n > 0)
}

/// A person row.
pub struct NewPerson<'a> {
    pub uid: &'a str,
    pub central_account: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub manager_uid: Option<&'a str>,
    pub inactive: bool,
}

pub async fn insert_person(store: &Store, p: &NewPerson<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO \"Person\" (\"UID_Person\", \"CentralAccount\", \"FirstName\", \"LastName\", \"UID_PersonHead\", \"IsInActive\")
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(p.uid)
    .bind(p.central_account)
    .bind(p.first_name)
    .bind(p.last_name)
    .bind(p.manager_uid)
    .bind(p.inactive)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Sets a person's e-mail address (`Person.DefaultEmailAddress`; `None` clears it).
pub async fn set_email(
    store: &Store,
    person_uid: &str,
    email: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE \"Person\" SET \"DefaultEmailAddress\" = $2 WHERE \"UID_Person\" = $1")
        .bind(person_uid)
        .bind(email)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// An `ADSAccount` row.
pub struct NewAccount<'a> {
    pub uid: &'a str,
    pub person_uid: Option<&'a str>,
    pub cn: &'a str,
    pub sam_account_name: &'a str,
    pub locked: bool,
    pub disabled: bool,
    pub active: bool,
    pub enabled: bool,
}

pub async fn insert_account(store: &Store, a: &NewAccount<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO \"ADSAccount\" (\"UID_ADSAccount\", \"UID_Person\", \"CN\", \"SamAccountName\", \"Locked\", \"Disabled\", \"Active\", \"Enabled\")
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(a.uid)
    .bind(a.person_uid)
    .bind(a.cn)
    .bind(a.sam_account_name)
    .bind(a.locked)
    .bind(a.disabled)
    .bind(a.active)
    .bind(a.enabled)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Why building demo or test data failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] crate::security::HashError),
}

/// Stores the hash of a person's central password.
pub async fn set_central_password(
    store: &Store,
    hasher: &Arc<Hasher>,
    person_uid: &str,
    password: &str,
) -> Result<(), DemoError> {
    let h = hasher
        .hash_async(&crate::security::normalize_password(password))
        .await?;
    store
        .set_credential("Person", person_uid, person_uid, &h)
        .await?;
    Ok(())
}

/// Stores the hash of a target-system account's password.
pub async fn set_account_password(
    store: &Store,
    hasher: &Arc<Hasher>,
    table: &str,
    account_uid: &str,
    person_uid: &str,
    password: &str,
) -> Result<(), DemoError> {
    let h = hasher
        .hash_async(&crate::security::normalize_password(password))
        .await?;
    store
        .set_credential(table, account_uid, person_uid, &h)
        .await?;
    Ok(())
}

/// Adds a question with its normalised answer's hash.
pub async fn add_question(
    store: &Store,
    hasher: &Arc<Hasher>,
    person_uid: &str,
    question: &str,
    answer: &str,
) -> Result<String, DemoError> {
    let h = hasher
        .hash_async(&crate::security::normalize_answer(answer))
        .await?;
    Ok(store.add_question(person_uid, question, &h).await?)
}

/// The demo data set. Returns what to print for the operator.
pub struct DemoPeople;

impl DemoPeople {
    pub const ALICE_PASSWORD: &'static str = "alice-demo-password";
    pub const CAROL_ADS_PASSWORD: &'static str = "carol-ads-password";
    pub const MARTA_PASSWORD: &'static str = "marta-demo-password";
    pub const ALICE_QUESTIONS: &'static [(&'static str, &'static str)] = &[
        ("What was the name of your first pet?", "Rex"),
        ("In which city were you born?", "Lisbon"),
        ("What is your favourite book?", "Dune"),
    ];
}

/// Sets the demo people's passwords to the ones `prp-host demo` prints.
pub async fn reset_demo_passwords(store: &Store, hasher: &Arc<Hasher>) -> Result<(), DemoError> {
    set_central_password(store, hasher, "P-MARTA", DemoPeople::MARTA_PASSWORD).await?;
    set_central_password(store, hasher, "P-ALICE", DemoPeople::ALICE_PASSWORD).await?;
    set_account_password(
        store,
        hasher,
        "ADSAccount",
        "A-CAROL",
        "P-CAROL",
        DemoPeople::CAROL_ADS_PASSWORD,
    )
    .await?;
    set_account_password(
        store,
        hasher,
        "ADSAccount",
        "A-DAVE",
        "P-DAVE",
        "dave-ads-password",
    )
    .await?;
    Ok(())
}

/// Fills a fresh database with the demo identities and portal settings.
pub async fn seed_demo(store: &Store, hasher: &Arc<Hasher>) -> Result<(), DemoError> {
    create_identity_schema(store).await?;
    let people = [
        NewPerson {
            uid: "P-MARTA",
            central_account: "marta",
            first_name: "Marta",
            last_name: "Manager",
            manager_uid: None,
            inactive: false,
        },
        NewPerson {
            uid: "P-ALICE",
            central_account: "alice",
            first_name: "Alice",
            last_name: "Example",
            manager_uid: Some("P-MARTA"),
            inactive: false,
        },
        NewPerson {
            uid: "P-BOB",
            central_account: "bob",
            first_name: "Bob",
            last_name: "Example",
            manager_uid: Some("P-MARTA"),
            inactive: false,
        },
        NewPerson {
            uid: "P-CAROL",
            central_account: "carol",
            first_name: "Carol",
            last_name: "Example",
            manager_uid: Some("P-MARTA"),
            inactive: false,
        },
        NewPerson {
            uid: "P-DAVE",
            central_account: "dave",
            first_name: "Dave",
            last_name: "Example",
            manager_uid: Some("P-MARTA"),
            inactive: false,
        },
        NewPerson {
            uid: "P-ERIN",
            central_account: "erin",
            first_name: "Erin",
            last_name: "Former",
            manager_uid: None,
            inactive: true,
        },
    ];
    for p in &people {
        insert_person(store, p).await?;
        // Addresses on example.org (RFC 2606): nothing is ever delivered to a real person.
        let email = format!("{}@example.org", p.central_account);
        set_email(store, p.uid, Some(&email)).await?;
    }
    let accounts = [
        NewAccount {
            uid: "A-CAROL",
            person_uid: Some("P-CAROL"),
            cn: "Carol Example",
            sam_account_name: "cexample",
            locked: false,
            disabled: false,
            active: true,
            enabled: true,
        },
        NewAccount {
            uid: "A-DAVE",
            person_uid: Some("P-DAVE"),
            cn: "Dave Example",
            sam_account_name: "dexample",
            locked: false,
            disabled: true,
            active: true,
            enabled: true,
        },
    ];
    for a in &accounts {
        insert_account(store, a).await?;
    }
    reset_demo_passwords(store, hasher).await?;
    for (q, a) in DemoPeople::ALICE_QUESTIONS {
        add_question(store, hasher, "P-ALICE", q, a).await?;
    }
    let root = r"QER\Person\PasswordResetAuthenticator";
    store
        .set_parameter(&format!(r"{root}\SearchTable"), Some("ADSAccount"))
        .await?;
    store
        .set_parameter(&format!(r"{root}\SearchColumn"), Some("CN|SamAccountName"))
        .await?;
    store
        .set_parameter(&format!(r"{root}\DisabledBy"), Some("Locked|Disabled"))
        .await?;
    store
        .set_parameter(&format!(r"{root}\EnabledBy"), Some("Enabled"))
        .await?;
    store
        .set_parameter(&format!(r"{root}\QueryAnswerDefinitions"), Some("3"))
        .await?;
    store
        .set_parameter(&format!(r"{root}\QueryAnswerRequests"), Some("2"))
        .await?;
    let global = crate::store::ApiKeyScope::Global;
    store
        .set_api_key(&global, "EnablePasscodeLogin", "true")
        .await?;
    store
        .set_api_key(&global, "EnablePasswordProfileLogin", "true")
        .await?;
    // Password items: the central account and the ADS accounts, shown by their CN.
    store
        .set_parameter(crate::store::ACCOUNT_TABLES, Some("ADSAccount"))
        .await?;
    store
        .set_parameter(
            &format!(r"{}\ADSAccount", crate::store::DISPLAY_COLUMN),
            Some("CN"),
        )
        .await?;
    Ok(())
}
