-- Failed logins are counted per (account, address) and per address, with a progressive
-- delay (src/auth/throttle.rs): an attempt before `not_before` is refused unchecked.
-- The old per-account counters ('account:NAME') are no longer read.
ALTER TABLE login_failures ADD COLUMN not_before timestamptz NOT NULL DEFAULT '-infinity';
DELETE FROM login_failures WHERE scope LIKE 'account:%';
