-- What each replaced version of a mention showed besides its text and stars: the
-- sentiment of its text (the newest score, as the store shows it) and the time of its
-- owner reply. An edit re-scores the text and the new score overwrites the old one in
-- `sentiments`, so without these a digest of an earlier week could only show an edited
-- review's text with the sentiment of its new text. The store fills them when it keeps
-- a replaced version, in the edit's transaction.
ALTER TABLE mention_revisions ADD COLUMN label TEXT;
ALTER TABLE mention_revisions ADD COLUMN score DOUBLE PRECISION;
ALTER TABLE mention_revisions ADD COLUMN confidence DOUBLE PRECISION;
ALTER TABLE mention_revisions ADD COLUMN owner_reply_at BIGINT;
-- Versions replaced before this migration: the newest score made before the edit, which
-- is still there when the edit was scored by another model; otherwise it was overwritten,
-- and the mention's newest score (of a later text) stands in, as it did before. The
-- reply's time likewise: the mention's current one, when the version had a reply.
UPDATE mention_revisions SET
    label = COALESCE(
        (SELECT s.label FROM sentiments s
         WHERE s.mention_id = mention_revisions.mention_id
           AND s.scored_at < mention_revisions.recorded_at
         ORDER BY s.scored_at DESC, s.model_id LIMIT 1),
        (SELECT s.label FROM sentiments s WHERE s.mention_id = mention_revisions.mention_id
         ORDER BY s.scored_at DESC, s.model_id LIMIT 1)),
    score = COALESCE(
        (SELECT s.score FROM sentiments s
         WHERE s.mention_id = mention_revisions.mention_id
           AND s.scored_at < mention_revisions.recorded_at
         ORDER BY s.scored_at DESC, s.model_id LIMIT 1),
        (SELECT s.score FROM sentiments s WHERE s.mention_id = mention_revisions.mention_id
         ORDER BY s.scored_at DESC, s.model_id LIMIT 1)),
    confidence = COALESCE(
        (SELECT s.confidence FROM sentiments s
         WHERE s.mention_id = mention_revisions.mention_id
           AND s.scored_at < mention_revisions.recorded_at
         ORDER BY s.scored_at DESC, s.model_id LIMIT 1),
        (SELECT s.confidence FROM sentiments s WHERE s.mention_id = mention_revisions.mention_id
         ORDER BY s.scored_at DESC, s.model_id LIMIT 1)),
    owner_reply_at = CASE WHEN owner_reply IS NULL THEN NULL
        ELSE (SELECT m.owner_reply_at FROM mentions m WHERE m.id = mention_revisions.mention_id) END;
-- A digest of an earlier week asks which sources showed owner replies then: versions
-- replaced since then are found by their time, not by reading every revision.
CREATE INDEX mention_revisions_recorded ON mention_revisions (recorded_at);
