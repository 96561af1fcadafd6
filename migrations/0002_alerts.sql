-- At most one open alert per condition of a watch. Two workers evaluating the same
-- rules at the same moment cannot both open it: the second insert fails and its
-- transaction (with its email) rolls back.
CREATE UNIQUE INDEX alerts_one_open ON alerts (watch_id, condition_key) WHERE status = 'open';
