-- How far old events have been pruned: every event with an id up to `pruned_through` may be
-- gone. A reader replaying "after id N" with N < pruned_through cannot be given a complete
-- replay and is told to reset instead. Updated in the pruning transaction, so a reader's
-- snapshot sees the deletion and the new horizon together.
CREATE TABLE note_events_horizon (
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    pruned_through bigint  NOT NULL DEFAULT 0
);

INSERT INTO note_events_horizon DEFAULT VALUES;
