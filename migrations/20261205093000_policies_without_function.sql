-- The owner policies and the owner defaults spell out the owner expression instead of calling
-- `pgbridge_current_account()`. Postgres inlines a `LANGUAGE sql` function into the query
-- that uses it by parsing and analysing the function's text again at every planning (the
-- function is looked up, its body parsed, checked and rewritten), and through a transaction
-- pooler every statement is planned on every request: that was about 5 µs of the ~19 µs of
-- planning a note by id. The expression is the function's body, so what the policies admit
-- is unchanged: the transaction-local `pgbridge.account_id`, NULL (so: no rows, and no write
-- passes WITH CHECK) when it is unset or '' after an earlier transaction. The function stays
-- for SQL that asks whose scope it is.
ALTER POLICY notes_owner ON notes
    USING (owner_id = nullif(current_setting('pgbridge.account_id', true), '')::bigint)
    WITH CHECK (owner_id = nullif(current_setting('pgbridge.account_id', true), '')::bigint);
ALTER POLICY note_events_owner ON note_events
    USING (owner_id = nullif(current_setting('pgbridge.account_id', true), '')::bigint)
    WITH CHECK (owner_id = nullif(current_setting('pgbridge.account_id', true), '')::bigint);
ALTER POLICY idempotency_keys_owner ON idempotency_keys
    USING (owner_id = nullif(current_setting('pgbridge.account_id', true), '')::bigint)
    WITH CHECK (owner_id = nullif(current_setting('pgbridge.account_id', true), '')::bigint);

ALTER TABLE notes
    ALTER COLUMN owner_id SET DEFAULT nullif(current_setting('pgbridge.account_id', true), '')::bigint;
ALTER TABLE idempotency_keys
    ALTER COLUMN owner_id SET DEFAULT nullif(current_setting('pgbridge.account_id', true), '')::bigint;
