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

use crate::config::Schedule;
use crate::domain::FetchErrorKind;
use crate::health::Metrics;
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
    /// Remove old fetch-run records and sent emails (`general.retention_days`).
    Housekeeping,
    /// Evaluate a watch's alert rules (also run right after a fetch that brought new
    /// mentions; hourly so conditions that clear with time are resolved).
    Check { watch: String },
    /// Queue a watch's weekly digest (once per week, whatever the number of workers).
    Digest { watch: String },
    /// Panics with the message: a bug in a job, for the scheduler's own tests.
    #[cfg(test)]
    Panic { message: &'static str },
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub kind: JobKind,
    pub schedule: Schedule,
    pub tz: Tz,
}

impl Job {
    /// What the job runs on, as stored with its state: a change restarts its count.
    pub fn schedule_key(&self) -> String {
        format!("{} {}", self.schedule.expression(), self.tz)
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_after(&self.schedule, self.tz, after)
    }
}

/// The first run strictly after `after` of a wall-clock schedule in `tz`.
///
/// Schedules name wall-clock times, and each wall-clock slot runs once, also across
/// daylight-saving changes: a slot that does not exist (the hour skipped in spring) runs
/// when the clock has moved past the gap (02:30 becomes 03:30), and a slot that exists
/// twice (the hour repeated in autumn) runs at its first occurrence only.
pub fn next_after(schedule: &Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule
        .alternatives()
        .iter()
        .filter_map(|s| next_after_one(s, tz, after))
        .min()
}

/// [`next_after`] for one cron schedule.
fn next_after_one(
    schedule: &cron::Schedule,
    tz: Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    use chrono::offset::LocalResult;
    use chrono::TimeZone;
    // Walk the schedule over naive wall-clock times (carried in a UTC value so the cron
    // crate applies no offset rules of its own), then place each on the real time line.
    let wall = after.with_timezone(&tz).naive_local().and_utc();
    for slot in schedule.after(&wall).take(10_000) {
        let naive = slot.naive_utc();
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => {
                let t = t.with_timezone(&Utc);
                if t > after {
                    return Some(t);
                }
            }
            LocalResult::Ambiguous(first, _) => {
                let first = first.with_timezone(&Utc);
                if first > after {
                    return Some(first);
                }
                // The first occurrence has passed: this slot already had its turn.
            }
            LocalResult::None => {
                // In a gap: shift by the gap's length (02:30 in a one-hour gap runs at
                // 03:30), measured from the offsets on either side of it.
                use chrono::Offset;
                let offset = |n: chrono::NaiveDateTime| {
                    tz.from_local_datetime(&n)
                        .earliest()
                        .map(|t| t.offset().fix().local_minus_utc())
                };
                let before = offset(naive - chrono::Duration::hours(6));
                let after_gap = offset(naive + chrono::Duration::hours(6));
                if let (Some(b), Some(a)) = (before, after_gap) {
                    let shifted = naive + chrono::Duration::seconds(i64::from(a - b));
                    if let Some(t) = tz.from_local_datetime(&shifted).earliest() {
                        let t = t.with_timezone(&Utc);
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
        }
    }
    None
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
        let schedule = Schedule::from_str(&s.schedule)
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
        // Every ten seconds: alerts should not wait long for the mail server.
        schedule: Schedule::from_str("*/10 * * * * *").expect("valid"),
        tz: Tz::UTC,
    });
    for w in &config.watches {
        jobs.push(Job {
            name: format!("check:{}", w.name),
            kind: JobKind::Check {
                watch: w.name.clone(),
            },
            schedule: Schedule::from_str("0 7 * * * *").expect("valid"),
            tz: Tz::UTC,
        });
    }
    for w in config.watches.iter().filter(|w| w.digest.enabled) {
        let tz = crate::config::parse_timezone(w.timezone(&config.general))
            .map_err(anyhow::Error::msg)?;
        let schedule = crate::config::parse_schedule(&w.digest.schedule)
            .map_err(|e| anyhow::anyhow!("watch {}: digest schedule: {e}", w.name))?;
        jobs.push(Job {
            name: format!("digest:{}", w.name),
            kind: JobKind::Digest {
                watch: w.name.clone(),
            },
            schedule,
            tz,
        });
    }
    jobs.push(Job {
        name: "housekeeping".into(),
        kind: JobKind::Housekeeping,
        schedule: Schedule::from_str("0 17 3 * * *").expect("valid"),
        tz: Tz::UTC,
    });
    Ok(jobs)
}

/// What a job that ran reports.
#[derive(Debug, Clone, Default)]
pub struct JobDone {
    pub summary: String,
    /// How long the job's source asked to be left alone although the fetch kept what it
    /// read (a page rate limited after others, with `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl From<String> for JobDone {
    fn from(summary: String) -> Self {
        JobDone {
            summary,
            retry_after: None,
        }
    }
}

/// How a job's run ended.
#[derive(Debug)]
enum Ended {
    /// The job returned: its own success or error.
    Returned(Result<JobDone>),
    /// It ran past the job timeout and was stopped.
    TimedOut(Duration),
    /// It panicked (a bug), with the panic's message.
    Panicked(String),
}

impl Ended {
    /// Runs `job` within `timeout`, catching a panic so that it ends the job, not the
    /// worker's record of it (the claim would otherwise be held until the lease expires).
    async fn run(
        pipeline: &Pipeline,
        mailer: &Mailer,
        job: &Job,
        metrics: &Metrics,
        timeout: Duration,
    ) -> Ended {
        use futures::FutureExt;
        // Unwind safety: what a job changes lives in the database, where a transaction
        // it had open rolls back when dropped; in memory it shares only immutable state
        // and atomic counters.
        let guarded =
            std::panic::AssertUnwindSafe(run_job(pipeline, mailer, job, metrics)).catch_unwind();
        match tokio::time::timeout(timeout, guarded).await {
            Ok(Ok(result)) => Ended::Returned(result),
            Ok(Err(payload)) => Ended::Panicked(panic_message(payload.as_ref())),
            Err(_) => Ended::TimedOut(timeout),
        }
    }

    /// The error to record, for a run that did not succeed.
    fn error(&self) -> Option<String> {
        match self {
            Ended::Returned(Ok(_)) => None,
            Ended::Returned(Err(e)) => Some(format!("{e:#}")),
            Ended::TimedOut(timeout) => Some(format!(
                "timed out after {} s (general.job_timeout_secs) and was stopped",
                timeout.as_secs()
            )),
            Ended::Panicked(message) => Some(format!("panicked: {message}")),
        }
    }

    /// How long the job's source asked to be left alone: a failed fetch's, or a partial
    /// one's (nothing for other results).
    fn retry_after(&self) -> chrono::Duration {
        let asked = match self {
            Ended::Returned(Ok(done)) => done.retry_after,
            Ended::Returned(Err(e)) => e
                .downcast_ref::<crate::sources::FetchError>()
                .and_then(|f| f.retry_after)
                .or_else(|| {
                    e.downcast_ref::<AlertCheckFailed>()
                        .and_then(|a| a.retry_after)
                }),
            Ended::TimedOut(_) | Ended::Panicked(_) => None,
        };
        retry_wait(asked)
    }
}

/// A fetch stored what it read but the alert check after it failed: the error says so,
/// and carries the wait the source asked for, which the failure must not lose.
#[derive(Debug)]
struct AlertCheckFailed {
    retry_after: Option<Duration>,
}

impl std::fmt::Display for AlertCheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the fetch was stored, but the alert check after it failed"
        )?;
        if let Some(wait) = self.retry_after {
            write!(f, " (the source asks to wait {} s)", wait.as_secs())?;
        }
        Ok(())
    }
}

/// The text a panic was raised with (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// How long the scheduler waits for a source that asked to be left alone for `asked`.
/// A day at most: a server's mistaken "come back next year" must not silence a source
/// for good without anyone changing the configuration.
pub fn retry_wait(asked: Option<Duration>) -> chrono::Duration {
    asked
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .unwrap_or_else(chrono::Duration::zero)
        .min(chrono::Duration::days(1))
}

/// Runs one job now (the scheduler and the one-shot commands share this).
pub async fn run_job(
    pipeline: &Pipeline,
    mailer: &Mailer,
    job: &Job,
    metrics: &Metrics,
) -> Result<JobDone> {
    match &job.kind {
        JobKind::Fetch { source_id } => {
            let Some(source) = pipeline.store.source(*source_id).await? else {
                anyhow::bail!("source {source_id} no longer exists");
            };
            Metrics::add(&metrics.fetch_runs, 1);
            let report = pipeline.fetch_source(&source).await?;
            match report.result {
                Ok(stats) => {
                    Metrics::add(&metrics.mentions_ingested, stats.new);
                    let mut summary = format!(
                        "{} new, {} updated, {} skipped",
                        stats.new, stats.updated, report.skipped
                    );
                    if stats.new + stats.updated > 0 {
                        // New mentions may raise (or clear) alerts: evaluate now rather
                        // than at the next hourly check.
                        let r = crate::alerts::check_watch(
                            &pipeline.store,
                            &pipeline.config,
                            &source.watch_name,
                            Utc::now(),
                        )
                        .await
                        .map_err(|e| {
                            // The job fails, but the source's own wait still holds.
                            e.context(AlertCheckFailed {
                                retry_after: report.retry_after,
                            })
                        })?;
                        summary.push_str(&format!(
                            "; alerts: {} opened, {} resolved",
                            r.opened, r.resolved
                        ));
                    }
                    if let Some(wait) = report.retry_after {
                        summary
                            .push_str(&format!("; the source asks to wait {} s", wait.as_secs()));
                    }
                    Ok(JobDone {
                        summary,
                        retry_after: report.retry_after,
                    })
                }
                Err(e) => {
                    Metrics::add(&metrics.fetch_failures, 1);
                    // Kept as a FetchError so the scheduler can honour its Retry-After.
                    Err(anyhow::Error::new(e))
                }
            }
        }
        JobKind::Deliver => {
            let r = notify::deliver_due(&pipeline.store, mailer, &pipeline.worker).await?;
            Metrics::add(&metrics.emails_sent, r.sent);
            Metrics::add(&metrics.email_failures, r.retrying + r.gave_up + r.refused);
            Ok(format!(
                "{} sent, {} to retry, {} recipient(s) refused",
                r.sent, r.retrying, r.refused
            )
            .into())
        }
        JobKind::Check { watch } => {
            let r =
                crate::alerts::check_watch(&pipeline.store, &pipeline.config, watch, Utc::now())
                    .await?;
            Ok(format!(
                "{} opened, {} reminded, {} resolved",
                r.opened, r.reminded, r.resolved
            )
            .into())
        }
        JobKind::Digest { watch } => {
            match crate::digest::queue(&pipeline.store, &pipeline.config, watch, None, Utc::now())
                .await?
            {
                crate::digest::Queued::Queued { email_id } => {
                    Ok(format!("digest queued (outbox #{email_id})").into())
                }
                crate::digest::Queued::AlreadySent => {
                    Ok(String::from("already queued this week").into())
                }
                crate::digest::Queued::Skipped(why) => Ok(format!("skipped: {why}").into()),
            }
        }
        JobKind::Housekeeping => {
            let days = i64::from(pipeline.config.general.retention_days);
            let before = now_ms() - days * 86_400_000;
            let (runs, emails) = pipeline.store.prune(before).await?;
            Ok(format!("removed {runs} old fetch runs and {emails} sent emails").into())
        }
        #[cfg(test)]
        JobKind::Panic { message } => panic!("{message}"),
    }
}

/// Settings of the run loop.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How long a claimed job stays claimed without renewal.
    pub lease: Duration,
    /// Fetches running at once, at most; the other jobs have as many slots of their own.
    pub concurrency: usize,
    /// Longest a fetch may take.
    pub job_timeout: Duration,
    /// How long running jobs may take to finish after a stop signal.
    pub grace: Duration,
    /// How often to look for due jobs.
    pub poll: Duration,
}

impl RunOptions {
    pub fn from_config(general: &crate::config::General) -> RunOptions {
        RunOptions {
            concurrency: general.max_concurrent_jobs,
            job_timeout: Duration::from_secs(general.job_timeout_secs),
            grace: Duration::from_secs(general.shutdown_grace_secs),
            // A lease outlives the longest job, so only a dead worker loses one.
            lease: Duration::from_secs(general.job_timeout_secs * 2 + 60),
            ..RunOptions::default()
        }
    }
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
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let store: Store = pipeline.store.clone();
    let now = Utc::now();
    for job in &jobs {
        let first = job.next_after(now).map(to_ms).unwrap_or(i64::MAX);
        store
            .ensure_job(&job.name, &job.schedule_key(), first)
            .await?;
    }
    // Fetches have `concurrency` slots, and the other jobs (delivery, alert checks,
    // digests, housekeeping) as many of their own: fetches slow enough to fill theirs
    // must not delay an alert, which asks for action now.
    let fetch_slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let other_slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    tracing::info!(jobs = jobs.len(), worker = %pipeline.worker, "scheduler started");
    loop {
        // Seen here, so only a later signal (a second stop) wakes the wait below.
        if *stop.borrow_and_update() {
            break;
        }
        // A database that is down or restarting fails this poll, not the scheduler: the
        // running jobs go on, and the next poll tries again.
        let states = match store.jobs().await {
            Ok(states) => states,
            Err(e) => {
                tracing::warn!("cannot read the job table: {e:#}; trying again");
                Vec::new()
            }
        };
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
            let slots = match job.kind {
                JobKind::Fetch { .. } => &fetch_slots,
                _ => &other_slots,
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let lease_until = now + opts.lease.as_millis() as i64;
            match store
                .claim_job(&job.name, &pipeline.worker, now, lease_until)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(job = %job.name, "cannot claim the job: {e:#}; trying again");
                    continue;
                }
            }
            let (p, m, j, timeout) = (
                pipeline.clone(),
                mailer.clone(),
                job.clone(),
                opts.job_timeout,
            );
            let metrics = metrics.clone();
            running.spawn(async move {
                let started = Utc::now();
                Metrics::add(&metrics.job_runs, 1);
                let ended = Ended::run(&p, &m, &j, &metrics, timeout).await;
                let error = ended.error();
                match &ended {
                    Ended::Returned(Ok(done)) => tracing::debug!(job = %j.name, "{}", done.summary),
                    Ended::Returned(Err(_)) => {}
                    Ended::TimedOut(_) | Ended::Panicked(_) => {
                        let error = error.as_deref().unwrap_or_default();
                        if matches!(ended, Ended::Panicked(_)) {
                            tracing::error!(job = %j.name, "{error}");
                        } else {
                            tracing::warn!(job = %j.name, "{error}");
                        }
                        if let JobKind::Fetch { source_id } = &j.kind {
                            // The fetch was stopped before it could close its run: close it
                            // now, so the source does not show `running` until its next run.
                            Metrics::add(&metrics.fetch_failures, 1);
                            let message = format!("{error}; nothing of it was stored");
                            if let Err(e) = p
                                .store
                                .fail_unfinished_fetch_runs(
                                    *source_id,
                                    &p.worker,
                                    to_ms(started),
                                    FetchErrorKind::Other,
                                    &message,
                                )
                                .await
                            {
                                tracing::error!(job = %j.name, "cannot close the fetch run: {e:#}");
                            }
                        }
                    }
                }
                if error.is_some() {
                    Metrics::add(&metrics.job_failures, 1);
                }
                let asked_to_wait = ended.retry_after();
                let status = if error.is_some() { "failed" } else { "ok" };
                // Missed slots collapse into this one run: the next run is the next slot
                // after now, not after the slot that was due; and not before a source
                // that asked to be left alone for longer (Retry-After) says it may be
                // asked again, so a 5-minute schedule does not knock 12 times an hour
                // on a server that asked for an hour.
                let not_before = Utc::now() + asked_to_wait;
                let next = j.next_after(not_before).map(to_ms).unwrap_or(i64::MAX);
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
    // A second stop (another Ctrl-C or SIGTERM) ends the wait: the operator does not
    // want to wait for the grace period.
    let abandon = tokio::select! {
        drained = tokio::time::timeout(opts.grace, drain) => drained.is_err(),
        Ok(()) = stop.changed() => true,
    };
    if abandon {
        // An abandoned job records nothing: it is not done, and its claim is released
        // below so that it runs again at once rather than after its lease.
        tracing::warn!(running = running.len(), "abandoning running jobs");
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
    store.release_jobs(&pipeline.worker).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn runs(expr: &str, tz: &str, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let s = crate::config::parse_schedule(expr).unwrap();
        let tz: Tz = tz.parse().unwrap();
        let mut out = Vec::new();
        let mut t = from;
        while let Some(n) = next_after(&s, tz, t) {
            if n >= until {
                break;
            }
            out.push(n);
            t = n;
        }
        out
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn spring_forward_neither_skips_nor_doubles() {
        // Paris, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        let r = runs(
            "30 2 * * *",
            "Europe/Paris",
            utc(2026, 3, 27, 12, 0),
            utc(2026, 3, 31, 0, 0),
        );
        assert_eq!(
            r,
            vec![
                utc(2026, 3, 28, 1, 30), // 02:30 CET
                utc(2026, 3, 29, 1, 30), // 03:30 CEST: the missing 02:30, once
                utc(2026, 3, 30, 0, 30), // 02:30 CEST
            ]
        );
        // New York, 2026-03-08, an hourly job: one run per existing wall-clock hour.
        let r = runs(
            "0 * * * *",
            "America/New_York",
            utc(2026, 3, 8, 5, 30),
            utc(2026, 3, 8, 9, 30),
        );
        assert_eq!(
            r,
            vec![
                utc(2026, 3, 8, 6, 0),
                utc(2026, 3, 8, 7, 0),
                utc(2026, 3, 8, 8, 0),
                utc(2026, 3, 8, 9, 0)
            ]
        );
    }

    #[test]
    fn fall_back_neither_skips_nor_doubles() {
        // Paris, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
        let r = runs(
            "30 2 * * *",
            "Europe/Paris",
            utc(2026, 10, 23, 12, 0),
            utc(2026, 10, 27, 0, 0),
        );
        assert_eq!(
            r,
            vec![
                utc(2026, 10, 24, 0, 30), // 02:30 CEST
                utc(2026, 10, 25, 0, 30), // 02:30 CEST, first occurrence only
                utc(2026, 10, 26, 1, 30), // 02:30 CET
            ]
        );
        // Restarted during the repeated hour after missing the first 02:30: the catch-up
        // run is that day's run; the second 02:30 does not run again.
        let r = runs(
            "30 2 * * *",
            "Europe/Paris",
            utc(2026, 10, 25, 1, 15),
            utc(2026, 10, 26, 12, 0),
        );
        assert_eq!(r, vec![utc(2026, 10, 26, 1, 30)]);
    }

    #[test]
    fn a_day_of_the_month_or_a_weekday_runs_like_crontab() {
        // The 1st and every Monday at 08:00 Paris, from Friday 27 November 2026: Monday
        // 30 November, Tuesday 1 December, Monday 7 December (not only Mondays that are
        // the 1st, which is what the cron crate alone would run: none until June 2027).
        let r = runs(
            "0 8 1 * Mon",
            "Europe/Paris",
            utc(2026, 11, 27, 0, 0),
            utc(2026, 12, 10, 0, 0),
        );
        assert_eq!(
            r,
            vec![
                utc(2026, 11, 30, 7, 0),
                utc(2026, 12, 1, 7, 0),
                utc(2026, 12, 7, 7, 0)
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_is_recorded_failed_released_and_the_others_run() {
        for db in crate::testutil::all().await.unwrap() {
            let store = db.store.clone();
            let to = vec!["lead@example.com".to_string()];
            for key in ["a", "b"] {
                store
                    .enqueue_email(&crate::store::NewEmail {
                        kind: "alert",
                        dedup_key: Some(key),
                        watch_id: None,
                        recipients: &to,
                        subject: "s",
                        message: "Subject: s\r\n\r\nbody\r\n",
                    })
                    .await
                    .unwrap();
            }
            let outbox = tempfile::tempdir().unwrap();
            let mut pipeline = Pipeline::new(
                store.clone(),
                Arc::new(crate::config::Config::default()),
                None,
            )
            .unwrap();
            pipeline.worker = "w".into();
            let every_second = |name: &str, kind| Job {
                name: name.into(),
                kind,
                schedule: Schedule::from_str("* * * * * *").unwrap(),
                tz: Tz::UTC,
            };
            let jobs = vec![
                every_second(
                    "buggy",
                    JobKind::Panic {
                        message: "a bug in the job",
                    },
                ),
                every_second("deliver", JobKind::Deliver),
            ];
            let opts = RunOptions {
                // Far beyond the test: a claim the panic kept would block every later run.
                lease: Duration::from_secs(120),
                concurrency: 2,
                job_timeout: Duration::from_secs(20),
                grace: Duration::from_secs(5),
                poll: Duration::from_millis(50),
            };
            let metrics = Arc::new(Metrics::default());
            let (stop, stopped) = watch::channel(false);
            let worker = tokio::spawn(run(
                pipeline,
                Arc::new(Mailer::Folder(outbox.path().to_path_buf())),
                jobs,
                opts,
                metrics.clone(),
                stopped,
            ));
            tokio::time::sleep(Duration::from_millis(3500)).await;
            stop.send(true).unwrap();
            worker.await.unwrap().unwrap();

            let states = store.jobs().await.unwrap();
            let buggy = states.iter().find(|j| j.name == "buggy").unwrap();
            assert_eq!(buggy.last_status.as_deref(), Some("failed"), "{}", db.label);
            assert_eq!(
                buggy.last_error.as_deref(),
                Some("panicked: a bug in the job")
            );
            assert!(buggy.lease_owner.is_none(), "{buggy:?}");
            // Released at once, it ran at its next slots: about once a second.
            let failures = metrics
                .job_failures
                .load(std::sync::atomic::Ordering::Relaxed);
            assert!(failures >= 2, "{failures} runs on {}", db.label);
            let next = buggy.next_run_at.unwrap();
            assert!(next <= Utc::now() + chrono::Duration::seconds(2), "{next}");
            // The other job ran as usual.
            let deliver = states.iter().find(|j| j.name == "deliver").unwrap();
            assert_eq!(deliver.last_status.as_deref(), Some("ok"), "{}", db.label);
            assert_eq!(store.outbox_stats().await.unwrap().sent, 2, "{}", db.label);
        }
    }

    #[test]
    fn next_after_uses_the_time_zone() {
        let s = Schedule::from_str("0 0 8 * * Mon").unwrap();
        let tz: Tz = "Europe/Paris".parse().unwrap();
        // Sunday 2026-11-22 12:00 UTC -> Monday 08:00 Paris = 07:00 UTC.
        let after = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let next = next_after(&s, tz, after).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap());
    }
}
