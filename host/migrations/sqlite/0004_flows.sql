-- Login flows (ABI 1.1): attempts in progress, and the factors people enrolled.

-- An attempt at a flow, between two steps. The client holds a random token; only its SHA-256
-- is stored. Each step deletes the row in one statement (so it is taken once) and a passed step
-- inserts a new row under a new token for the next step.
CREATE TABLE prp_login_attempt (
    id_hash     TEXT PRIMARY KEY,
    flow        TEXT NOT NULL,
    step        BIGINT NOT NULL,
    person_uid  TEXT,
    login_name  TEXT NOT NULL,
    -- 1 when the identifying step granted a full session.
    full_grant  BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX prp_login_attempt_expires ON prp_login_attempt (expires_at);

-- What an enrolled factor keeps for its plugin, per person and method, encrypted with the
-- FactorKey (ChaCha20-Poly1305, hex of nonce || ciphertext, bound to person and method).
-- `pending` holds an enrollment until it is confirmed. `last_step` is the last one-time counter
-- accepted (a TOTP time step): a step is accepted only if greater, in one statement.
CREATE TABLE prp_factor (
    person_uid  TEXT NOT NULL,
    method      TEXT NOT NULL,
    data        TEXT,
    pending     TEXT,
    last_step   BIGINT,
    enrolled_at BIGINT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (person_uid, method)
);
