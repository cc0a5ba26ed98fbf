//! Identity data brought in from CSV (`prp-host import`), and `prp-host check` naming the
//! missing `Person` columns with the statements that add them. SQLite always, PostgreSQL when
//! `PRP_TEST_POSTGRES_URL` is set.

use prp_host::demo::{self, NewAccount, NewPerson};
use prp_host::store::{read_import_file, ImportError, ImportTarget, RowProblem, Store};
use prp_tests::{artifacts, backends, stderr, stdout, Scene, TestDb};

fn person<'a>(uid: &'a str, central: &'a str, manager: Option<&'a str>) -> NewPerson<'a> {
    NewPerson {
        uid,
        central_account: central,
        first_name: "First",
        last_name: "Last",
        manager_uid: manager,
        inactive: false,
    }
}

/// The demo's identity tables with a manager and two people.
async fn identities(db: &TestDb) -> Store {
    let store = db.store().await;
    demo::create_identity_schema(&store).await.expect("schema");
    for p in [
        person("P-MARTA", "marta", None),
        person("P-ALICE", "alice", Some("P-MARTA")),
        person("P-BOB", "bob", Some("P-MARTA")),
    ] {
        demo::insert_person(&store, &p).await.expect("person");
    }
    store
}

async fn count(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{table}\""))
        .fetch_one(store.pool())
        .await
        .expect("count")
}

fn rows_of(result: Result<prp_host::store::ImportReport, ImportError>) -> Vec<(u64, String)> {
    match result {
        Err(ImportError::Rows(rows)) => rows
            .into_iter()
            .map(|RowProblem { line, message }| (line, message))
            .collect(),
        other => panic!("expected malformed rows, got {other:?}"),
    }
}

const PERSONS: &str = "UID_Person,CentralAccount,FirstName,LastName,UID_PersonHead,IsInActive
P-ALICE,alice,First,Last,P-MARTA,false
P-BOB,bob,Bob,Builder,P-MARTA,true
P-NEW,newbie,New,Person,P-LATER,0
P-LATER,later,Later,,,1
";

#[tokio::test]
async fn a_good_file_adds_and_changes_and_a_second_run_changes_nothing() {
    for backend in backends() {
        let db = TestDb::new(&backend).await;
        let store = identities(&db).await;
        let report = store
            .import_csv(&ImportTarget::Persons, PERSONS.as_bytes(), false)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert_eq!(
            report.summary(),
            "added 2, changed 1, unchanged 1",
            "{}",
            backend.name()
        );
        let added: Vec<(u64, &str)> = report
            .added
            .iter()
            .map(|r| (r.line, r.key.as_str()))
            .collect();
        assert_eq!(added, [(4, "P-NEW"), (5, "P-LATER")]);
        assert_eq!(report.changed[0].key, "P-BOB");
        assert_eq!(report.changed[0].line, 3);
        assert_eq!(
            report.changed[0].columns,
            ["FirstName", "LastName", "IsInActive"]
        );

        let bob = store.person("P-BOB").await.expect("read").expect("bob");
        assert_eq!((bob.first_name.as_str(), bob.inactive), ("Bob", true));
        // P-NEW's manager comes later in the file: set once that row exists.
        let new = store.person("P-NEW").await.expect("read").expect("new");
        assert_eq!(new.manager_uid.as_deref(), Some("P-LATER"));
        assert_eq!(new.central_account, "newbie");
        // Empty cells are NULL.
        let later = store.person("P-LATER").await.expect("read").expect("later");
        assert_eq!((later.last_name.as_str(), later.manager_uid), ("", None));
        assert!(later.inactive);
        let null_last: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM \"Person\" WHERE \"UID_Person\" = 'P-LATER' AND \"LastName\" IS NULL",
        )
        .fetch_one(store.pool())
        .await
        .expect("query");
        assert_eq!(null_last, 1);

        let again = store
            .import_csv(&ImportTarget::Persons, PERSONS.as_bytes(), false)
            .await
            .expect("second import");
        assert_eq!(again.summary(), "added 0, changed 0, unchanged 4");
        assert_eq!(count(&store, "Person").await, 5);
    }
}

#[tokio::test]
async fn header_names_match_regardless_of_case_and_a_bom_and_quoted_newlines_are_read() {
    for backend in backends() {
        let db = TestDb::new(&backend).await;
        let store = identities(&db).await;
        // Columns the file leaves out stay as they are; line numbers count the quoted newline.
        let file =
            "\u{feff}uid_person,CENTRALACCOUNT,LastName\nP-ALICE,alice,\"Two\nLines\"\nP-BOB,,x\n";
        let problems = rows_of(
            store
                .import_csv(&ImportTarget::Persons, file.as_bytes(), false)
                .await,
        );
        assert_eq!(
            problems,
            [(4, "CentralAccount may not be empty".to_owned())]
        );
        let file = "\u{feff}uid_person,CENTRALACCOUNT,LastName\nP-ALICE,alice,\"Two\nLines\"\n";
        let report = store
            .import_csv(&ImportTarget::Persons, file.as_bytes(), false)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert_eq!(report.summary(), "added 0, changed 1, unchanged 0");
        let alice = store.person("P-ALICE").await.expect("read").expect("alice");
        assert_eq!(alice.last_name, "Two\nLines");
        assert_eq!(alice.first_name, "First");
        assert_eq!(alice.manager_uid.as_deref(), Some("P-MARTA"));
    }
}

#[tokio::test]
async fn malformed_rows_are_named_by_line_and_nothing_is_written() {
    for backend in backends() {
        let db = TestDb::new(&backend).await;
        let store = identities(&db).await;
        let file = "UID_Person,CentralAccount,IsInActive,UID_PersonHead
P-OK,ok,false,
P-ALICE,alice-renamed,false,P-MARTA
P-1,one,maybe,
P-2,,true,
P-3,three,0,P-NOBODY
P-4,four
P-OK,again,1,
,nobody,0,
";
        let problems = rows_of(
            store
                .import_csv(&ImportTarget::Persons, file.as_bytes(), false)
                .await,
        );
        assert_eq!(
            problems,
            [
                (
                    4,
                    "IsInActive: \"maybe\" is not a boolean (true, false, 1 or 0)".to_owned()
                ),
                (5, "CentralAccount may not be empty".to_owned()),
                (
                    6,
                    "UID_PersonHead \"P-NOBODY\" names no row of Person".to_owned()
                ),
                (7, "2 field(s), but the header names 4 column(s)".to_owned()),
                (8, "UID_Person \"P-OK\" is also on line 2".to_owned()),
                (9, "UID_Person may not be empty".to_owned()),
            ],
            "{}",
            backend.name()
        );
        // Nothing was written: the good rows neither.
        assert_eq!(count(&store, "Person").await, 3);
        let alice = store.person("P-ALICE").await.expect("read").expect("alice");
        assert_eq!(alice.central_account, "alice");
    }
}

#[tokio::test]
async fn unknown_repeated_and_missing_columns_are_refused_all_at_once() {
    for backend in backends() {
        let db = TestDb::new(&backend).await;
        let store = identities(&db).await;
        let file = "UID_Person,Shoe_Size,FirstName,firstname,Nickname\nP-ALICE,42,A,A,Al\n";
        match store
            .import_csv(&ImportTarget::Persons, file.as_bytes(), false)
            .await
        {
            Err(ImportError::Header(problems)) => assert_eq!(
                problems,
                [
                    "table \"Person\" has no column \"Shoe_Size\", \"Nickname\"",
                    "column \"FirstName\" is named twice",
                    "the file must have a \"CentralAccount\" column",
                ],
                "{}",
                backend.name()
            ),
            other => panic!("expected a refused header, got {other:?}"),
        }
        match store.import_csv(&ImportTarget::Persons, b"", false).await {
            Err(ImportError::Header(p)) => assert_eq!(p, ["the file is empty"]),
            other => panic!("expected a refused header, got {other:?}"),
        }
        let alice = store.person("P-ALICE").await.expect("read").expect("alice");
        assert_eq!(alice.first_name, "First");
    }
}

#[tokio::test]
async fn a_dry_run_reports_and_writes_nothing() {
    for backend in backends() {
        let db = TestDb::new(&backend).await;
        let store = identities(&db).await;
        let report = store
            .import_csv(&ImportTarget::Persons, PERSONS.as_bytes(), true)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert!(report.dry_run);
        assert_eq!(report.summary(), "added 2, changed 1, unchanged 1");
        assert_eq!(count(&store, "Person").await, 3);
        let bob = store.person("P-BOB").await.expect("read").expect("bob");
        assert_eq!(bob.first_name, "First");
        assert!(!bob.inactive);
    }
}

#[tokio::test]
async fn accounts_are_upserted_by_the_tables_key_and_must_name_persons() {
    for backend in backends() {
        let db = TestDb::new(&backend).await;
        let store = identities(&db).await;
        demo::insert_account(
            &store,
            &NewAccount {
                uid: "A-BOB",
                person_uid: Some("P-BOB"),
                cn: "Bob",
                sam_account_name: "bob",
                locked: false,
                disabled: false,
                active: true,
                enabled: true,
            },
        )
        .await
        .expect("account");
        let target = ImportTarget::Accounts("adsaccount".into());
        let file = "UID_ADSAccount,UID_Person,CN,SamAccountName,Disabled
A-BOB,P-BOB,Bob,bob,1
A-ALICE,P-ALICE,Alice,alice,0
A-NOBODY,,Shared,shared,0
";
        let report = store
            .import_csv(&target, file.as_bytes(), false)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert_eq!(report.table, "ADSAccount");
        assert_eq!(report.summary(), "added 2, changed 1, unchanged 0");
        assert_eq!(report.changed[0].columns, ["Disabled"]);
        let again = store
            .import_csv(&target, file.as_bytes(), false)
            .await
            .expect("again");
        assert_eq!(again.summary(), "added 0, changed 0, unchanged 3");

        let bad = "UID_ADSAccount,UID_Person,Locked\nA-X,P-GHOST,false\nA-Y,P-BOB,yes\n";
        assert_eq!(
            rows_of(store.import_csv(&target, bad.as_bytes(), false).await),
            [
                (
                    2,
                    "UID_Person \"P-GHOST\" names no row of Person".to_owned()
                ),
                (
                    3,
                    "Locked: \"yes\" is not a boolean (true, false, 1 or 0)".to_owned()
                ),
            ]
        );
        assert_eq!(count(&store, "ADSAccount").await, 3);

        // Only account tables: not Person, not the portal's own tables, not a missing one.
        for table in ["Person", "prp_parameter", "NoSuchTable", "bad name"] {
            let result = store
                .import_csv(
                    &ImportTarget::Accounts(table.into()),
                    b"UID_Person\nP-X\n",
                    false,
                )
                .await;
            assert!(
                matches!(result, Err(ImportError::Table(_))),
                "{table}: {result:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_row_the_database_refuses_is_named_by_line_and_the_rest_rolled_back() {
    for backend in backends() {
        let db = TestDb::new(&backend).await;
        let store = identities(&db).await;
        sqlx::query("CREATE UNIQUE INDEX \"ads_sam\" ON \"ADSAccount\" (\"SamAccountName\")")
            .execute(store.pool())
            .await
            .expect("index");
        let file = "UID_ADSAccount,UID_Person,SamAccountName\nA-1,P-ALICE,same\nA-2,P-BOB,same\n";
        let problems = rows_of(
            store
                .import_csv(
                    &ImportTarget::Accounts("ADSAccount".into()),
                    file.as_bytes(),
                    false,
                )
                .await,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, 3, "{problems:?}");
        assert!(
            problems[0].1.starts_with("the database refused the row"),
            "{problems:?}"
        );
        assert_eq!(count(&store, "ADSAccount").await, 0);
    }
}

#[test]
fn a_file_over_the_limit_is_refused() {
    let scene = Scene::new();
    let path = scene.path("big.csv");
    let f = std::fs::File::create(&path).expect("create");
    f.set_len(prp_host::store::MAX_IMPORT_BYTES + 1)
        .expect("grow");
    assert!(matches!(
        read_import_file(&path),
        Err(ImportError::TooLarge { .. })
    ));
    let path = scene.write("ok.csv", "UID_Person\n");
    assert_eq!(read_import_file(&path).expect("read"), b"UID_Person\n");
}

#[test]
fn the_command_prints_the_summary_and_refuses_malformed_files() {
    let a = artifacts();
    let scene = Scene::new();
    let config = scene.appsettings(
        &[a.lib("password-reset-authenticator")],
        &["password-reset-authenticator"],
        true,
    );
    let out = scene.run(&config, &["demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = scene.write(
        "people.csv",
        "UID_Person,CentralAccount,LastName\nP-ALICE,alice,Renamed\nP-ZED,zed,Zed\n",
    );
    let file = file.to_str().expect("utf-8 path");

    let dry = scene.run(&config, &["import", "persons", file, "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(
        stdout(&dry).trim(),
        "Person: added 1, changed 1, unchanged 0 (dry run: rolled back, nothing was written)"
    );
    let real = scene.run(&config, &["import", "persons", file, "--verbose"]);
    assert!(real.status.success(), "{}", stderr(&real));
    assert_eq!(
        stdout(&real),
        "added    P-ZED (line 3)\nchanged  P-ALICE (line 2): LastName\nPerson: added 1, changed 1, unchanged 0\n"
    );
    let again = scene.run(&config, &["import", "persons", file]);
    assert_eq!(
        stdout(&again).trim(),
        "Person: added 0, changed 0, unchanged 2"
    );
    let audit = stdout(&scene.run(&config, &["audit", "--limit", "5"]));
    assert!(audit.contains("identity.imported"), "{audit}");

    let bad = scene.write("bad.csv", "UID_SAccount,UID_Person,CN\nA-1,P-GHOST,x\n");
    let out = scene.run(
        &config,
        &[
            "import",
            "accounts",
            "ADSAccount",
            bad.to_str().expect("path"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("has no column \"UID_SAccount\""), "{err}");
    let bad = scene.write("bad2.csv", "UID_ADSAccount,UID_Person\nA-1,P-GHOST\n");
    let out = scene.run(
        &config,
        &[
            "import",
            "accounts",
            "ADSAccount",
            bad.to_str().expect("path"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("1 malformed row(s), nothing was written:\nline 2: UID_Person \"P-GHOST\" names no row of Person"),
        "{err}"
    );
}

/// The statements after "add them with: " / "create it with: " in a check problem.
fn ddl_of(message: &str) -> Vec<String> {
    let (_, ddl) = message
        .split_once(" with: ")
        .unwrap_or_else(|| panic!("no DDL in {message}"));
    ddl.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn check_names_every_missing_person_column_with_ddl_that_adds_them() {
    for backend in backends() {
        let db = TestDb::new(&backend).await;
        let store = db.store().await;

        // No Person table: the statement that creates one.
        let problems = store.check_person_table().await.expect("check");
        assert_eq!(problems.len(), 1, "{problems:?}");
        let create = ddl_of(&problems[0].message);
        assert!(
            create[0].starts_with("CREATE TABLE \"Person\""),
            "{create:?}"
        );

        // A Person table with two of the six columns: one problem names the other four.
        sqlx::query(
            "CREATE TABLE \"Person\" (\"UID_Person\" VARCHAR(38) PRIMARY KEY, \"CentralAccount\" VARCHAR(256))",
        )
        .execute(store.pool())
        .await
        .expect("table");
        sqlx::query("INSERT INTO \"Person\" VALUES ('P-1', 'one')")
            .execute(store.pool())
            .await
            .expect("row");
        let problems = store.check_person_table().await.expect("check");
        assert_eq!(problems.len(), 1, "{}: {problems:?}", backend.name());
        let message = &problems[0].message;
        assert!(
            message.starts_with("table \"Person\" lacks 4 of the columns the portal reads: \"FirstName\", \"LastName\", \"UID_PersonHead\", \"IsInActive\"; add them with: ALTER TABLE \"Person\" ADD COLUMN \"FirstName\" VARCHAR(256);"),
            "{message}"
        );
        // The statements work, and then the check passes and the portal reads the person.
        for statement in ddl_of(message) {
            sqlx::query(&statement)
                .execute(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{}: {statement}: {e}", backend.name()));
        }
        assert_eq!(
            store.check_person_table().await.expect("check"),
            [],
            "{}",
            backend.name()
        );
        let p = store.person("P-1").await.expect("read").expect("person");
        assert_eq!((p.central_account.as_str(), p.inactive), ("one", false));

        // The statement for a missing table works too.
        sqlx::query("DROP TABLE \"Person\"")
            .execute(store.pool())
            .await
            .expect("drop");
        for statement in create {
            sqlx::query(&statement)
                .execute(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{}: {statement}: {e}", backend.name()));
        }
        assert_eq!(store.check_person_table().await.expect("check"), []);
    }
}

#[test]
fn the_check_command_lists_missing_person_columns_at_once() {
    let scene = Scene::new();
    let config = scene.appsettings(&[], &[], false);
    let out = scene.run(&config, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = format!("sqlite://{}", scene.path("prp.db").display());
        let store = Store::connect(&url, std::sync::Arc::new(prp_host::clock::SystemClock))
            .await
            .expect("connect");
        sqlx::query(
            "CREATE TABLE \"Person\" (\"UID_Person\" VARCHAR(38) PRIMARY KEY, \"FirstName\" TEXT)",
        )
        .execute(store.pool())
        .await
        .expect("table");
    });
    let out = scene.run(&config, &["check"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("identity schema"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].starts_with("FAILED"), "{text}");
    assert!(
        lines[0].contains("lacks 4 of the columns the portal reads: \"CentralAccount\", \"LastName\", \"UID_PersonHead\", \"IsInActive\"; add them with: ALTER TABLE \"Person\" ADD COLUMN \"CentralAccount\" VARCHAR(256);"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn integers_booleans_and_nulls_are_written_as_their_columns_types() {
    for backend in backends() {
        let db = TestDb::new(&backend).await;
        let store = identities(&db).await;
        for column in ["\"Expired\" BOOLEAN", "\"Logons\" INTEGER", "\"Born\" DATE"] {
            sqlx::query(&format!("ALTER TABLE \"ADSAccount\" ADD COLUMN {column}"))
                .execute(store.pool())
                .await
                .expect("column");
        }
        let target = ImportTarget::Accounts("ADSAccount".into());
        let file = "UID_ADSAccount,UID_Person,Expired,Logons\nA-1,P-BOB,TRUE, 5\nA-2,,,\n";
        let report = store
            .import_csv(&target, file.as_bytes(), false)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert_eq!(report.summary(), "added 2, changed 0, unchanged 0");
        let rows: Vec<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT \"UID_ADSAccount\", CAST(CASE WHEN \"Expired\" IS NULL THEN NULL WHEN \"Expired\" THEN 1 ELSE 0 END AS BIGINT), CAST(\"Logons\" AS BIGINT)
             FROM \"ADSAccount\" ORDER BY 1",
        )
        .fetch_all(store.pool())
        .await
        .expect("rows");
        assert_eq!(
            rows,
            [
                ("A-1".to_owned(), Some(1), Some(5)),
                ("A-2".to_owned(), None, None)
            ],
            "{}",
            backend.name()
        );
        let same = "UID_ADSAccount,Expired,Logons\nA-1,1,5\nA-2,,\n";
        let again = store
            .import_csv(&target, same.as_bytes(), false)
            .await
            .expect("again");
        assert_eq!(again.summary(), "added 0, changed 0, unchanged 2");
        let changed = "UID_ADSAccount,Expired,Logons\nA-1,false,\nA-2,0,x\n";
        assert_eq!(
            rows_of(store.import_csv(&target, changed.as_bytes(), false).await),
            [(3, "Logons: \"x\" is not an integer".to_owned())]
        );
        match store
            .import_csv(&target, b"UID_ADSAccount,Born\nA-1,2000-01-01\n", false)
            .await
        {
            Err(ImportError::Header(p)) => {
                assert_eq!(p.len(), 1, "{p:?}");
                assert!(
                    p[0].starts_with("column \"Born\" is of type")
                        && p[0].ends_with("import fills text, integer and boolean columns"),
                    "{p:?}"
                );
            }
            other => panic!("expected a refused header, got {other:?}"),
        }
    }
}
