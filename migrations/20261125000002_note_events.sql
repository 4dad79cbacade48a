-- An append-only log of note changes, and a NOTIFY for each, in the changing transaction.
CREATE TABLE note_events (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    note_id bigint      NOT NULL,
    kind    text        NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
    version integer     NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX note_events_note_id_idx ON note_events (note_id, id);

CREATE FUNCTION note_events_record() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event note_events;
BEGIN
    -- Event ids must be in commit order, or a reader replaying "id > last seen" could skip
    -- an event whose transaction took its id earlier but committed later. Holding this lock
    -- from the id's assignment to the commit makes the two orders the same.
    PERFORM pg_advisory_xact_lock(7368196135029716);
    IF TG_OP = 'DELETE' THEN
        INSERT INTO note_events (note_id, kind, version)
        VALUES (OLD.id, 'deleted', OLD.version)
        RETURNING * INTO event;
    ELSE
        INSERT INTO note_events (note_id, kind, version)
        VALUES (NEW.id, CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END, NEW.version)
        RETURNING * INTO event;
    END IF;
    PERFORM pg_notify('note_events', json_build_object(
        'id', event.id,
        'note_id', event.note_id,
        'kind', event.kind,
        'version', event.version,
        'at', to_char(event.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    )::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER note_events_record
AFTER INSERT OR UPDATE OR DELETE ON notes
FOR EACH ROW EXECUTE FUNCTION note_events_record();
