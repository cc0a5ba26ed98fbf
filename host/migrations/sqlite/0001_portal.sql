-- The portal's own tables. Operator tables (Person, ADSAccount, ...) are never created here.
-- Times are Unix seconds (UTC); flags are 0/1 integers, the same on SQLite and PostgreSQL.

CREATE TABLE prp_parameter (
    path_key   TEXT PRIMARY KEY NOT NULL,  -- lower-case path, for case-insensitive lookup
    path       TEXT NOT NULL,              -- as the operator wrote it
    value      TEXT,
    enabled    BIGINT NOT NULL DEFAULT 1,
    updated_at BIGINT NOT NULL
);

CREATE TABLE prp_api_key (
    scope      TEXT NOT NULL,              -- 'global', or 'local:<server name>'
    name_key   TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (scope, name_key)
);

CREATE TABLE prp_secret (
    name  TEXT PRIMARY KEY NOT NULL,       -- server-side keys (e.g. for decoy questions)
    value TEXT NOT NULL
);

CREATE TABLE prp_passcode (
    person_uid TEXT PRIMARY KEY NOT NULL,  -- one passcode per person: a new one replaces it
    hash       TEXT NOT NULL,              -- argon2id PHC string
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    issued_by  TEXT NOT NULL,
    failures   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE prp_question (
    id          TEXT PRIMARY KEY NOT NULL,
    person_uid  TEXT NOT NULL,
    question    TEXT NOT NULL,
    answer_hash TEXT NOT NULL,             -- argon2id PHC string of the normalised answer
    sort_order  BIGINT NOT NULL,
    failures    BIGINT NOT NULL DEFAULT 0,
    locked      BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);
CREATE INDEX prp_question_person ON prp_question (person_uid);

CREATE TABLE prp_credential (
    source      TEXT NOT NULL,             -- 'Person' for the central password, else the table
    account_uid TEXT NOT NULL,             -- UID_Person for 'Person', else the account's key
    person_uid  TEXT NOT NULL,
    hash        TEXT NOT NULL,             -- argon2id PHC string
    set_at      BIGINT NOT NULL,
    PRIMARY KEY (source, account_uid)
);
CREATE INDEX prp_credential_person ON prp_credential (person_uid);

CREATE TABLE prp_failure (
    person_uid   TEXT NOT NULL,
    scope        TEXT NOT NULL,            -- 'all', 'password', 'questions', 'passcode'
    window_start BIGINT NOT NULL,
    failures     BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (person_uid, scope)
);

CREATE TABLE prp_session (
    token_hash   TEXT PRIMARY KEY NOT NULL, -- SHA-256 of a 256-bit random token
    person_uid   TEXT NOT NULL,
    method       TEXT NOT NULL,
    kind         TEXT NOT NULL,             -- 'full' or 'reset'
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX prp_session_person ON prp_session (person_uid);

CREATE TABLE prp_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT NOT NULL,
    event       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    method      TEXT,
    login_name  TEXT,
    person_uid  TEXT,
    reason      TEXT,
    actor       TEXT,
    remote_addr TEXT
);
CREATE TRIGGER prp_audit_no_update BEFORE UPDATE ON prp_audit
BEGIN SELECT RAISE(ABORT, 'prp_audit is append-only'); END;
CREATE TRIGGER prp_audit_no_delete BEFORE DELETE ON prp_audit
BEGIN SELECT RAISE(ABORT, 'prp_audit is append-only'); END;
