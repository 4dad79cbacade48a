-- Accounts, bearer-token sessions, login throttling, and notes that belong to an account,
-- enforced by Postgres row-level security (see docs/ARCHITECTURE.md, "Who may touch what").

CREATE TABLE accounts (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Lower-case letters, digits, '.', '_', '-' (checked by the application, 3 to 32).
    username      text        NOT NULL,
    -- Argon2id PHC string. NULL: the account cannot log in (the reserved legacy account).
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_username_key UNIQUE (username),
    CONSTRAINT accounts_username_length CHECK (char_length(username) BETWEEN 1 AND 64)
);

-- A bearer token is stored only as its SHA-256: a leaked table cannot be replayed.
CREATE TABLE sessions (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    CONSTRAINT sessions_token_hash_key UNIQUE (token_hash)
);

CREATE INDEX sessions_account_id_idx ON sessions (account_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- Failed logins counted per fixed window, per scope ('account:NAME' or 'address:IP'):
-- kept here, not in process memory, so the limit holds across replicas.
CREATE TABLE login_failures (
    scope        text        NOT NULL,
    window_start timestamptz NOT NULL,
    failures     integer     NOT NULL,
    PRIMARY KEY (scope, window_start)
);

CREATE INDEX login_failures_window_start_idx ON login_failures (window_start);

-- Notes created before accounts existed belong to a reserved account that cannot log in
-- (its name is not a valid username, so no one can sign up as it). An operator reassigns
-- them with one UPDATE, or deletes them.
INSERT INTO accounts (username, password_hash) VALUES ('~legacy', NULL);

-- The owner of the statement's transaction: set with set_config(..., true) per request.
-- NULL (so: no rows) when unset, or when set to '' after an earlier transaction.
CREATE FUNCTION pgbridge_current_account() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('pgbridge.account_id', true), '')::bigint
$$;

ALTER TABLE notes ADD COLUMN owner_id bigint REFERENCES accounts (id) ON DELETE CASCADE;
ALTER TABLE notes DISABLE TRIGGER note_events_record; -- not a change anyone should hear of
UPDATE notes SET owner_id = (SELECT id FROM accounts WHERE username = '~legacy');
ALTER TABLE notes ENABLE TRIGGER note_events_record;
ALTER TABLE notes
    ALTER COLUMN owner_id SET NOT NULL,
    ALTER COLUMN owner_id SET DEFAULT pgbridge_current_account();
CREATE INDEX notes_owner_id_idx ON notes (owner_id, id);

ALTER TABLE note_events ADD COLUMN owner_id bigint;
UPDATE note_events e SET owner_id = coalesce(
    (SELECT n.owner_id FROM notes n WHERE n.id = e.note_id),
    (SELECT id FROM accounts WHERE username = '~legacy'));
ALTER TABLE note_events ALTER COLUMN owner_id SET NOT NULL;
CREATE INDEX note_events_owner_id_idx ON note_events (owner_id, id);

-- Idempotency keys are scoped to their owner and to the route they were used on. The
-- recorded responses are short-lived retry aids: the old, unscoped ones are dropped.
DELETE FROM idempotency_keys;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys
    ADD COLUMN owner_id bigint NOT NULL DEFAULT pgbridge_current_account()
        REFERENCES accounts (id) ON DELETE CASCADE,
    ADD COLUMN route text NOT NULL,
    ADD PRIMARY KEY (owner_id, route, key);

-- The event now carries its owner, so streams filter live events and replays by owner.
CREATE OR REPLACE FUNCTION note_events_record() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event note_events;
BEGIN
    -- Event ids must be in commit order (see 20261125000002_note_events.sql).
    PERFORM pg_advisory_xact_lock(7368196135029716);
    IF TG_OP = 'DELETE' THEN
        INSERT INTO note_events (note_id, kind, version, owner_id)
        VALUES (OLD.id, 'deleted', OLD.version, OLD.owner_id)
        RETURNING * INTO event;
    ELSE
        INSERT INTO note_events (note_id, kind, version, owner_id)
        VALUES (NEW.id, CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END,
                NEW.version, NEW.owner_id)
        RETURNING * INTO event;
    END IF;
    PERFORM pg_notify('note_events', json_build_object(
        'id', event.id,
        'note_id', event.note_id,
        'kind', event.kind,
        'version', event.version,
        'at', to_char(event.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'owner_id', event.owner_id
    )::text);
    RETURN NULL;
END
$$;

-- Row-level security. Each request's statements run as `pgbridge_rls` (SET LOCAL ROLE, in
-- the request's transaction): a role that is neither superuser nor BYPASSRLS nor the
-- tables' owner, so the policies always apply to it — even when the service itself
-- connects as a superuser, as the tests and the compose file's default user do. FORCE
-- makes them apply to the tables' owner too. Roles are cluster-wide: every database of
-- the cluster that runs these migrations shares the one role (its grants are per table).
DO $$
BEGIN
    CREATE ROLE pgbridge_rls NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- another database of this cluster created it first
END
$$;

DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'pgbridge_rls', 'MEMBER') THEN
        EXECUTE format('GRANT pgbridge_rls TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO pgbridge_rls;
GRANT SELECT, INSERT, UPDATE, DELETE ON notes, idempotency_keys TO pgbridge_rls;
GRANT SELECT, INSERT ON note_events TO pgbridge_rls;
-- One row for every owner (20261127000001_note_events_horizon.sql): replays read it in a scope.
GRANT SELECT ON note_events_horizon TO pgbridge_rls;
GRANT EXECUTE ON FUNCTION pgbridge_current_account() TO pgbridge_rls;

ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY notes_owner ON notes
    USING (owner_id = pgbridge_current_account())
    WITH CHECK (owner_id = pgbridge_current_account());

ALTER TABLE note_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE note_events FORCE ROW LEVEL SECURITY;
CREATE POLICY note_events_owner ON note_events
    USING (owner_id = pgbridge_current_account())
    WITH CHECK (owner_id = pgbridge_current_account());

-- Pruning old events (apps/notes/events/replay.rs) runs in no owner's scope, as the
-- service's own role, which FORCE confines too when it owns the tables. It marks its
-- transaction with the transaction-local setting `pgbridge.pruning`; these policies then
-- let it read, lock (FOR UPDATE) and delete any owner's events, and nothing else: they
-- never admit an INSERT or an UPDATE's new row, and never the scoped role.
CREATE FUNCTION pgbridge_pruning() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(current_setting('pgbridge.pruning', true) = 'on', false)
       AND current_user <> 'pgbridge_rls'
$$;
GRANT EXECUTE ON FUNCTION pgbridge_pruning() TO pgbridge_rls;
CREATE POLICY note_events_prune_read ON note_events FOR SELECT
    USING (pgbridge_pruning());
CREATE POLICY note_events_prune_lock ON note_events FOR UPDATE
    USING (pgbridge_pruning()) WITH CHECK (false);
CREATE POLICY note_events_prune_delete ON note_events FOR DELETE
    USING (pgbridge_pruning());

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY idempotency_keys_owner ON idempotency_keys
    USING (owner_id = pgbridge_current_account())
    WITH CHECK (owner_id = pgbridge_current_account());
