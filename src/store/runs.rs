//! Fetch runs: each pass over a source is recorded with its counts or its error, and a
//! successful pass stores its mentions, its cursor and its run row in one transaction.

use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::ingest::ModelInfo;
use super::{from_ms, now_ms, IngestStats, SourceRow, Store};
use crate::domain::{AggregateRating, FetchErrorKind, ScoredMention};

/// One recorded pass over a source.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FetchRun {
    pub id: i64,
    pub source_id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// running, ok, partial, failed
    pub status: String,
    pub items_seen: i64,
    pub items_new: i64,
    pub items_updated: i64,
    pub items_skipped: i64,
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

/// What a successful fetch brought, for `finish_fetch`.
pub struct RunOutcome<'a> {
    pub batch: &'a [ScoredMention],
    pub model: Option<ModelInfo<'a>>,
    /// The connector's cursor for next time; `None` keeps the current one.
    pub cursor: Option<&'a str>,
    /// Items the connector could not read (malformed), counted but not stored.
    pub skipped: u64,
    pub aggregate: Option<AggregateRating>,
    /// A note worth showing (for example why items were skipped).
    pub note: Option<&'a str>,
    /// Why items may be missing though the fetch kept what it read; the run is partial.
    pub partial: Option<FetchErrorKind>,
}

/// A source with its most recent run, for `zmot status` and the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceStatus {
    pub source_id: i64,
    pub watch: String,
    pub source: String,
    pub kind: String,
    pub enabled: bool,
    pub schedule: String,
    pub last_run: Option<FetchRun>,
    /// The error of the source's scheduled fetch job when its last run failed: it may
    /// say more than the fetch run (the alert check after the fetch failed) or be all
    /// there is (the job failed before it could open a run).
    pub job_error: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub mentions: i64,
}

const RUN_COLUMNS: &str = "id, source_id, started_at, finished_at, status, items_seen, items_new, \
    items_updated, items_skipped, error_kind, error";

impl Store {
    pub async fn start_fetch_run(&self, source_id: i64, worker: &str) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO fetch_runs (source_id, started_at, status, worker)
             VALUES ($1, $2, 'running', $3) RETURNING id",
        )
        .bind(source_id)
        .bind(now_ms())
        .bind(worker)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Closes runs of a source still marked running that started before `before`: their
    /// worker died or was stopped (a live run ends within the job timeout). Nothing of
    /// theirs was stored, since a run stores its batch and closes in one transaction.
    pub async fn interrupt_stale_runs(&self, source_id: i64, before: i64) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE fetch_runs SET status = 'failed', finished_at = $1, error_kind = 'other',
                error = 'interrupted: the worker stopped before the fetch finished; nothing of it was stored'
             WHERE source_id = $2 AND status = 'running' AND started_at < $3",
        )
        .bind(now_ms())
        .bind(source_id)
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Stores what a fetch brought, moves the cursor and closes the run, atomically:
    /// after a crash either all of it is there or none of it (and the next pass
    /// fetches the same items again from the old cursor).
    pub async fn finish_fetch(
        &self,
        run_id: i64,
        source: &SourceRow,
        outcome: RunOutcome<'_>,
    ) -> Result<IngestStats> {
        let mut tx = self.pool.begin().await?;
        let stats = self
            .ingest_in(&mut tx, source, outcome.batch, outcome.model)
            .await?;
        if let Some(cursor) = outcome.cursor {
            sqlx::query("UPDATE sources SET cursor = $1 WHERE id = $2")
                .bind(cursor)
                .bind(source.id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(agg) = outcome.aggregate {
            sqlx::query(
                "INSERT INTO source_ratings (source_id, recorded_at, rating, rating_count)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(source.id)
            .bind(now_ms())
            .bind(agg.rating)
            .bind(agg.count)
            .execute(&mut *tx)
            .await?;
        }
        let partial = outcome
            .partial
            .or((outcome.skipped > 0).then_some(FetchErrorKind::Malformed));
        let status = if partial.is_some() { "partial" } else { "ok" };
        sqlx::query(
            "UPDATE fetch_runs SET finished_at = $1, status = $2, items_seen = $3, items_new = $4,
                items_updated = $5, items_skipped = $6, error_kind = $7, error = $8
             WHERE id = $9",
        )
        .bind(now_ms())
        .bind(status)
        .bind(stats.seen as i64)
        .bind(stats.new as i64)
        .bind(stats.updated as i64)
        .bind(outcome.skipped as i64)
        .bind(partial.map(|kind| kind.as_str()))
        .bind(outcome.note)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stats)
    }

    /// Closes a run that failed; nothing else changes (the cursor stays put).
    pub async fn fail_fetch(&self, run_id: i64, kind: FetchErrorKind, message: &str) -> Result<()> {
        sqlx::query(
            "UPDATE fetch_runs SET finished_at = $1, status = 'failed', error_kind = $2, error = $3
             WHERE id = $4",
        )
        .bind(now_ms())
        .bind(kind.as_str())
        // Error messages may quote what a source sent, control characters included.
        .bind(crate::domain::without_controls(message).as_ref())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Closes as failed the runs of a source that `worker` opened at or after `since`
    /// (epoch ms) and left running: the job that opened them was stopped (timed out) or
    /// panicked before it could close them. Nothing of theirs was stored, since a run
    /// stores its batch and closes in one transaction.
    pub async fn fail_unfinished_fetch_runs(
        &self,
        source_id: i64,
        worker: &str,
        since: i64,
        kind: FetchErrorKind,
        message: &str,
    ) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE fetch_runs SET finished_at = $1, status = 'failed', error_kind = $2, error = $3
             WHERE source_id = $4 AND worker = $5 AND status = 'running' AND started_at >= $6",
        )
        .bind(now_ms())
        .bind(kind.as_str())
        .bind(crate::domain::without_controls(message).as_ref())
        .bind(source_id)
        .bind(worker)
        .bind(since)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// The most recent runs of a source, newest first.
    pub async fn fetch_runs(&self, source_id: i64, limit: i64) -> Result<Vec<FetchRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM fetch_runs WHERE source_id = $1
             ORDER BY started_at DESC, id DESC LIMIT $2"
        ))
        .bind(source_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(fetch_run).collect()
    }

    /// Every source with its latest run and mention count.
    pub async fn source_status(&self) -> Result<Vec<SourceStatus>> {
        let sources = self.sources(None).await?;
        // Kept by ingest (migration 0005), not counted here.
        let counts = sqlx::query("SELECT id, mention_count FROM sources")
            .fetch_all(&self.pool)
            .await?;
        let counts: std::collections::HashMap<i64, i64> = counts
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("mention_count")?)))
            .collect::<Result<_>>()?;
        let latest = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM fetch_runs r
             WHERE r.id = (SELECT MAX(r2.id) FROM fetch_runs r2 WHERE r2.source_id = r.source_id)"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut latest: std::collections::HashMap<i64, FetchRun> = latest
            .iter()
            .map(|r| fetch_run(r).map(|run| (run.source_id, run)))
            .collect::<Result<_>>()?;
        let jobs = sqlx::query("SELECT name, next_run_at, last_status, last_error FROM jobs")
            .fetch_all(&self.pool)
            .await?;
        // Per job name: its next run, and its error when its last run failed.
        let jobs: std::collections::HashMap<String, (Option<i64>, Option<String>)> = jobs
            .iter()
            .map(|r| {
                let failed =
                    r.try_get::<Option<String>, _>("last_status")?.as_deref() == Some("failed");
                let error = r.try_get::<Option<String>, _>("last_error")?;
                Ok((
                    r.try_get("name")?,
                    (r.try_get("next_run_at")?, error.filter(|_| failed)),
                ))
            })
            .collect::<Result<_>>()?;
        Ok(sources
            .into_iter()
            .map(|s| {
                let (next_run_at, job_error) = jobs
                    .get(&crate::store::fetch_job_name(s.id))
                    .cloned()
                    .unwrap_or_default();
                SourceStatus {
                    source_id: s.id,
                    watch: s.watch_name.clone(),
                    source: s.name.clone(),
                    kind: s.kind.clone(),
                    enabled: s.enabled,
                    schedule: s.schedule.clone(),
                    last_run: latest.remove(&s.id),
                    job_error,
                    next_run_at: next_run_at.map(from_ms),
                    mentions: counts.get(&s.id).copied().unwrap_or(0),
                }
            })
            .collect())
    }

    /// The source's own rating as last recorded before `at`.
    pub async fn aggregate_at(
        &self,
        source_id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<AggregateRating>> {
        let row = sqlx::query(
            "SELECT rating, rating_count FROM source_ratings WHERE source_id = $1 AND recorded_at < $2
             ORDER BY recorded_at DESC, id DESC LIMIT 1",
        )
        .bind(source_id)
        .bind(super::to_ms(at))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(AggregateRating {
                rating: r.try_get("rating")?,
                count: r.try_get("rating_count")?,
            })
        })
        .transpose()
    }

    /// The latest published aggregate rating of a source, when it has one.
    pub async fn latest_aggregate(&self, source_id: i64) -> Result<Option<AggregateRating>> {
        self.aggregate_at(source_id, DateTime::<Utc>::MAX_UTC).await
    }
}

/// The scheduler's job name for a source's fetch job.
pub fn fetch_job_name(source_id: i64) -> String {
    format!("fetch:{source_id}")
}

fn fetch_run(r: &AnyRow) -> Result<FetchRun> {
    Ok(FetchRun {
        id: r.try_get("id")?,
        source_id: r.try_get("source_id")?,
        started_at: from_ms(r.try_get("started_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(from_ms),
        status: r.try_get("status")?,
        items_seen: r.try_get("items_seen")?,
        items_new: r.try_get("items_new")?,
        items_updated: r.try_get("items_updated")?,
        items_skipped: r.try_get("items_skipped")?,
        error_kind: r.try_get("error_kind")?,
        error: r.try_get("error")?,
    })
}
