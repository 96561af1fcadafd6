-- The feedback loop: what the team did about a mention. One row per triaged mention
-- (no row means "open"), and every change kept in the history.
CREATE TABLE mention_triage (
    mention_id BIGINT PRIMARY KEY REFERENCES mentions(id),
    -- open, acknowledged, replied, resolved, ignored
    status TEXT NOT NULL,
    assignee TEXT,
    note TEXT,
    -- The first change ever made, for "time to first action".
    first_action_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX mention_triage_status ON mention_triage (status);

CREATE TABLE mention_triage_history (
    id {{id}},
    mention_id BIGINT NOT NULL REFERENCES mentions(id),
    status TEXT NOT NULL,
    assignee TEXT,
    note TEXT,
    changed_at BIGINT NOT NULL,
    changed_by TEXT
);
CREATE INDEX mention_triage_history_mention ON mention_triage_history (mention_id, changed_at);

-- The dashboard's mention list filters by watch and label, newest first.
CREATE INDEX sentiments_mention_scored ON sentiments (mention_id, scored_at);
