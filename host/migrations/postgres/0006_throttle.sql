-- Proof-of-work challenges already spent: a solved challenge buys one attempt, once.
-- Throttle counters for login names, client sources and devices live in prp_failure beside the
-- persons' (their keys start with `n:`, `s:` or `d:`, which no person uid does).
CREATE TABLE prp_pow_spent (
    nonce      TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
