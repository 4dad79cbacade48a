-- gadgets: an owned resource of the resource kit (src/resource/), as scripts/new-resource
-- writes one: the table, its change feed, row-level security and grants.
CREATE TABLE gadgets (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id   bigint      NOT NULL DEFAULT nullif(current_setting('pgbridge.account_id', true), '')::bigint
                           REFERENCES accounts (id) ON DELETE CASCADE,
    title      text        NOT NULL,
    done       boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Bumped by every update; the ETag, and what If-Match is checked against.
    version    integer     NOT NULL DEFAULT 1,
    -- The application validates first and answers 422; this is the last line of defence.
    CONSTRAINT gadgets_title_length CHECK (char_length(title) BETWEEN 1 AND 200)
);
CREATE INDEX gadgets_owner_id_idx ON gadgets (owner_id, id);

-- The change feed: every change recorded and notified by the kit's trigger.
CREATE TABLE gadget_events (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gadget_id bigint      NOT NULL,
    kind      text        NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
    version   integer     NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    owner_id  bigint      NOT NULL
);
CREATE INDEX gadget_events_owner_id_idx ON gadget_events (owner_id, id);
CREATE INDEX gadget_events_gadget_id_idx ON gadget_events (gadget_id, id);
CREATE TABLE gadget_events_horizon (
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    pruned_through bigint  NOT NULL DEFAULT 0
);
INSERT INTO gadget_events_horizon DEFAULT VALUES;
CREATE TRIGGER gadget_events_record
AFTER INSERT OR UPDATE OR DELETE ON gadgets
FOR EACH ROW EXECUTE FUNCTION pgbridge_record_event('gadget_events', 'gadget_events', 'gadget_id');

-- Who may touch what: each request runs as pgbridge_rls in its owner's scope.
GRANT SELECT, INSERT, UPDATE, DELETE ON gadgets TO pgbridge_rls;
GRANT SELECT, INSERT ON gadget_events TO pgbridge_rls;
GRANT SELECT ON gadget_events_horizon TO pgbridge_rls;
ALTER TABLE gadgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE gadgets FORCE ROW LEVEL SECURITY;
CREATE POLICY gadgets_owner ON gadgets
    USING (owner_id = nullif(current_setting('pgbridge.account_id', true), '')::bigint)
    WITH CHECK (owner_id = nullif(current_setting('pgbridge.account_id', true), '')::bigint);
ALTER TABLE gadget_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE gadget_events FORCE ROW LEVEL SECURITY;
CREATE POLICY gadget_events_owner ON gadget_events
    USING (owner_id = nullif(current_setting('pgbridge.account_id', true), '')::bigint)
    WITH CHECK (owner_id = nullif(current_setting('pgbridge.account_id', true), '')::bigint);
CREATE POLICY gadget_events_prune_read ON gadget_events FOR SELECT TO pgbridge_pruner
    USING (pgbridge_pruning());
CREATE POLICY gadget_events_prune_lock ON gadget_events FOR UPDATE TO pgbridge_pruner
    USING (pgbridge_pruning()) WITH CHECK (false);
CREATE POLICY gadget_events_prune_delete ON gadget_events FOR DELETE TO pgbridge_pruner
    USING (pgbridge_pruning());
