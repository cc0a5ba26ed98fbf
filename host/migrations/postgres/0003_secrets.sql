-- Secrets over their life: which form a stored password hash is of, and which outbox row holds
-- the second half of a four-eyes passcode (purged when the passcode is used, replaced,
-- invalidated or expires).

-- 1: the hash is of the password's NFKC form; 0: of the password as typed (stored before the
-- portal normalised passwords). A login with a 0 hash verifies the typed form and rehashes.
ALTER TABLE prp_credential ADD COLUMN normalized BIGINT NOT NULL DEFAULT 0;
ALTER TABLE prp_password_history ADD COLUMN normalized BIGINT NOT NULL DEFAULT 0;

ALTER TABLE prp_passcode ADD COLUMN half_notification_id BIGINT;
