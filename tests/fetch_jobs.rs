//! Fetch jobs under the scheduler against a source served on 127.0.0.1: two workers on
//! one database fetch each slot once and send each alert once; a worker killed mid-fetch
//! has its job finished by another after the lease expires; SIGTERM during a fetch lets
//! it finish and leaves the store consistent.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::Row;
use zmot::config::{self, Config};
use zmot::health::Metrics;
use zmot::notify::Mailer;
use zmot::pipeline::Pipeline;
use zmot::scheduler::{self, Job, JobKind, RunOptions};
use zmot::store::{fetch_job_name, Store};
use zmot::testutil;

mod support;
use support::smtp::SmtpServer;

/// An App Store reviews feed with three reviews from the last hours, one with a crisis
/// term, dated from now so the first fetch's look-back keeps them.
fn feed() -> String {
    let now = Utc::now();
    let entry = |id: &str, hours: i64, stars: u8, title: &str, text: &str| {
        serde_json::json!({
            "author": {"name": {"label": format!("user-{id}")}, "label": ""},
            "updated": {"label": (now - chrono::Duration::hours(hours)).to_rfc3339()},
            "im:rating": {"label": stars.to_string()},
            "im:version": {"label": "4.2"},
            "id": {"label": id},
            "title": {"label": title},
            "content": {"label": text, "attributes": {"type": "text"}},
            "im:voteSum": {"label": "0"},
            "im:voteCount": {"label": "0"}
        })
    };
    serde_json::json!({"feed": {"entry": [
        entry("901", 1, 5, "Great", "Syncs instantly, love it"),
        entry("902", 2, 1, "Money back", "It deleted my notes and I want a refund now"),
        entry("903", 3, 4, "Good", "Solid app, a few rough edges"),
    ]}})
    .to_string()
}

/// Serves the feed on page 1 and an empty feed after it; counts page-1 requests; the
/// first `slow_first` page-1 requests wait before answering.
async fn serve(slow_first: usize, delay: Duration) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let body = feed();
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/{country}/rss/customerreviews/{page}/{id}/{sort}/json",
        axum::routing::get(
            move |axum::extract::Path((_c, page, _i, _s)): axum::extract::Path<(
                String,
                String,
                String,
                String,
            )>| {
                let h = h.clone();
                let body = body.clone();
                async move {
                    if page == "page=1" {
                        let n = h.fetch_add(1, Ordering::SeqCst);
                        if n < slow_first {
                            tokio::time::sleep(delay).await;
                        }
                        ([("content-type", "application/json")], body)
                    } else {
                        (
                            [("content-type", "application/json")],
                            "{\"feed\": {}}".to_string(),
                        )
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), hits)
}

fn config(base: &str, db_url: &str, schedule: &str, extra_general: &str) -> String {
    format!(
        r#"
[general]
{extra_general}

[database]
url = "{db_url}"

[email]
from = "zmot <alerts@acme.test>"

[sentiment]
model = "lexicon"

[server]
listen = "127.0.0.1:0"

[[watch]]
name = "Acme Notes"
recipients = ["lead@acme.test"]
  [[watch.source]]
  name = "app-store"
  kind = "appstore"
  schedule = "{schedule}"
  params = {{ app_id = "1450000000", country = "us", base_url = "{base}", max_pages = 2 }}
  [watch.alerts]
  disabled = ["buyer_view_rating", "negative_spike", "severe_mention", "sentiment_drop"]
  crisis_terms = ["refund"]
"#
    )
}

fn fetch_jobs(store_sources: &[zmot::store::SourceRow]) -> Vec<Job> {
    store_sources
        .iter()
        .map(|s| Job {
            name: fetch_job_name(s.id),
            kind: JobKind::Fetch { source_id: s.id },
            schedule: zmot::config::Schedule::from_str(&s.schedule).unwrap(),
            tz: chrono_tz::UTC,
        })
        .collect()
}

fn options(lease: Duration) -> RunOptions {
    RunOptions {
        lease,
        concurrency: 2,
        job_timeout: Duration::from_secs(20),
        grace: Duration::from_secs(5),
        poll: Duration::from_millis(50),
    }
}

struct Worker {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(
    store: &Store,
    config: Arc<Config>,
    name: &str,
    opts: RunOptions,
    outbox: &std::path::Path,
) -> Worker {
    let mut pipeline = Pipeline::new(store.clone(), config.clone(), None).unwrap();
    pipeline.worker = name.to_string();
    let sources = store.sources(None).await.unwrap();
    let jobs = fetch_jobs(&sources);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(scheduler::run(
        pipeline,
        Arc::new(Mailer::Folder(outbox.to_path_buf())),
        jobs,
        opts,
        Arc::new(Metrics::default()),
        rx,
    ));
    Worker { stop: tx, handle }
}

async fn runs(store: &Store) -> Vec<(i64, String, Option<String>)> {
    sqlx::query("SELECT started_at, status, worker FROM fetch_runs ORDER BY started_at")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("started_at"), r.get("status"), r.get("worker")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_fetch_each_slot_once_and_alert_once() {
    for db in testutil::all().await.unwrap() {
        let (base, hits) = serve(0, Duration::ZERO).await;
        let text = config(&base, &db.url, "*/2 * * * * *", "");
        let cfg = Arc::new(config::parse(&text, "test.toml", &[]).unwrap());
        db.store.sync_config(&cfg).await.unwrap();
        let other = Store::connect(&db.url, 4).await.unwrap();
        let outbox = tempfile::tempdir().unwrap();
        let a = start(
            &db.store,
            cfg.clone(),
            "worker-a",
            options(Duration::from_secs(30)),
            outbox.path(),
        )
        .await;
        let b = start(
            &other,
            cfg.clone(),
            "worker-b",
            options(Duration::from_secs(30)),
            outbox.path(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(6500)).await;
        for w in [a, b] {
            w.stop.send(true).unwrap();
            w.handle.await.unwrap().unwrap();
        }
        let runs = runs(&db.store).await;
        assert!(runs.len() >= 2, "{runs:?} on {}", db.label);
        assert_eq!(
            runs.len(),
            hits.load(Ordering::SeqCst),
            "one request per run"
        );
        // Every run belongs to its own two-second slot: none ran twice.
        let mut slots: Vec<i64> = runs.iter().map(|r| r.0 / 2000).collect();
        slots.dedup();
        assert_eq!(
            slots.len(),
            runs.len(),
            "a slot ran twice: {runs:?} on {}",
            db.label
        );
        assert!(runs.iter().all(|r| r.1 == "ok"), "{runs:?}");
        assert_eq!(
            db.store.count_mentions(None).await.unwrap(),
            3,
            "{}",
            db.label
        );
        // The refund review raised one alert, queued once.
        let w = db.store.watch_by_name("Acme Notes").await.unwrap().unwrap();
        let open = db.store.open_alerts(w.id).await.unwrap();
        assert_eq!(open.len(), 1, "{}", db.label);
        assert_eq!(open[0].condition_key, "keyword:refund");
        let alerts: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'alert'")
            .fetch_one(db.store.pool())
            .await
            .unwrap()
            .get("n");
        assert_eq!(alerts, 1, "{}", db.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_fetch_is_finished_by_another() {
    for db in testutil::all().await.unwrap() {
        // The first request hangs long enough for its worker to be killed.
        let (base, hits) = serve(1, Duration::from_secs(30)).await;
        let text = config(&base, &db.url, "0 0 0 1 1 *", "job_timeout_secs = 1");
        let cfg = Arc::new(config::parse(&text, "test.toml", &[]).unwrap());
        db.store.sync_config(&cfg).await.unwrap();
        let source = db.store.sources(None).await.unwrap().remove(0);
        // Due now.
        let job = fetch_jobs(std::slice::from_ref(&source)).remove(0);
        db.store
            .ensure_job(&job.name, &job.schedule_key(), zmot::store::now_ms() - 1000)
            .await
            .unwrap();
        let outbox = tempfile::tempdir().unwrap();
        let lease = Duration::from_millis(1500);
        let a = start(
            &db.store,
            cfg.clone(),
            "worker-a",
            options(lease),
            outbox.path(),
        )
        .await;
        while hits.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // kill -9: the task and its running job vanish without releasing anything.
        a.handle.abort();
        let _ = a.handle.await;
        assert_eq!(db.store.count_mentions(None).await.unwrap(), 0);
        let other = Store::connect(&db.url, 4).await.unwrap();
        let b = start(
            &other,
            cfg.clone(),
            "worker-b",
            options(lease),
            outbox.path(),
        )
        .await;
        let started = std::time::Instant::now();
        while db.store.count_mentions(None).await.unwrap() < 3
            && started.elapsed() < Duration::from_secs(15)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        b.stop.send(true).unwrap();
        b.handle.await.unwrap().unwrap();
        assert_eq!(
            db.store.count_mentions(None).await.unwrap(),
            3,
            "{}",
            db.label
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        let runs = runs(&db.store).await;
        assert_eq!(runs.len(), 2, "{runs:?}");
        // The dead worker's run is closed as interrupted, the other's is ok.
        assert_eq!(runs[0].1, "failed");
        assert_eq!(runs[0].2.as_deref(), Some("worker-a"));
        assert_eq!(
            (runs[1].1.as_str(), runs[1].2.as_deref()),
            ("ok", Some("worker-b"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_alert_check_after_a_partial_fetch_keeps_the_sources_wait() {
    for db in testutil::all().await.unwrap() {
        let (base, hits) = serve_mastodon_limited_on_page_2(true).await;
        let text = mastodon_config(&base, &db.url);
        let cfg = Arc::new(config::parse(&text, "test.toml", &[]).unwrap());
        let outbox = tempfile::tempdir().unwrap();
        let store = db.store.clone();
        store.sync_config(&cfg).await.unwrap();
        // The alert check that follows a fetch with new mentions fails.
        sqlx::query("ALTER TABLE alerts RENAME TO alerts_gone")
            .execute(store.pool())
            .await
            .unwrap();
        let w = start(
            &store,
            cfg.clone(),
            "worker-a",
            options(Duration::from_secs(30)),
            outbox.path(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(5000)).await;
        w.stop.send(true).unwrap();
        w.handle.await.unwrap().unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2, "one run, {}", db.label);
        let job = store
            .jobs()
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.name.starts_with("fetch"))
            .unwrap();
        assert_eq!(job.last_status.as_deref(), Some("failed"), "{}", db.label);
        let error = job.last_error.clone().unwrap_or_default();
        assert!(
            error.contains("alert check after it failed") && error.contains("wait 3600 s"),
            "{error}"
        );
        let wait = job.next_run_at.unwrap() - Utc::now();
        assert!(
            wait > chrono::Duration::seconds(3590) && wait < chrono::Duration::seconds(3610),
            "next run in {wait} on {}",
            db.label
        );
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_fetch_lets_it_finish_and_leaves_the_store_consistent() {
    let (base, hits) = serve(1, Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/zmot.db", dir.path().display());
    let path = dir.path().join("zmot.toml");
    std::fs::write(
        &path,
        config(&base, &db_url, "* * * * * *", "shutdown_grace_secs = 10"),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zmot"))
        .current_dir(dir.path())
        .arg("--config")
        .arg(&path)
        .arg("run")
        .env_remove("ZMOT_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while hits.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the fetch started");
    // The fetch is waiting for its answer: stop now.
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{}", status.1);
    let store = Store::connect(&db_url, 1).await.unwrap();
    let runs = runs(&store).await;
    assert_eq!(runs.len(), 1, "no new run after the stop: {runs:?}");
    assert_eq!(
        runs[0].1, "ok",
        "the running fetch finished within the grace period"
    );
    assert_eq!(store.count_mentions(None).await.unwrap(), 3);
    let sources = store.sources(None).await.unwrap();
    assert!(
        sources[0].cursor.is_some(),
        "the cursor moved with the batch"
    );
}

/// Answers every request with 429 and `Retry-After: 3600`; counts the requests.
async fn serve_rate_limited() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "3600")],
                "Too Many Requests",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_asks_for_an_hour_is_not_asked_again_sooner() {
    for db in testutil::all().await.unwrap() {
        let (base, hits) = serve_rate_limited().await;
        // Every two seconds: without the wait, three runs in the five seconds below.
        let text = config(&base, &db.url, "*/2 * * * * *", "");
        let cfg = Arc::new(config::parse(&text, "test.toml", &[]).unwrap());
        db.store.sync_config(&cfg).await.unwrap();
        let outbox = tempfile::tempdir().unwrap();
        let w = start(
            &db.store,
            cfg.clone(),
            "worker-a",
            options(Duration::from_secs(30)),
            outbox.path(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(5000)).await;
        w.stop.send(true).unwrap();
        w.handle.await.unwrap().unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{}", db.label);
        let runs = runs(&db.store).await;
        assert_eq!(runs.len(), 1, "{runs:?} on {}", db.label);
        assert_eq!(runs[0].1, "failed");
        let job = db
            .store
            .jobs()
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.name.starts_with("fetch"))
            .unwrap();
        assert_eq!(job.last_status.as_deref(), Some("failed"));
        assert!(
            job.last_error
                .as_deref()
                .is_some_and(|e| e.contains("asks to wait 3600 s")),
            "{job:?}"
        );
        let wait = job.next_run_at.unwrap() - Utc::now();
        assert!(
            wait > chrono::Duration::seconds(3590) && wait < chrono::Duration::seconds(3610),
            "next run in {wait} on {}",
            db.label
        );
    }
}

/// A Mastodon hashtag timeline whose first page (two statuses from the last hours, a
/// `Link` to the next) is served and whose second answers 429, with `Retry-After: 3600`
/// when `retry_after`; counts the requests.
async fn serve_mastodon_limited_on_page_2(retry_after: bool) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let now = Utc::now();
    let status = |id: &str, hours: i64| {
        serde_json::json!({
            "id": id,
            "created_at": (now - chrono::Duration::hours(hours)).to_rfc3339(),
            "content": format!("<p>Example Notes status {id}</p>"),
            "url": format!("https://mastodon.example/@user/{id}"),
            "account": {"acct": "user"},
            "language": "en",
        })
    };
    let page1 = serde_json::json!([status("200", 1), status("100", 2)]).to_string();
    let next =
        format!("<{base}/api/v1/timelines/tag/ExampleNotes?limit=2&max_id=100>; rel=\"next\"");
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (h, page1, next) = (h.clone(), page1.clone(), next.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let mut resp = if uri.query().unwrap_or_default().contains("max_id=") {
                let mut r = axum::response::Response::new(axum::body::Body::from("{}"));
                *r.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
                if retry_after {
                    r.headers_mut()
                        .insert("retry-after", "3600".parse().unwrap());
                }
                r
            } else {
                let mut r = axum::response::Response::new(axum::body::Body::from(page1));
                r.headers_mut().insert("link", next.parse().unwrap());
                r
            };
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp
        }
    });
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, hits)
}

fn mastodon_config(base: &str, db_url: &str) -> String {
    format!(
        r#"
[database]
url = "{db_url}"

[email]
from = "zmot <alerts@acme.test>"

[sentiment]
model = "lexicon"

[[watch]]
name = "Acme Notes"
recipients = ["lead@acme.test"]
  [[watch.source]]
  name = "mastodon"
  kind = "mastodon"
  schedule = "*/2 * * * * *"
  params = {{ base_url = "{base}", tag = "ExampleNotes", page_size = 2, retries = 0, min_interval_ms = 0 }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_fetch_whose_page_asks_for_an_hour_is_not_run_again_sooner() {
    for retry_after in [true, false] {
        // Fresh databases for each case, so the runs and the job state are its own.
        for db in testutil::all().await.unwrap() {
            let (base, hits) = serve_mastodon_limited_on_page_2(retry_after).await;
            let text = mastodon_config(&base, &db.url);
            let cfg = Arc::new(config::parse(&text, "test.toml", &[]).unwrap());
            let outbox = tempfile::tempdir().unwrap();
            let store = db.store.clone();
            store.sync_config(&cfg).await.unwrap();
            let w = start(
                &store,
                cfg.clone(),
                "worker-a",
                options(Duration::from_secs(30)),
                outbox.path(),
            )
            .await;
            // Every two seconds: at least two runs in these five without the wait.
            tokio::time::sleep(Duration::from_millis(5000)).await;
            w.stop.send(true).unwrap();
            w.handle.await.unwrap().unwrap();
            let source = store.sources(None).await.unwrap().remove(0);
            let runs = store.fetch_runs(source.id, 100).await.unwrap();
            let run = runs.last().unwrap();
            assert_eq!(run.status, "partial", "{} {retry_after}", db.label);
            assert_eq!(
                store.count_mentions(None).await.unwrap(),
                2,
                "page 1 is kept"
            );
            let job = store
                .jobs()
                .await
                .unwrap()
                .into_iter()
                .find(|j| j.name.starts_with("fetch"))
                .unwrap();
            let wait = job.next_run_at.unwrap() - Utc::now();
            let note = run.error.as_deref().unwrap_or_default();
            if retry_after {
                assert_eq!(hits.load(Ordering::SeqCst), 2, "one run, {}", db.label);
                assert_eq!(runs.len(), 1);
                assert_eq!(job.last_status.as_deref(), Some("ok"));
                assert!(
                    wait > chrono::Duration::seconds(3590)
                        && wait < chrono::Duration::seconds(3610),
                    "next run in {wait} on {}",
                    db.label
                );
                assert!(
                    note.contains("next scheduled run waits at least 3600 s"),
                    "{note}"
                );
            } else {
                assert!(runs.len() >= 2, "{runs:?}");
                assert!(
                    hits.load(Ordering::SeqCst) >= 3,
                    "runs on its schedule: {} requests",
                    hits.load(Ordering::SeqCst)
                );
                assert!(
                    wait <= chrono::Duration::seconds(2),
                    "next run in {wait} on {}",
                    db.label
                );
                assert!(!note.contains("Retry-After"), "{note}");
            }
        }
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_abandons_a_hanging_fetch_and_exits_at_once() {
    // The fetch hangs far beyond the grace period.
    let (base, hits) = serve(1, Duration::from_secs(120)).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/zmot.db", dir.path().display());
    let path = dir.path().join("zmot.toml");
    std::fs::write(
        &path,
        config(&base, &db_url, "* * * * * *", "shutdown_grace_secs = 60"),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zmot"))
        .current_dir(dir.path())
        .arg("--config")
        .arg(&path)
        .arg("run")
        .env_remove("ZMOT_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while hits.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the fetch started");
    let pid = child.id().to_string();
    let term = || {
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success())
    };
    term();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(child.try_wait().unwrap().is_none(), "waits for the fetch");
    // The operator does not want to wait: a second signal stops now.
    term();
    let asked = std::time::Instant::now();
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    })
    .await
    .unwrap();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after the second signal"
    );
    assert!(log.contains("stopped"), "{log}");
    assert!(status.success(), "{log}");
    // Nothing was recorded as done, and nothing stays claimed for a lease's length.
    let store = Store::connect(&db_url, 1).await.unwrap();
    assert_eq!(store.count_mentions(None).await.unwrap(), 0);
    let jobs = store.jobs().await.unwrap();
    assert!(jobs.iter().all(|j| j.lease_owner.is_none()), "{jobs:?}");
    let fetch = jobs.iter().find(|j| j.name.starts_with("fetch:")).unwrap();
    assert_eq!(fetch.last_status, None, "{jobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_that_times_out_closes_its_run_and_status_shows_why() {
    for db in testutil::all().await.unwrap() {
        // The source never answers within the job timeout.
        let (base, hits) = serve(usize::MAX, Duration::from_secs(120)).await;
        let text = config(&base, &db.url, "0 0 0 1 1 *", "job_timeout_secs = 1");
        let cfg = Arc::new(config::parse(&text, "test.toml", &[]).unwrap());
        db.store.sync_config(&cfg).await.unwrap();
        let source = db.store.sources(None).await.unwrap().remove(0);
        let job = fetch_jobs(std::slice::from_ref(&source)).remove(0);
        db.store
            .ensure_job(&job.name, &job.schedule_key(), zmot::store::now_ms() - 1000)
            .await
            .unwrap();
        let outbox = tempfile::tempdir().unwrap();
        let w = start(
            &db.store,
            cfg.clone(),
            "worker-a",
            RunOptions {
                job_timeout: Duration::from_secs(1),
                ..options(Duration::from_secs(30))
            },
            outbox.path(),
        )
        .await;
        let started = std::time::Instant::now();
        let job = loop {
            let job = db
                .store
                .jobs()
                .await
                .unwrap()
                .into_iter()
                .find(|j| j.name == job.name)
                .unwrap();
            if job.last_status.is_some() || started.elapsed() > Duration::from_secs(10) {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        w.stop.send(true).unwrap();
        w.handle.await.unwrap().unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{}", db.label);
        assert_eq!(job.last_status.as_deref(), Some("failed"), "{job:?}");
        // The run is closed with the reason, not left `running` until the next run.
        let runs = db.store.fetch_runs(source.id, 10).await.unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].status, "failed", "{} {runs:?}", db.label);
        let error = runs[0].error.as_deref().unwrap_or_default();
        assert!(error.contains("timed out after 1 s"), "{error}");
        assert!(runs[0].finished_at.is_some());

        // `zmot status` shows it in the source's row.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zmot.toml");
        std::fs::write(&path, &text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zmot"))
            .current_dir(dir.path())
            .arg("--config")
            .arg(&path)
            .arg("status")
            .env_remove("ZMOT_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let row = stdout
            .lines()
            .find(|l| l.contains("app-store"))
            .unwrap_or_else(|| panic!("no source row in {stdout}"));
        assert!(
            row.contains(" failed ") && row.contains("timed out after 1 s"),
            "{} row: {row}",
            db.label
        );

        // A job error the run does not tell (the job failed after the fetch, or before it
        // opened a run) is shown in the row too.
        let now = zmot::store::now_ms();
        db.store
            .ensure_job(&fetch_job_name(source.id), "test", now - 1000)
            .await
            .unwrap();
        assert!(db
            .store
            .claim_job(&fetch_job_name(source.id), "w", now, now + 60_000)
            .await
            .unwrap());
        db.store
            .finish_job(
                &fetch_job_name(source.id),
                "w",
                now,
                "failed",
                Some("alert check: the database is away"),
                now + 60_000,
            )
            .await
            .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zmot"))
            .current_dir(dir.path())
            .arg("--config")
            .arg(&path)
            .arg("status")
            .env_remove("ZMOT_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let row = stdout.lines().find(|l| l.contains("app-store")).unwrap();
        assert!(
            row.contains("timed out after 1 s")
                && row.contains("job failed: alert check: the database is away"),
            "{} row: {row}",
            db.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_is_delivered_while_a_hanging_fetch_holds_every_fetch_slot() {
    for db in testutil::all().await.unwrap() {
        // The fetch hangs far beyond the test.
        let (base, hits) = serve(usize::MAX, Duration::from_secs(120)).await;
        let smtp = SmtpServer::start().await;
        let text = format!(
            "{}\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
            config(&base, &db.url, "0 0 0 1 1 *", "max_concurrent_jobs = 1"),
            smtp.port
        );
        let cfg = Arc::new(config::parse(&text, "test.toml", &[]).unwrap());
        db.store.sync_config(&cfg).await.unwrap();
        let source = db.store.sources(None).await.unwrap().remove(0);
        let fetch = fetch_jobs(std::slice::from_ref(&source)).remove(0);
        db.store
            .ensure_job(
                &fetch.name,
                &fetch.schedule_key(),
                zmot::store::now_ms() - 1000,
            )
            .await
            .unwrap();
        // Fetches first, as `plan` lists them.
        let jobs = vec![
            fetch,
            Job {
                name: "deliver".into(),
                kind: JobKind::Deliver,
                schedule: zmot::config::Schedule::from_str("* * * * * *").unwrap(),
                tz: chrono_tz::UTC,
            },
        ];
        let mut pipeline = Pipeline::new(db.store.clone(), cfg.clone(), None).unwrap();
        pipeline.worker = "worker-a".into();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(scheduler::run(
            pipeline,
            Arc::new(Mailer::from_config(&cfg.email).unwrap()),
            jobs,
            RunOptions {
                concurrency: 1,
                job_timeout: Duration::from_secs(60),
                grace: Duration::from_millis(200),
                ..options(Duration::from_secs(90))
            },
            Arc::new(Metrics::default()),
            stopped,
        ));
        let started = std::time::Instant::now();
        while hits.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the fetch started");
        // An alert is queued while the fetch holds the only slot.
        let to = vec!["lead@acme.test".to_string()];
        db.store
            .enqueue_email(&zmot::store::NewEmail {
                kind: "alert",
                dedup_key: Some("alert:test"),
                watch_id: None,
                recipients: &to,
                subject: "Acme Notes: test",
                message: "Subject: Acme Notes: test\r\n\r\nact now\r\n",
            })
            .await
            .unwrap();
        let queued = std::time::Instant::now();
        while smtp.messages().is_empty() && queued.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = queued.elapsed();
        stop.send(true).unwrap();
        handle.await.unwrap().unwrap();
        let got = smtp.messages();
        assert_eq!(
            got.len(),
            1,
            "not delivered within {took:?} on {}",
            db.label
        );
        assert_eq!(got[0].to, vec!["lead@acme.test"]);
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the fetch still hung");
    }
}
