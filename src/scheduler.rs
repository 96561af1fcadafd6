//! The scheduler behind `zmot run`: cron schedules per job in the watch's time zone,
//! job state in the database (so restarts and several workers agree), a lease per
//! running job, a concurrency limit, and a graceful stop.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::{watch, Semaphore};

use crate::notify::{self, Mailer};
use crate::pipeline::Pipeline;
use crate::store::{fetch_job_name, now_ms, to_ms, Store};

/// What a job does.
#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    /// Fetch one source.
    Fetch { source_id: i64 },
    /// Send what waits in the email outbox.
    Deliver,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub kind: JobKind,
    pub schedule: cron::Schedule,
    pub tz: Tz,
}

impl Job {
    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_after(&self.schedule, self.tz, after)
    }
}

/// The first time strictly after `after` that the schedule names, in `tz`.
pub fn next_after(
    schedule: &cron::Schedule,
    tz: Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    schedule
        .after(&after.with_timezone(&tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

/// The jobs the configuration asks for.
pub async fn plan(pipeline: &Pipeline) -> Result<Vec<Job>> {
    let config = &pipeline.config;
    let mut jobs = Vec::new();
    for s in pipeline.store.sources(None).await? {
        if !s.enabled || s.kind == crate::store::PUSH_KIND {
            continue;
        }
        let tz_name = config
            .watch(&s.watch_name)
            .map(|w| w.timezone(&config.general).to_string())
            .unwrap_or_else(|| config.general.timezone.clone());
        let tz = crate::config::parse_timezone(&tz_name).map_err(anyhow::Error::msg)?;
        let schedule = cron::Schedule::from_str(&s.schedule)
            .map_err(|e| anyhow::anyhow!("source {}: schedule `{}`: {e}", s.name, s.schedule))?;
        jobs.push(Job {
            name: fetch_job_name(s.id),
            kind: JobKind::Fetch { source_id: s.id },
            schedule,
            tz,
        });
    }
    jobs.push(Job {
        name: "deliver".into(),
        kind: JobKind::Deliver,
        schedule: cron::Schedule::from_str("0 * * * * *").expect("valid"),
        tz: Tz::UTC,
    });
    Ok(jobs)
}

/// Runs one job now (the scheduler and the one-shot commands share this).
pub async fn run_job(pipeline: &Pipeline, mailer: &Mailer, job: &Job) -> Result<String> {
    match &job.kind {
        JobKind::Fetch { source_id } => {
            let Some(source) = pipeline.store.source(*source_id).await? else {
                anyhow::bail!("source {source_id} no longer exists");
            };
            let report = pipeline.fetch_source(&source).await?;
            match report.result {
                Ok(stats) => Ok(format!(
                    "{} new, {} updated, {} skipped",
                    stats.new, stats.updated, report.skipped
                )),
                Err(e) => Err(anyhow::anyhow!("{e}")),
            }
        }
        JobKind::Deliver => {
            let r = notify::deliver_due(&pipeline.store, mailer, &pipeline.worker).await?;
            Ok(format!("{} sent, {} to retry", r.sent, r.retrying))
        }
    }
}

/// Settings of the run loop.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How long a claimed job stays claimed without renewal.
    pub lease: Duration,
    /// Jobs running at once, at most.
    pub concurrency: usize,
    /// Longest a fetch may take.
    pub job_timeout: Duration,
    /// How long running jobs may take to finish after a stop signal.
    pub grace: Duration,
    /// How often to look for due jobs.
    pub poll: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            lease: Duration::from_secs(600),
            concurrency: 4,
            job_timeout: Duration::from_secs(300),
            grace: Duration::from_secs(30),
            poll: Duration::from_secs(2),
        }
    }
}

/// Runs due jobs until `stop` turns true, then lets running jobs finish within the grace
/// period.
pub async fn run(
    pipeline: Pipeline,
    mailer: Arc<Mailer>,
    jobs: Vec<Job>,
    opts: RunOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let store: Store = pipeline.store.clone();
    let now = Utc::now();
    for job in &jobs {
        let first = job.next_after(now).map(to_ms).unwrap_or(i64::MAX);
        store.ensure_job(&job.name, first).await?;
    }
    let slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    tracing::info!(jobs = jobs.len(), worker = %pipeline.worker, "scheduler started");
    loop {
        if *stop.borrow() {
            break;
        }
        let states = store.jobs().await?;
        let now = now_ms();
        for job in &jobs {
            let due = states
                .iter()
                .find(|s| s.name == job.name)
                .and_then(|s| s.next_run_at)
                .is_some_and(|t| to_ms(t) <= now);
            if !due {
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            let lease_until = now + opts.lease.as_millis() as i64;
            if !store
                .claim_job(&job.name, &pipeline.worker, now, lease_until)
                .await?
            {
                continue;
            }
            let (p, m, j, timeout) = (
                pipeline.clone(),
                mailer.clone(),
                job.clone(),
                opts.job_timeout,
            );
            running.spawn(async move {
                let started = Utc::now();
                let result = tokio::time::timeout(timeout, run_job(&p, &m, &j)).await;
                let (status, error) = match result {
                    Ok(Ok(summary)) => {
                        tracing::debug!(job = %j.name, "{summary}");
                        ("ok", None)
                    }
                    Ok(Err(e)) => ("failed", Some(format!("{e:#}"))),
                    Err(_) => (
                        "failed",
                        Some(format!("timed out after {}s", timeout.as_secs())),
                    ),
                };
                // Missed slots collapse into this one run: the next run is the next slot
                // after now, not after the slot that was due.
                let next = j.next_after(Utc::now()).map(to_ms).unwrap_or(i64::MAX);
                if let Err(e) = p
                    .store
                    .finish_job(
                        &j.name,
                        &p.worker,
                        to_ms(started),
                        status,
                        error.as_deref(),
                        next,
                    )
                    .await
                {
                    tracing::error!(job = %j.name, "cannot record the job's run: {e:#}");
                }
                drop(permit);
            });
        }
        while let Some(done) = running.try_join_next() {
            if let Err(e) = done {
                tracing::error!("a job panicked: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.poll) => {}
            _ = stop.changed() => {}
        }
    }
    tracing::info!(
        running = running.len(),
        "stopping: waiting for running jobs"
    );
    let drain = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(opts.grace, drain).await.is_err() {
        tracing::warn!("grace period over; abandoning running jobs (their leases will expire)");
        running.abort_all();
    }
    store.release_jobs(&pipeline.worker).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn next_after_uses_the_time_zone() {
        let s = cron::Schedule::from_str("0 0 8 * * Mon").unwrap();
        let tz: Tz = "Europe/Paris".parse().unwrap();
        // Sunday 2026-11-22 12:00 UTC -> Monday 08:00 Paris = 07:00 UTC.
        let after = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let next = next_after(&s, tz, after).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap());
    }
}
