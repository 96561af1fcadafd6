-- The dashboard's reads with a million mentions (README, "Benchmarks").

-- "Which sources of a watch show owner replies / star ratings": an EXISTS probe per
-- source stops at its first entry in these partial indexes instead of reading every
-- mention of the watch.
CREATE INDEX mentions_source_replied ON mentions (source_id) WHERE owner_reply IS NOT NULL;
CREATE INDEX mentions_source_rated ON mentions (source_id) WHERE rating IS NOT NULL;

-- The unfiltered mention list, newest first, without sorting the whole table.
CREATE INDEX mentions_published_id ON mentions (published_at, id);
