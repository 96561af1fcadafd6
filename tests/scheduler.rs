//! The scheduler with job state in the database: several workers on one database, a
//! dead worker's lease taken over, catch-up after downtime. Runs on SQLite and, when
//! configured, PostgreSQL.

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use zmot::config::Config;
use zmot::health::Metrics;
use zmot::notify::Mailer;
use zmot::pipeline::Pipeline;
use zmot::scheduler::{self, Job, JobKind, RunOptions};
use zmot::store::{now_ms, NewEmail, Store};
use zmot::testutil;

fn deliver_job(expr: &str) -> Job {
    Job {
        name: "deliver".into(),
        kind: JobKind::Deliver,
        schedule: zmot::config::Schedule::from_str(expr).unwrap(),
        tz: chrono_tz::Tz::UTC,
    }
}

fn fast() -> RunOptions {
    RunOptions {
        lease: Duration::from_secs(30),
        concurrency: 2,
        job_timeout: Duration::from_secs(20),
        grace: Duration::from_secs(5),
        poll: Duration::from_millis(50),
    }
}

async fn queue(store: &Store, n: usize) {
    let to = vec!["lead@example.com".to_string()];
    for i in 0..n {
        let key = format!("k{i}");
        let msg = format!("Subject: n{i}\r\n\r\nbody {i}\r\n");
        store
            .enqueue_email(&NewEmail {
                kind: "alert",
                dedup_key: Some(&key),
                watch_id: None,
                recipients: &to,
                subject: "s",
                message: &msg,
            })
            .await
            .unwrap();
    }
}

struct Worker {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    metrics: Arc<Metrics>,
}

fn start(
    store: &Store,
    name: &str,
    outbox: &std::path::Path,
    jobs: Vec<Job>,
    opts: RunOptions,
) -> Worker {
    let mut pipeline = Pipeline::new(store.clone(), Arc::new(Config::default()), None).unwrap();
    pipeline.worker = name.to_string();
    let mailer = Arc::new(Mailer::Folder(outbox.to_path_buf()));
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(scheduler::run(
        pipeline,
        mailer,
        jobs,
        opts,
        metrics.clone(),
        rx,
    ));
    Worker {
        stop: tx,
        handle,
        metrics,
    }
}

impl Worker {
    async fn stop(self) -> Arc<Metrics> {
        self.stop.send(true).unwrap();
        self.handle.await.unwrap().unwrap();
        self.metrics
    }
}

fn eml_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".eml"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_jobs_and_send_each_email_once() {
    for db in testutil::all().await.unwrap() {
        let store = db.store.clone();
        queue(&store, 40).await;
        let outbox = tempfile::tempdir().unwrap();
        let a = start(
            &store,
            "worker-a",
            outbox.path(),
            vec![deliver_job("* * * * * *")],
            fast(),
        );
        let b = start(
            &store,
            "worker-b",
            outbox.path(),
            vec![deliver_job("* * * * * *")],
            fast(),
        );
        // More emails arrive while both run.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let to = vec!["x@example.com".to_string()];
        for i in 0..20 {
            let key = format!("late{i}");
            store
                .enqueue_email(&NewEmail {
                    kind: "digest",
                    dedup_key: Some(&key),
                    watch_id: None,
                    recipients: &to,
                    subject: "s",
                    message: "Subject: late\r\n\r\nx\r\n",
                })
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let ma = a.stop().await;
        let mb = b.stop().await;
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!((stats.sent, stats.queued), (60, 0), "{}", db.label);
        assert_eq!(eml_files(outbox.path()).len(), 60, "{}", db.label);
        assert_eq!(
            ma.emails_sent.load(Ordering::Relaxed) + mb.emails_sent.load(Ordering::Relaxed),
            60,
            "an email was sent twice on {}",
            db.label
        );
        // Each one-second slot ran once in all: runs never exceed the slots elapsed.
        let runs = ma.job_runs.load(Ordering::Relaxed) + mb.job_runs.load(Ordering::Relaxed);
        assert!(
            (2..=6).contains(&runs),
            "{runs} runs in ~4 s on {}",
            db.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_job_is_taken_over_when_its_lease_expires() {
    for db in testutil::all().await.unwrap() {
        let store = db.store.clone();
        queue(&store, 3).await;
        // A worker claimed the due job and died: its lease runs 1.5 s more.
        let now = now_ms();
        let job = deliver_job("0 0 * * * *");
        store
            .ensure_job(&job.name, &job.schedule_key(), now - 1000)
            .await
            .unwrap();
        assert!(store
            .claim_job("deliver", "dead", now, now + 1500)
            .await
            .unwrap());
        let outbox = tempfile::tempdir().unwrap();
        let w = start(
            &store,
            "alive",
            outbox.path(),
            vec![deliver_job("0 0 * * * *")],
            fast(),
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            eml_files(outbox.path()).is_empty(),
            "ran while the lease held on {}",
            db.label
        );
        tokio::time::sleep(Duration::from_millis(2000)).await;
        w.stop().await;
        assert_eq!(eml_files(outbox.path()).len(), 3, "{}", db.label);
        let job = store
            .jobs()
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.name == "deliver")
            .unwrap();
        assert_eq!(job.last_status.as_deref(), Some("ok"));
        assert!(job.lease_owner.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_runs_after_downtime_run_once() {
    for db in testutil::all().await.unwrap() {
        let store = db.store.clone();
        queue(&store, 2).await;
        // Due ten days ago: 240 hourly slots were missed while zmot was down.
        let job = deliver_job("0 0 * * * *");
        store
            .ensure_job(&job.name, &job.schedule_key(), now_ms() - 10 * 86_400_000)
            .await
            .unwrap();
        let outbox = tempfile::tempdir().unwrap();
        let w = start(&store, "w", outbox.path(), vec![job], fast());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let m = w.stop().await;
        assert_eq!(m.job_runs.load(Ordering::Relaxed), 1, "{}", db.label);
        assert_eq!(eml_files(outbox.path()).len(), 2);
        let job = store
            .jobs()
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.name == "deliver")
            .unwrap();
        let next = job.next_run_at.unwrap();
        assert!(next > Utc::now(), "next run {next} is not in the future");
        assert!(next <= Utc::now() + chrono::Duration::hours(1));

        // A restart: the job is not due, so nothing runs again.
        let w = start(
            &store,
            "w2",
            outbox.path(),
            vec![deliver_job("0 0 * * * *")],
            fast(),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = w.stop().await;
        assert_eq!(m.job_runs.load(Ordering::Relaxed), 0, "{}", db.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_does_not_stop_the_scheduler() {
    for db in testutil::all().await.unwrap() {
        let store = db.store.clone();
        let outbox = tempfile::tempdir().unwrap();
        let w = start(
            &store,
            "w",
            outbox.path(),
            vec![deliver_job("* * * * * *")],
            fast(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The job table is gone for a while (a restarting database answers errors the
        // same way): the scheduler's queries fail.
        sqlx::query("ALTER TABLE jobs RENAME TO jobs_away")
            .execute(store.pool())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let stopped = w.handle.is_finished();
        sqlx::query("ALTER TABLE jobs_away RENAME TO jobs")
            .execute(store.pool())
            .await
            .unwrap();
        assert!(!stopped, "the scheduler gave up on {}", db.label);
        // Back: the scheduler picks up where it was and delivers what arrives.
        queue(&store, 2).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(eml_files(outbox.path()).len(), 2, "{}", db.label);
        w.stop().await;
    }
}
