-- Every severity an alert took, and when. The alert's row holds only its latest
-- severity (it follows the condition up and down), so a digest of an earlier week could
-- only show today's; it shows the one that held at the week's end instead. The store
-- adds a row when it opens an alert and whenever an evaluation changes its severity, in
-- the same transaction; the resolution is the alert's own resolved_at.
CREATE TABLE alert_severity_changes (
    id {{id}},
    alert_id BIGINT NOT NULL REFERENCES alerts(id),
    severity TEXT NOT NULL,
    -- What the alert said when it took this severity ("buyers now see 3.9 stars").
    title TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX alert_severity_changes_alert ON alert_severity_changes (alert_id, changed_at);
-- Alerts opened before this history began: how their severity moved is not known, so
-- their severity and title as they are now stand for their whole life, from opening.
INSERT INTO alert_severity_changes (alert_id, severity, title, changed_at)
SELECT id, severity, title, opened_at FROM alerts;
