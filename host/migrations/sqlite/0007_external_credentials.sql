-- A credential whose password lives in a resolver's own system (the resolver set it): its hash is
-- kept only for the history rule and the item's "last set", never to verify a login.
ALTER TABLE prp_credential ADD COLUMN external BIGINT NOT NULL DEFAULT 0;
ALTER TABLE prp_password_history ADD COLUMN external BIGINT NOT NULL DEFAULT 0;
