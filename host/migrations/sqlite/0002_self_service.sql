-- Self-service: CSRF tokens of sessions, password history, and the two outboxes.

ALTER TABLE prp_session ADD COLUMN csrf_hash TEXT;

CREATE TABLE prp_password_history (
    source      TEXT NOT NULL,
    account_uid TEXT NOT NULL,
    hash        TEXT NOT NULL,             -- argon2id PHC string of an earlier password
    set_at      BIGINT NOT NULL
);
CREATE INDEX prp_password_history_item ON prp_password_history (source, account_uid, set_at);

-- Password changes for target-system connectors and resolver plugins to act on. No secret:
-- systems that need the new password set it synchronously through a resolver plugin.
CREATE TABLE prp_provisioning_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at   BIGINT NOT NULL,
    event        TEXT NOT NULL,            -- 'password.changed'
    source       TEXT NOT NULL,
    account_uid  TEXT NOT NULL,
    person_uid   TEXT NOT NULL,
    processed_at BIGINT
);

-- Notifications for a mailer to deliver. `secret` carries a passcode half for four-eyes
-- issuing only, and is cleared when delivered; it never reaches the audit log.
CREATE TABLE prp_notification_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at    BIGINT NOT NULL,
    recipient_uid TEXT NOT NULL,
    kind          TEXT NOT NULL,           -- 'password.changed', 'passcode.half'
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    secret        TEXT,
    delivered_at  BIGINT
);
