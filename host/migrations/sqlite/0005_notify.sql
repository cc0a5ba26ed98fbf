-- Delivery of the notification outbox over SMTP: what each message is about (rendered in the
-- recipient's language at delivery), which server holds it, its retries, and how it ended.

-- JSON with the event's facts (e.g. the accounts of a password change); NULL in rows written
-- before this migration, which are delivered with their stored subject and body.
ALTER TABLE prp_notification_outbox ADD COLUMN data TEXT;
-- Delivery attempts so far, and when the next may start (Unix seconds).
ALTER TABLE prp_notification_outbox ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE prp_notification_outbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
-- The worker that holds the row, until when: another server takes it only after that.
ALTER TABLE prp_notification_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE prp_notification_outbox ADD COLUMN claimed_until BIGINT;
-- The Message-ID it was sent with (the same on every attempt).
ALTER TABLE prp_notification_outbox ADD COLUMN message_id TEXT;
-- Set instead of delivered_at when it will never be delivered (no address, refused, withdrawn).
ALTER TABLE prp_notification_outbox ADD COLUMN undeliverable_at BIGINT;
-- Why the last attempt failed, or why it is undeliverable (never a secret).
ALTER TABLE prp_notification_outbox ADD COLUMN last_error TEXT;

CREATE INDEX prp_notification_outbox_due ON prp_notification_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND undeliverable_at IS NULL;
