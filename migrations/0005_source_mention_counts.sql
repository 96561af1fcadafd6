-- How many mentions each source holds, kept by the store in the transaction that
-- inserts them: the dashboard shows it for every source on every page, and counting a
-- million rows per request was a quarter of the page time.
ALTER TABLE sources ADD COLUMN mention_count BIGINT NOT NULL DEFAULT 0;
UPDATE sources SET mention_count = (SELECT COUNT(*) FROM mentions m WHERE m.source_id = sources.id);
