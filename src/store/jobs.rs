//! Scheduled job state: last and next run per job, and a lease so that one worker runs
//! a due job even when several share the database.

use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{database_now, from_ms, Store};

/// A job's stored state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobState {
    pub name: String,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub last_error: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
}

impl Store {
    /// Registers a job with its schedule (any text naming it: expression and time zone)
    /// and its first due time under it. An existing job on the same schedule keeps its
    /// state, so a restart neither re-runs what ran nor forgets what was due; one whose
    /// schedule changed takes `next_run_at`, so the new schedule counts from now rather
    /// than after the old schedule's next run (which may be months away). A job recorded
    /// before schedules were (none stored) learns its schedule and keeps its next run
    /// unless the schedule's comes sooner: what was due stays due, and a schedule whose
    /// meaning changed (crontab's day rule) or that was edited does not wait for the old
    /// turn.
    pub async fn ensure_job(&self, name: &str, schedule: &str, next_run_at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (name, schedule, next_run_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET
                schedule = excluded.schedule,
                next_run_at = CASE WHEN jobs.schedule IS NULL
                                        AND jobs.next_run_at <= excluded.next_run_at
                                   THEN jobs.next_run_at ELSE excluded.next_run_at END
             WHERE jobs.schedule IS NULL OR jobs.schedule <> excluded.schedule",
        )
        .bind(name)
        .bind(schedule)
        .bind(next_run_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims a due job for `worker` for as long as from `now` to `lease_until`. Exactly
    /// one of several workers racing for the same job gets `true` (a single conditional
    /// update on the row).
    ///
    /// `now` and `lease_until` are read on the worker's clock, so only the lease's length
    /// is taken from them: whether the job is due, whether another worker's lease has run
    /// out and when this one ends are all on the database's clock, so that a worker whose
    /// clock is off neither takes over a job another still runs nor runs one early.
    pub async fn claim_job(
        &self,
        name: &str,
        worker: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE jobs SET lease_owner = $1, lease_until = {now} + $2
             WHERE name = $3 AND next_run_at <= {now}
               AND (lease_until IS NULL OR lease_until < {now})",
            now = database_now(self.backend)
        ))
        .bind(worker)
        .bind(lease_until.saturating_sub(now).max(0))
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends a lease this worker holds (a long job keeps its claim) to `lease_ms` from
    /// now on the database's clock, as [`Store::claim_job`] counts it.
    pub async fn renew_job_lease(&self, name: &str, worker: &str, lease_ms: i64) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE jobs SET lease_until = {} + $1 WHERE name = $2 AND lease_owner = $3",
            database_now(self.backend)
        ))
        .bind(lease_ms)
        .bind(name)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a finished run and the next due time, releasing the lease. Ignored when
    /// the lease was lost to another worker (it will record its own run).
    pub async fn finish_job(
        &self,
        name: &str,
        worker: &str,
        ran_at: i64,
        status: &str,
        error: Option<&str>,
        next_run_at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET last_run_at = $1, last_status = $2, last_error = $3, next_run_at = $4,
                lease_owner = NULL, lease_until = NULL
             WHERE name = $5 AND lease_owner = $6",
        )
        .bind(ran_at)
        .bind(status)
        .bind(error)
        .bind(next_run_at)
        .bind(name)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases leases this worker holds without recording a run (shutdown before start).
    pub async fn release_jobs(&self, worker: &str) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn jobs(&self) -> Result<Vec<JobState>> {
        let rows = sqlx::query(
            "SELECT name, last_run_at, last_status, last_error, next_run_at, lease_owner, lease_until
             FROM jobs ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobState {
                    name: r.try_get("name")?,
                    last_run_at: r.try_get::<Option<i64>, _>("last_run_at")?.map(from_ms),
                    last_status: r.try_get("last_status")?,
                    last_error: r.try_get("last_error")?,
                    next_run_at: r.try_get::<Option<i64>, _>("next_run_at")?.map(from_ms),
                    lease_owner: r.try_get("lease_owner")?,
                    lease_until: r.try_get::<Option<i64>, _>("lease_until")?.map(from_ms),
                })
            })
            .collect()
    }
}

impl Store {
    /// Removes fetch-run records and sent emails older than `before` (epoch ms). The
    /// latest run of every source is kept whatever its age; mentions are never removed.
    pub async fn prune(&self, before: i64) -> Result<(u64, u64)> {
        let runs = sqlx::query(
            "DELETE FROM fetch_runs WHERE started_at < $1
               AND id NOT IN (SELECT MAX(id) FROM fetch_runs GROUP BY source_id)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let emails = sqlx::query("DELETE FROM outbox WHERE status = 'sent' AND sent_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok((runs, emails))
    }
}
