//! `/healthz` and `/metrics` (Prometheus text format) for `zmot run`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::store::Store;

/// Counters of this process since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    pub fetch_runs: AtomicU64,
    pub fetch_failures: AtomicU64,
    pub mentions_ingested: AtomicU64,
    pub emails_sent: AtomicU64,
    pub email_failures: AtomicU64,
    pub job_runs: AtomicU64,
    pub job_failures: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct HealthState {
    store: Store,
    metrics: Arc<Metrics>,
}

/// The routes, ready to be merged into the server's router.
pub fn router(store: Store, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(HealthState { store, metrics })
}

async fn healthz(State(s): State<HealthState>) -> impl IntoResponse {
    // Healthy means the database answers; the body says so in words.
    match sqlx::query("SELECT 1").execute(s.store.pool()).await {
        Ok(_) => (StatusCode::OK, "ok\n".to_string()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable: {e}\n"),
        ),
    }
}

async fn metrics_text(State(s): State<HealthState>) -> impl IntoResponse {
    let m = &s.metrics;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    };
    counter(
        "zmot_fetch_runs_total",
        "Fetch runs started by this process.",
        get(&m.fetch_runs),
    );
    counter(
        "zmot_fetch_failures_total",
        "Fetch runs that failed.",
        get(&m.fetch_failures),
    );
    counter(
        "zmot_mentions_ingested_total",
        "New mentions stored by this process.",
        get(&m.mentions_ingested),
    );
    counter(
        "zmot_emails_sent_total",
        "Emails accepted by the mail server or written to the outbox folder.",
        get(&m.emails_sent),
    );
    counter(
        "zmot_email_failures_total",
        "Failed email delivery attempts.",
        get(&m.email_failures),
    );
    counter(
        "zmot_job_runs_total",
        "Scheduled jobs run by this process.",
        get(&m.job_runs),
    );
    counter(
        "zmot_job_failures_total",
        "Scheduled jobs that failed.",
        get(&m.job_failures),
    );
    let (status, depth) = match s.store.outbox_stats().await {
        Ok(stats) => (StatusCode::OK, stats.queued),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, -1),
    };
    out.push_str(&format!(
        "# HELP zmot_outbox_queued Emails waiting in the outbox.\n# TYPE zmot_outbox_queued gauge\nzmot_outbox_queued {depth}\n"
    ));
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
}
