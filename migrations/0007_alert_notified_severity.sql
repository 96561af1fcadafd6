-- The highest severity announced for an alert. The stored severity follows the
-- condition up and down; an escalation email goes out only when the condition rises
-- above what the recipients were already told, so a rating that hovers around a
-- threshold does not send the same "RED" email at every crossing.
ALTER TABLE alerts ADD COLUMN notified_severity TEXT;
UPDATE alerts SET notified_severity = severity WHERE last_notified_at IS NOT NULL;
