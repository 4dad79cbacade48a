-- The resource kit's change-feed trigger (src/resource/feed): any owned resource's table
-- attaches it with three arguments — its events table, the channel to notify, and the
-- events table's item column — and gets its feed from its one migration:
--
--   CREATE TRIGGER task_events_record AFTER INSERT OR UPDATE OR DELETE ON tasks
--   FOR EACH ROW EXECUTE FUNCTION pgbridge_record_event('task_events', 'task_events', 'task_id');
--
-- The resource's table has `id`, `version` and `owner_id`; its events table the shape of
-- `note_events` (id, <item column>, kind, version, at, owner_id). The notification carries
-- the same JSON as the notes' (20261127000100_accounts_and_ownership.sql), with the item
-- column as the item's field.
CREATE FUNCTION pgbridge_record_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    events   text := TG_ARGV[0];
    channel  text := TG_ARGV[1];
    item     text := TG_ARGV[2];
    changed  record;
    kind     text;
    event_id bigint;
    event_at timestamptz;
BEGIN
    -- Event ids must be in commit order (see 20261125000002_note_events.sql): one lock per
    -- events table, held from the id's assignment to the commit.
    PERFORM pg_advisory_xact_lock(hashtextextended(events, 7368196135029716));
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
        kind := 'deleted';
    ELSE
        changed := NEW;
        kind := CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END;
    END IF;
    EXECUTE format(
        'INSERT INTO %I (%I, kind, version, owner_id) VALUES ($1, $2, $3, $4) RETURNING id, at',
        events, item)
    INTO event_id, event_at
    USING changed.id, kind, changed.version, changed.owner_id;
    PERFORM pg_notify(channel, json_build_object(
        'id', event_id,
        item, changed.id,
        'kind', kind,
        'version', changed.version,
        'at', to_char(event_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'owner_id', changed.owner_id
    )::text);
    RETURN NULL;
END
$$;
