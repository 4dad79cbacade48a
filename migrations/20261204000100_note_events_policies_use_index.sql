-- Opening a stream or replaying is an index scan for any account, whatever the other
-- tenants hold. The pruning policies of 20261127000100_accounts_and_ownership.sql applied
-- to every role, so for the scoped role `pgbridge_rls` their `pgbridge_pruning()` was
-- OR'ed with `owner_id = pgbridge_current_account()`, and the `(owner_id, id)` index could
-- not serve that condition: every tenant's events were scanned. They now apply only to
-- members of `pgbridge_pruner` — the service's own role, never `pgbridge_rls` — so a scoped
-- statement sees one policy, an equality on `owner_id`, which the index serves.
DO $$
BEGIN
    CREATE ROLE pgbridge_pruner NOLOGIN NOSUPERUSER NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- another database of this cluster created it first
END
$$;

-- The role that runs the migrations (and the service: see README "Configuration") prunes.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'pgbridge_pruner', 'USAGE') THEN
        EXECUTE format('GRANT pgbridge_pruner TO %I', current_user);
    END IF;
END
$$;

DROP POLICY note_events_prune_read ON note_events;
DROP POLICY note_events_prune_lock ON note_events;
DROP POLICY note_events_prune_delete ON note_events;
CREATE POLICY note_events_prune_read ON note_events FOR SELECT TO pgbridge_pruner
    USING (pgbridge_pruning());
CREATE POLICY note_events_prune_lock ON note_events FOR UPDATE TO pgbridge_pruner
    USING (pgbridge_pruning()) WITH CHECK (false);
CREATE POLICY note_events_prune_delete ON note_events FOR DELETE TO pgbridge_pruner
    USING (pgbridge_pruning());
