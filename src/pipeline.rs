//! The pipeline for one source: fetch (connector) -> score (sentiment) -> store.
//! Used by `zmot fetch`, `zmot import`, the scheduler and the ingest API alike, so
//! every way in records its run and writes its batch the same way.

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{Duration, Utc};

use crate::config::Config;
use crate::domain::{FetchErrorKind, Mention, ScoredMention};
use crate::sentiment::Analyzer;
use crate::sources::{self, FetchContext, FetchError};
use crate::store::{IngestStats, RunOutcome, SourceRow, Store};

/// Everything a pass over a source needs.
#[derive(Clone)]
pub struct Pipeline {
    pub store: Store,
    pub config: Arc<Config>,
    pub analyzer: Option<Arc<dyn Analyzer>>,
    pub http: reqwest::Client,
    /// Name of this process, recorded on runs and leases.
    pub worker: String,
}

/// The result of one pass over one source.
#[derive(Debug, Clone)]
pub struct FetchReport {
    pub watch: String,
    pub source: String,
    pub run_id: i64,
    pub result: std::result::Result<IngestStats, FetchError>,
    pub skipped: u64,
    /// Of a fetch that kept what it read before a page was rate limited, how long the
    /// source asked to be left alone (a failed fetch carries it in its error).
    pub retry_after: Option<std::time::Duration>,
}

/// A name for this process: host name and process id.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// The HTTP client every connector shares: zmot's User-Agent, timeouts, gzip.
pub fn http_client(config: &Config) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(format!(
            "zmot/{} (+{})",
            env!("CARGO_PKG_VERSION"),
            config.http.contact_url
        ))
        .timeout(std::time::Duration::from_secs(config.http.timeout_secs))
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")
}

impl Pipeline {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        analyzer: Option<Arc<dyn Analyzer>>,
    ) -> Result<Self> {
        let http = http_client(&config)?;
        Ok(Pipeline {
            store,
            config,
            analyzer,
            http,
            worker: worker_name(),
        })
    }

    /// Scores mentions with the configured model (title and text together).
    pub async fn score(&self, mentions: Vec<Mention>) -> Result<Vec<ScoredMention>> {
        let Some(analyzer) = self.analyzer.clone() else {
            return Ok(mentions
                .into_iter()
                .map(|mention| ScoredMention {
                    mention,
                    sentiment: None,
                })
                .collect());
        };
        // Inference is CPU work: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let texts: Vec<String> = mentions.iter().map(scoring_text).collect();
            let mut out = Vec::with_capacity(mentions.len());
            let mut scores = Vec::with_capacity(mentions.len());
            for chunk in texts.chunks(32) {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                scores.extend(analyzer.analyze(&refs)?);
            }
            for (mention, s) in mentions.into_iter().zip(scores) {
                out.push(ScoredMention {
                    mention,
                    sentiment: Some(s),
                });
            }
            Ok(out)
        })
        .await?
    }

    pub fn model_info(&self) -> Option<(&str, &str)> {
        self.analyzer
            .as_deref()
            .map(|a| (a.model_id(), a.model_version()))
    }

    /// One pass over a source: fetch, score, store, record the run.
    pub async fn fetch_source(&self, source: &SourceRow) -> Result<FetchReport> {
        let watch_cfg = self.config.watch(&source.watch_name);
        let params: toml::Table = watch_cfg
            .and_then(|w| w.sources.iter().find(|s| s.name == source.name))
            .map(|s| s.params.clone())
            .unwrap_or_default();
        let run_id = self.start_run(source).await?;
        let report = |result, skipped| FetchReport {
            watch: source.watch_name.clone(),
            source: source.name.clone(),
            run_id,
            result,
            skipped,
            retry_after: None,
        };

        let defaults = sources::http::HttpOptions::from_config(&self.config.http);
        let connector = match sources::build_with_defaults(&source.kind, &params, &defaults) {
            Ok(c) => c,
            Err(msg) => {
                self.store
                    .fail_fetch(run_id, FetchErrorKind::Config, &msg)
                    .await?;
                return Ok(report(Err(FetchError::new(FetchErrorKind::Config, msg)), 0));
            }
        };
        let now = Utc::now();
        let ctx = FetchContext {
            http: self.http.clone(),
            keywords: watch_cfg.map(|w| w.keywords.clone()).unwrap_or_default(),
            languages: watch_cfg.map(|w| w.languages.clone()).unwrap_or_default(),
            first_run_since: now
                - Duration::days(i64::from(self.config.http.first_run_lookback_days)),
            now,
        };
        let fetched = match connector.fetch(&ctx, source.cursor.as_deref()).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(watch = %source.watch_name, source = %source.name, kind = e.kind.as_str(), "fetch failed: {}", e.message);
                self.store.fail_fetch(run_id, e.kind, &e.message).await?;
                return Ok(report(Err(e), 0));
            }
        };
        let note = sources::cursor::join_notes([
            fetched.note,
            fetched.retry_after.map(|wait| {
                format!(
                    "the source asks to wait {} s (Retry-After, or its rate limit's reset): \
                     its next scheduled run waits at least {} s",
                    wait.as_secs(),
                    crate::scheduler::retry_wait(Some(wait)).num_seconds()
                )
            }),
        ]);
        if let Some(kind) = fetched.partial {
            tracing::warn!(watch = %source.watch_name, source = %source.name, kind = kind.as_str(), "fetch partial: {}", note.as_deref().unwrap_or(""));
        }
        let mut skipped = fetched.skipped;
        let mut valid = Vec::with_capacity(fetched.mentions.len());
        for m in fetched.mentions {
            match m.validate() {
                Ok(()) => valid.push(m),
                Err(why) => {
                    tracing::debug!(source = %source.name, id = %m.external_id, "skipped: {why}");
                    skipped += 1;
                }
            }
        }
        let stored = match self.score(valid).await {
            Ok(scored) => {
                self.store
                    .finish_fetch(
                        run_id,
                        source,
                        RunOutcome {
                            batch: &scored,
                            model: self.model_info(),
                            cursor: fetched.cursor.as_deref(),
                            skipped,
                            aggregate: fetched.aggregate,
                            note: note.as_deref(),
                            partial: fetched.partial,
                        },
                    )
                    .await
            }
            Err(e) => Err(e.context("scoring failed")),
        };
        let stats = match stored {
            Ok(stats) => stats,
            Err(e) => {
                // The run is closed as failed, not left `running`; the cursor stays put.
                let msg = format!("not stored: {e:#}");
                tracing::warn!(watch = %source.watch_name, source = %source.name, "{msg}");
                self.store
                    .fail_fetch(run_id, FetchErrorKind::Other, &msg)
                    .await?;
                return Ok(report(Err(FetchError::new(FetchErrorKind::Other, msg)), 0));
            }
        };
        tracing::info!(
            watch = %source.watch_name,
            source = %source.name,
            new = stats.new,
            updated = stats.updated,
            skipped,
            "fetched"
        );
        Ok(FetchReport {
            retry_after: fetched.retry_after,
            ..report(Ok(stats), skipped)
        })
    }

    /// Opens a fetch run, first closing runs of the source left by a stopped worker.
    async fn start_run(&self, source: &SourceRow) -> Result<i64> {
        let timeout_ms = self.config.general.job_timeout_secs as i64 * 1000;
        let stale = self
            .store
            .interrupt_stale_runs(source.id, crate::store::now_ms() - timeout_ms)
            .await?;
        if stale > 0 {
            tracing::warn!(source = %source.name, "closed {stale} fetch run(s) left by a stopped worker");
        }
        self.store.start_fetch_run(source.id, &self.worker).await
    }

    /// Stores mentions that arrived without polling (import file, ingest API) as one run
    /// of the given source.
    pub async fn ingest_pushed(
        &self,
        source: &SourceRow,
        mentions: Vec<Mention>,
        skipped: u64,
        note: Option<&str>,
    ) -> Result<IngestStats> {
        let run_id = self.start_run(source).await?;
        let scored = match self.score(mentions).await {
            Ok(s) => s,
            Err(e) => {
                self.store
                    .fail_fetch(
                        run_id,
                        FetchErrorKind::Other,
                        &format!("scoring failed: {e:#}"),
                    )
                    .await?;
                return Err(e);
            }
        };
        let stored = self
            .store
            .finish_fetch(
                run_id,
                source,
                RunOutcome {
                    batch: &scored,
                    model: self.model_info(),
                    cursor: None,
                    skipped,
                    aggregate: None,
                    note,
                    partial: None,
                },
            )
            .await;
        if let Err(e) = &stored {
            self.store
                .fail_fetch(run_id, FetchErrorKind::Other, &format!("not stored: {e:#}"))
                .await?;
        }
        stored
    }
}

/// The text a model reads for a mention: the title, when there is one, then the text.
pub fn scoring_text(m: &Mention) -> String {
    match m.title.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if !m.text.starts_with(t) => format!("{t}. {}", m.text),
        _ => m.text.clone(),
    }
}
