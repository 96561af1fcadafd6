-- The schedule (cron expression and time zone) a job's next run was computed from, so
-- a changed schedule takes effect at start instead of after the old next run. Rows from
-- before this migration have none and keep their next run.
ALTER TABLE jobs ADD COLUMN schedule TEXT;
