//! The store: the only module that writes SQL. One schema for SQLite and PostgreSQL,
//! reached through sqlx's `Any` driver so the same queries (with `$1` parameters, which
//! both accept) run on either. Times are Unix epoch milliseconds.

mod alerts;
mod ingest;
mod jobs;
mod migrate;
mod outbox;
mod runs;
mod trends;
mod triage;

pub use alerts::{AlertAsOf, AlertChange, AlertRow, ApplyOutcome, Evidence, LastNotice, NewAlert};
pub use ingest::IngestStats;
pub use ingest::ModelInfo;
pub use jobs::JobState;
pub use outbox::{NewEmail, OutboxEmail, OutboxStats, Refusal, UndeliveredEmail};
pub use runs::{fetch_job_name, FetchRun, RunOutcome, SourceStatus};
pub use trends::{median, PeriodStats};
pub use triage::{
    AlertState, MentionFilter, TriageEvent, TriageState, TriageStatus, TriageSummary, TriageUpdate,
    TriagedMention,
};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, ConnectOptions, Row, Transaction};

use crate::config::Config;
use crate::domain::{Engagement, Label, Mention, Sentiment};

/// The kind of sources that receive pushed mentions instead of polling.
pub const PUSH_KIND: &str = "push";

/// Mentions cannot be pushed or imported into a source of another kind (a configured
/// feed, say): the sender's mistake, told apart from the store failing.
#[derive(Debug)]
pub struct NotAPushSource {
    pub name: String,
    pub kind: String,
}

impl std::fmt::Display for NotAPushSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` is a configured {} source; import into another source name",
            self.name, self.kind
        )
    }
}

impl std::error::Error for NotAPushSource {}

const LATEST_SENTIMENT: &str = "LEFT JOIN sentiments st ON st.mention_id = m.id
    AND st.scored_at = (SELECT MAX(s2.scored_at) FROM sentiments s2 WHERE s2.mention_id = m.id)";

/// The same join, as PostgreSQL runs it fastest: one probe of the
/// (mention_id, scored_at) index per mention instead of a probe and a MAX.
const LATEST_SENTIMENT_PG: &str = "LEFT JOIN LATERAL (SELECT s2.label, s2.score, s2.confidence
    FROM sentiments s2 WHERE s2.mention_id = m.id ORDER BY s2.scored_at DESC LIMIT 1) st ON TRUE";

/// Joins each mention's latest sentiment (a mention may have been scored by several
/// models over time; the newest score counts) as `st`.
pub(crate) fn latest_sentiment(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => LATEST_SENTIMENT_PG,
        Backend::Sqlite => LATEST_SENTIMENT,
    }
}

/// The database's clock now, in epoch milliseconds, as an SQL expression. Leases and
/// claims shared by several workers are decided on it rather than on each worker's own
/// clock: a worker whose clock is off would otherwise see another's lease as run out (or
/// write one that runs out at once) and take over what that worker still holds. On
/// PostgreSQL it is the server's clock, read at the moment (not at the start of the
/// transaction); on SQLite, in the process, the process clock.
pub(crate) fn database_now(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        Backend::Sqlite => "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)",
    }
}

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            bail!(
                "unsupported database URL `{}`: use sqlite:// or postgres://",
                crate::redact::database_url(url)
            )
        }
    }

    /// The placeholder for the `i`-th (1-based) bound parameter, for statements with
    /// thousands of parameters. On SQLite they must be anonymous `?` (bound in order of
    /// appearance, so `i` must be the position in the text): binding a named or numbered
    /// one looks its name up in a list, which makes a batch insert quadratic.
    pub fn param(&self, i: usize) -> String {
        match self {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres => format!("${i}"),
        }
    }

    /// Most bound parameters one statement may carry.
    fn max_params(&self) -> usize {
        match self {
            Backend::Sqlite => 32_000,
            Backend::Postgres => 65_000,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// How far this handle's own clock reads from the process clock: zero, except in
    /// tests of workers whose clocks disagree ([`Store::with_clock_skew`]).
    clock_skew_ms: i64,
}

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A watch as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchRow {
    pub id: i64,
    pub name: String,
    pub competitors: Option<String>,
    pub timezone: String,
    pub active: bool,
}

/// A source as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    pub id: i64,
    pub watch_id: i64,
    pub watch_name: String,
    pub name: String,
    pub kind: String,
    /// The source's settings, as JSON.
    pub params: String,
    pub schedule: String,
    pub enabled: bool,
    pub cursor: Option<String>,
}

/// A mention as stored, with its sentiment when scored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredMention {
    pub id: i64,
    pub watch: String,
    pub source: String,
    pub source_kind: String,
    #[serde(flatten)]
    pub mention: Mention,
    pub fetched_at: DateTime<Utc>,
    pub content_hash: String,
    pub revision: i64,
    pub sentiment: Option<Sentiment>,
}

/// Filters for listing mentions.
#[derive(Debug, Clone, Default)]
pub struct MentionQuery {
    pub watch_id: Option<i64>,
    pub source_id: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
    /// Only mentions with a star rating.
    pub rated_only: bool,
    /// Only mentions whose latest sentiment has this label.
    pub label: Option<Label>,
    /// Each mention as it stood at this time (its text, stars, reply and sentiment then,
    /// and `rated_only` and `label` as they were then); `None`: as stored now.
    pub as_of: Option<DateTime<Utc>>,
    /// Which come first (and which `limit` keeps).
    pub order: MentionOrder,
}

/// The order of [`Store::mentions`]. By score, the database sorts and `limit` keeps only
/// the first few: a week's most negative mentions read three rows, not the week.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MentionOrder {
    /// Newest published first.
    #[default]
    Newest,
    /// Lowest sentiment score first (ties: lowest id first).
    LowestScore,
    /// Highest sentiment score first (ties: highest id first).
    HighestScore,
}

impl Store {
    /// Opens (creating an SQLite file if needed) and migrates the database.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            url = sqlite_url(&url)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(std::time::Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers work while a batch is written; NORMAL sync is
                        // durable across application crashes and fast; the busy timeout
                        // makes concurrent writers wait instead of failing.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA busy_timeout = 10000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    } else {
                        // The dashboard's aggregates are many short queries: compiling
                        // one with JIT costs more (about 15 ms) than running it.
                        sqlx::query("SET jit = off").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(
                // Statement logging formats every SQL text it logs; on batch inserts with
                // thousands of parameters that costs more than the insert itself.
                url.parse::<sqlx::any::AnyConnectOptions>()
                    .with_context(|| {
                        format!(
                            "cannot read the database URL {}",
                            crate::redact::database_url(&url)
                        )
                    })?
                    .log_statements(tracing::log::LevelFilter::Off)
                    .log_slow_statements(
                        tracing::log::LevelFilter::Warn,
                        std::time::Duration::from_secs(30),
                    ),
            )
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    crate::redact::database_url(&url)
                )
            })?;
        let store = Store {
            pool,
            backend,
            clock_skew_ms: 0,
        };
        // PostgreSQL migrations hold an advisory lock; SQLite's take none, and processes
        // starting together on a new file would each create the tables (the second
        // failing on `table watches already exists`). A file lock beside the database
        // makes them take turns.
        let _migrating = match sqlite_file(&url) {
            Some((path, _)) if backend == Backend::Sqlite && !path.starts_with(":memory:") => {
                lock_file(&format!("{path}.migrate.lock")).await
            }
            _ => None,
        };
        migrate::run(&store).await.with_context(|| {
            format!(
                "cannot migrate the database {}",
                crate::redact::database_url(&url)
            )
        })?;
        let filled = store.fill_search_text().await.with_context(|| {
            format!(
                "cannot prepare text search in {}",
                crate::redact::database_url(&url)
            )
        })?;
        if filled > 0 {
            tracing::info!("prepared {filled} stored mention(s) for text search");
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Test hook: the same database, reached by a worker whose own clock reads `skew_ms`
    /// off (ahead when positive), for tests that workers with disagreeing clocks still
    /// respect each other's leases.
    #[doc(hidden)]
    pub fn with_clock_skew(&self, skew_ms: i64) -> Store {
        Store {
            clock_skew_ms: skew_ms,
            ..self.clone()
        }
    }

    /// This worker's own clock now, in epoch milliseconds: for what it records (when an
    /// email was sent), never for deciding a lease ([`database_now`] is for that).
    fn own_now_ms(&self) -> i64 {
        now_ms() + self.clock_skew_ms
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Makes the watches and sources tables match the configuration. Nothing is deleted:
    /// a watch or source removed from the file is marked inactive/disabled and its
    /// mentions stay.
    ///
    /// A watch or source renamed in the file keeps its row (its mentions, cursor, alerts
    /// and history) instead of starting a new one that would fetch its mentions again and
    /// count them twice in the watch's figures: a source is renamed when a row of the
    /// watch no longer in the file has the same kind and parameters (or the same name in
    /// another case), a watch when exactly one watch no longer in the file has the same
    /// name in another case or a source of the same kind and parameters.
    pub async fn sync_config(&self, config: &Config) -> Result<()> {
        let watch_names: Vec<&str> = config.watches.iter().map(|w| w.name.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query("UPDATE watches SET active = 0")
            .execute(&mut *tx)
            .await?;
        // Push sources (import files, the ingest API) are not in the file; leave them be.
        sqlx::query("UPDATE sources SET enabled = 0 WHERE kind <> $1")
            .bind(PUSH_KIND)
            .execute(&mut *tx)
            .await?;
        for w in &config.watches {
            let tz = w.timezone(&config.general).to_string();
            let existing = match sqlx::query("SELECT id FROM watches WHERE name = $1")
                .bind(&w.name)
                .fetch_optional(&mut *tx)
                .await?
            {
                Some(row) => Some(row.try_get::<i64, _>("id")?),
                None => renamed_watch(&mut tx, w, &watch_names).await?,
            };
            let watch_id: i64 = match existing {
                Some(id) => {
                    sqlx::query(
                        "UPDATE watches SET name = $1, competitors = $2, timezone = $3, active = 1
                         WHERE id = $4",
                    )
                    .bind(&w.name)
                    .bind(w.competitors.clone())
                    .bind(&tz)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
                None => sqlx::query(
                    "INSERT INTO watches (name, competitors, timezone, active, created_at)
                     VALUES ($1, $2, $3, 1, $4) RETURNING id",
                )
                .bind(&w.name)
                .bind(w.competitors.clone())
                .bind(&tz)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get("id")?,
            };
            let source_names: Vec<&str> = w.sources.iter().map(|s| s.name.as_str()).collect();
            for s in &w.sources {
                let params = serde_json::to_string(&s.params)?;
                let schedule = s.cron_expression(&w.name);
                let enabled = i64::from(s.enabled);
                let existing =
                    sqlx::query("SELECT id, kind FROM sources WHERE watch_id = $1 AND name = $2")
                        .bind(watch_id)
                        .bind(&s.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                let existing = match existing {
                    Some(row) => Some((row.try_get::<i64, _>("id")?, row.try_get("kind")?)),
                    None => renamed_source(&mut tx, watch_id, s, &params, &source_names).await?,
                };
                match existing {
                    Some((id, kind)) => {
                        let kind: String = kind;
                        // A source that changed kind is a different place: its cursor
                        // means nothing any more.
                        let reset_cursor = i64::from(kind != s.kind);
                        sqlx::query(
                            "UPDATE sources SET name = $7, kind = $1, params = $2, schedule = $3,
                                enabled = $4, cursor = CASE WHEN $5 = 1 THEN NULL ELSE cursor END
                             WHERE id = $6",
                        )
                        .bind(&s.kind)
                        .bind(&params)
                        .bind(&schedule)
                        .bind(enabled)
                        .bind(reset_cursor)
                        .bind(id)
                        .bind(&s.name)
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query(
                            "INSERT INTO sources (watch_id, name, kind, params, schedule, enabled, created_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(watch_id)
                        .bind(&s.name)
                        .bind(&s.kind)
                        .bind(&params)
                        .bind(&schedule)
                        .bind(enabled)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn watches(&self) -> Result<Vec<WatchRow>> {
        let rows = sqlx::query(
            "SELECT id, name, competitors, timezone, active FROM watches ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(watch_row).collect()
    }

    pub async fn watch_by_name(&self, name: &str) -> Result<Option<WatchRow>> {
        let row = sqlx::query(
            "SELECT id, name, competitors, timezone, active FROM watches WHERE lower(name) = lower($1)",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(watch_row).transpose()
    }

    /// Sources, optionally of one watch, with their watch's name.
    pub async fn sources(&self, watch_id: Option<i64>) -> Result<Vec<SourceRow>> {
        let rows = sqlx::query(
            "SELECT s.id, s.watch_id, w.name AS watch_name, s.name, s.kind, s.params, s.schedule,
                    s.enabled, s.cursor
             FROM sources s JOIN watches w ON w.id = s.watch_id
             WHERE ($1 = 0 OR s.watch_id = $2)
             ORDER BY w.name, s.name",
        )
        .bind(i64::from(watch_id.is_some()))
        .bind(watch_id.unwrap_or(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(source_row).collect()
    }

    pub async fn source(&self, id: i64) -> Result<Option<SourceRow>> {
        let row = sqlx::query(
            "SELECT s.id, s.watch_id, w.name AS watch_name, s.name, s.kind, s.params, s.schedule,
                    s.enabled, s.cursor
             FROM sources s JOIN watches w ON w.id = s.watch_id WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(source_row).transpose()
    }

    /// The source that receives pushed mentions (`zmot import`, the ingest API) for a
    /// watch, created on first use. It has no schedule: nothing polls it.
    pub async fn push_source(&self, watch_id: i64, name: &str) -> Result<SourceRow> {
        let name = name.trim();
        if name.is_empty() {
            bail!("the source name is empty; name the source the mentions came from");
        }
        // Source names are matched ignoring case, as watch names and `fetch --source` are:
        // `IMPORT` is the `import` source, and `Hacker-News` the configured `hacker-news`.
        // Of names stored before that differ only in case, the exact one, else the oldest.
        // Compared here rather than with SQL's lower(), which folds only ASCII on SQLite
        // (a watch has a handful of sources).
        let rows =
            sqlx::query("SELECT id, kind, name FROM sources WHERE watch_id = $1 ORDER BY id")
                .bind(watch_id)
                .fetch_all(&self.pool)
                .await?;
        let folded = name.to_lowercase();
        let mut found = None;
        for row in &rows {
            let stored: String = row.try_get("name")?;
            if stored == name {
                found = Some(row);
                break;
            }
            if found.is_none() && stored.to_lowercase() == folded {
                found = Some(row);
            }
        }
        let id: i64 = match found {
            Some(row) => {
                let kind: String = row.try_get("kind")?;
                if kind != PUSH_KIND {
                    return Err(NotAPushSource {
                        name: name.to_string(),
                        kind,
                    }
                    .into());
                }
                row.try_get("id")?
            }
            None => sqlx::query(
                "INSERT INTO sources (watch_id, name, kind, params, schedule, enabled, created_at)
                 VALUES ($1, $2, $3, '{}', '', 1, $4)
                 ON CONFLICT (watch_id, name) DO UPDATE SET enabled = 1
                 RETURNING id",
            )
            .bind(watch_id)
            .bind(name)
            .bind(PUSH_KIND)
            .bind(now_ms())
            .fetch_one(&self.pool)
            .await?
            .try_get("id")?,
        };
        self.source(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("source {id} vanished"))
    }

    /// After a bulk load on PostgreSQL: what autovacuum would soon do (planner
    /// statistics, visibility map for index-only scans). Nothing on SQLite.
    pub async fn vacuum_analyze(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("VACUUM ANALYZE").execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Mentions matching the query, newest first.
    ///
    /// Only the conditions asked for are in the SQL (not `($1 = 0 OR ...)`), so the
    /// planner can use the source and watch indexes: the buyer's view of one source among
    /// a million mentions reads its ten newest rated ones, not the table.
    pub async fn mentions(&self, q: &MentionQuery) -> Result<Vec<StoredMention>> {
        let mut conds: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // The time of the version read is the first parameter, when there is one.
        let at_param = q.as_of.map(|at| {
            ints.push(to_ms(at));
            "$1"
        });
        let version = at_param.map_or(Version::Stored, Version::At);
        let mut push = |cond: &str, value: i64| {
            ints.push(value);
            conds.push(cond.replace('?', &format!("${}", ints.len())));
        };
        if let Some(w) = q.watch_id {
            push("m.watch_id = ?", w);
        }
        if let Some(src) = q.source_id {
            push("m.source_id = ?", src);
        }
        if let Some(since) = q.since {
            push("m.published_at >= ?", to_ms(since));
        }
        if let Some(until) = q.until {
            push("m.published_at < ?", to_ms(until));
        }
        if q.rated_only {
            conds.push(format!("{} IS NOT NULL", version.rating()));
        }
        let label_param = q.label.map(|_| {
            let n = ints.len() + 1;
            conds.push(format!("{} = ${n}", version.label()));
            n
        });
        let limit_param = label_param.unwrap_or(ints.len()) + 1;
        let order = match q.order {
            MentionOrder::Newest => "m.published_at DESC, m.id DESC".to_string(),
            MentionOrder::LowestScore => format!("{} ASC, m.id ASC", version.score()),
            MentionOrder::HighestScore => format!("{} DESC, m.id DESC", version.score()),
        };
        let clause = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let sql = format!(
            "SELECT {columns}
             FROM mentions m
             JOIN sources s ON s.id = m.source_id
             JOIN watches w ON w.id = m.watch_id
             {latest}
             {clause}
             ORDER BY {order}
             LIMIT ${limit_param}",
            columns = stored_mention_columns(version),
            latest = latest_sentiment(self.backend)
        );
        let mut query = sqlx::query(&sql);
        for v in ints {
            query = query.bind(v);
        }
        if let Some(l) = q.label {
            query = query.bind(l.as_str());
        }
        let rows = query
            .bind(q.limit.unwrap_or(i64::MAX).max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_mention).collect()
    }

    /// Earlier versions of a mention, oldest first: (revision, title, text, rating).
    pub async fn mention_history(
        &self,
        mention_id: i64,
    ) -> Result<Vec<(i64, Option<String>, String, Option<u8>)>> {
        let rows = sqlx::query(
            "SELECT revision, title, body, rating FROM mention_revisions
             WHERE mention_id = $1 ORDER BY revision",
        )
        .bind(mention_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("revision")?,
                    r.try_get("title")?,
                    r.try_get("body")?,
                    r.try_get::<Option<i64>, _>("rating")?.map(|v| v as u8),
                ))
            })
            .collect()
    }

    /// How many mentions are stored, optionally for one watch.
    pub async fn count_mentions(&self, watch_id: Option<i64>) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM mentions WHERE ($1 = 0 OR watch_id = $2)")
            .bind(i64::from(watch_id.is_some()))
            .bind(watch_id.unwrap_or(0))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

/// The file and the query of a SQLite URL (`sqlite://zmot.db`, `sqlite:zmot.db`,
/// `sqlite:///abs/path.db?mode=rwc`, `sqlite::memory:`), or `None` for another database.
pub fn sqlite_file(url: &str) -> Option<(&str, Option<&str>)> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    })
}

/// Waits for an exclusive lock on `path` (created if missing), held until the file is
/// dropped. None where no lock can be had (a read-only folder): the caller goes on
/// without, as before there was one.
async fn lock_file(path: &str) -> Option<std::fs::File> {
    let path = path.to_string();
    let locked = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {path}"))?;
        file.lock().with_context(|| format!("cannot lock {path}"))?;
        anyhow::Ok(file)
    })
    .await;
    match locked {
        Ok(Ok(file)) => Some(file),
        Ok(Err(e)) => {
            tracing::debug!("migrating without a lock: {e:#}");
            None
        }
        Err(e) => {
            tracing::debug!("migrating without a lock: {e}");
            None
        }
    }
}

fn sqlite_url(url: &str) -> Result<String> {
    let (path, query) = sqlite_file(url).unwrap_or(("", None));
    if path.starts_with(":memory:") {
        return Ok(url.to_string());
    }
    if path.is_empty() {
        bail!("the SQLite URL `{url}` names no file");
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the folder {}", parent.display()))?;
        }
    }
    let mut out = format!("sqlite://{path}");
    match query {
        Some(q) if q.contains("mode=") => out.push_str(&format!("?{q}")),
        Some(q) => out.push_str(&format!("?{q}&mode=rwc")),
        None => out.push_str("?mode=rwc"),
    }
    Ok(out)
}

fn watch_row(r: &AnyRow) -> Result<WatchRow> {
    Ok(WatchRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        competitors: r.try_get("competitors")?,
        timezone: r.try_get("timezone")?,
        active: r.try_get::<i64, _>("active")? != 0,
    })
}

fn source_row(r: &AnyRow) -> Result<SourceRow> {
    Ok(SourceRow {
        id: r.try_get("id")?,
        watch_id: r.try_get("watch_id")?,
        watch_name: r.try_get("watch_name")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        params: r.try_get("params")?,
        schedule: r.try_get("schedule")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        cursor: r.try_get("cursor")?,
    })
}

/// The row of a watch renamed in the file: the one watch no longer in the file
/// (`configured` lists the names that are) with `w`'s name in another case, or else with
/// a source of the same kind and parameters as one of `w`'s; `None` when there is none,
/// or more than one (a guess could merge two products' histories).
async fn renamed_watch(
    tx: &mut Transaction<'static, Any>,
    w: &crate::config::Watch,
    configured: &[&str],
) -> Result<Option<i64>> {
    let gone = |name: &str| !configured.contains(&name);
    let by_case = sqlx::query("SELECT id, name FROM watches WHERE lower(name) = lower($1)")
        .bind(&w.name)
        .fetch_all(&mut **tx)
        .await?;
    let mut candidates: Vec<(i64, String)> = Vec::new();
    for row in &by_case {
        let name: String = row.try_get("name")?;
        if gone(&name) {
            candidates.push((row.try_get("id")?, name));
        }
    }
    if candidates.is_empty() {
        for s in &w.sources {
            let rows = sqlx::query(
                "SELECT DISTINCT w.id, w.name FROM sources s JOIN watches w ON w.id = s.watch_id
                 WHERE s.kind = $1 AND s.params = $2 AND s.kind <> $3",
            )
            .bind(&s.kind)
            .bind(serde_json::to_string(&s.params)?)
            .bind(PUSH_KIND)
            .fetch_all(&mut **tx)
            .await?;
            for row in &rows {
                let (id, name): (i64, String) = (row.try_get("id")?, row.try_get("name")?);
                if gone(&name) && !candidates.iter().any(|(c, _)| *c == id) {
                    candidates.push((id, name));
                }
            }
        }
    }
    match candidates.as_slice() {
        [(id, old)] => {
            tracing::info!(
                "watch `{old}` is now `{}`: its mentions, sources and alerts are kept",
                w.name
            );
            Ok(Some(*id))
        }
        _ => Ok(None),
    }
}

/// The row of a source renamed in the file: the one source of the watch no longer in the
/// file (`configured` lists the names that are) with `s`'s name in another case, or else
/// with its kind and parameters (`params`, as stored); with its kind.
async fn renamed_source(
    tx: &mut Transaction<'static, Any>,
    watch_id: i64,
    s: &crate::config::Source,
    params: &str,
    configured: &[&str],
) -> Result<Option<(i64, String)>> {
    for same_name in [true, false] {
        let query = if same_name {
            sqlx::query_as::<_, (i64, String, String)>(concat!(
                "SELECT id, name, kind FROM sources WHERE watch_id = $1 AND kind <> $2",
                " AND lower(name) = lower($3)"
            ))
            .bind(watch_id)
            .bind(PUSH_KIND)
            .bind(&s.name)
        } else {
            sqlx::query_as(concat!(
                "SELECT id, name, kind FROM sources WHERE watch_id = $1 AND kind <> $2",
                " AND kind = $3 AND params = $4"
            ))
            .bind(watch_id)
            .bind(PUSH_KIND)
            .bind(&s.kind)
            .bind(params)
        };
        let rows = query.fetch_all(&mut **tx).await?;
        let gone: Vec<_> = rows
            .into_iter()
            .filter(|(_, name, _)| !configured.contains(&name.as_str()))
            .collect();
        if let [(id, old, kind)] = gone.as_slice() {
            tracing::info!(
                "source `{old}` is now `{}`: its mentions and cursor are kept",
                s.name
            );
            return Ok(Some((*id, kind.clone())));
        }
    }
    Ok(None)
}

/// Which version of each mention `m` a query reads: the stored one, or the one it showed
/// at an earlier time (a digest of a past week shows that week as it stood).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version<'a> {
    Stored,
    /// At the epoch-millisecond time bound to this placeholder (`"$7"`).
    At(&'a str),
}

impl Version<'_> {
    /// The SQL for one column an edit replaces: `stored` (of `m`, or of its latest
    /// sentiment `st`) as it is now, or the same column `kept` of the version
    /// `mention_revisions` kept. An edit stores the new version with `updated_at` and
    /// keeps the one it replaced, recorded at that same time, so at time `t` a mention
    /// showed: its stored version if it last changed at or before `t`, or if it was never
    /// edited (first stored after `t`: the only version known); otherwise the earliest
    /// version replaced after `t`. Only mentions edited after `t` probe
    /// `mention_revisions`, once per column, on its (mention_id, revision) key; SQL's
    /// CASE does not evaluate the branch it does not take.
    fn column(self, stored: &str, kept: &str) -> String {
        match self {
            Version::Stored => stored.to_string(),
            Version::At(t) => format!(
                "(CASE WHEN m.updated_at <= {t} OR m.revision = 1 THEN {stored}
                  ELSE (SELECT v.{kept} FROM mention_revisions v
                        WHERE v.mention_id = m.id AND v.recorded_at > {t}
                        ORDER BY v.revision LIMIT 1) END)"
            ),
        }
    }

    pub(crate) fn title(self) -> String {
        self.column("m.title", "title")
    }

    pub(crate) fn body(self) -> String {
        self.column("m.body", "body")
    }

    pub(crate) fn rating(self) -> String {
        self.column("m.rating", "rating")
    }

    pub(crate) fn owner_reply(self) -> String {
        self.column("m.owner_reply", "owner_reply")
    }

    pub(crate) fn owner_reply_at(self) -> String {
        self.column("m.owner_reply_at", "owner_reply_at")
    }

    /// The sentiment columns need the latest sentiment joined as `st`.
    pub(crate) fn label(self) -> String {
        self.column("st.label", "label")
    }

    pub(crate) fn score(self) -> String {
        self.column("st.score", "score")
    }

    pub(crate) fn confidence(self) -> String {
        self.column("st.confidence", "confidence")
    }
}

/// What [`stored_mention`] reads from `mentions m`, `sources s`, `watches w` and the
/// latest sentiment `st`, in the given version of each mention.
fn stored_mention_columns(version: Version) -> String {
    format!(
        "m.id, w.name AS watch_name, s.name AS source_name, m.source_kind, m.external_id,
         m.url, m.author, {title} AS title, {body} AS body, {rating} AS rating,
         m.likes, m.replies, m.reposts, m.language, m.published_at, m.fetched_at,
         {owner_reply} AS owner_reply, {owner_reply_at} AS owner_reply_at,
         m.content_hash, m.revision, m.extra,
         {label} AS label, {score} AS score, {confidence} AS confidence",
        title = version.title(),
        body = version.body(),
        rating = version.rating(),
        owner_reply = version.owner_reply(),
        owner_reply_at = version.owner_reply_at(),
        label = version.label(),
        score = version.score(),
        confidence = version.confidence(),
    )
}

fn stored_mention(r: &AnyRow) -> Result<StoredMention> {
    let label: Option<String> = r.try_get("label")?;
    let sentiment = match label.as_deref().and_then(Label::parse) {
        Some(label) => Some(Sentiment {
            label,
            score: r.try_get::<f64, _>("score")? as f32,
            confidence: r.try_get::<f64, _>("confidence")? as f32,
        }),
        None => None,
    };
    let extra: Option<String> = r.try_get("extra")?;
    Ok(StoredMention {
        id: r.try_get("id")?,
        watch: r.try_get("watch_name")?,
        source: r.try_get("source_name")?,
        source_kind: r.try_get("source_kind")?,
        mention: Mention {
            external_id: r.try_get("external_id")?,
            url: r.try_get("url")?,
            author: r.try_get("author")?,
            title: r.try_get("title")?,
            text: r.try_get("body")?,
            rating: r.try_get::<Option<i64>, _>("rating")?.map(|v| v as u8),
            engagement: Engagement {
                likes: r.try_get("likes")?,
                replies: r.try_get("replies")?,
                reposts: r.try_get("reposts")?,
            },
            language: r.try_get("language")?,
            published_at: from_ms(r.try_get("published_at")?),
            owner_reply: r.try_get("owner_reply")?,
            owner_reply_at: r.try_get::<Option<i64>, _>("owner_reply_at")?.map(from_ms),
            extra: extra.and_then(|e| serde_json::from_str::<serde_json::Value>(&e).ok()),
        },
        fetched_at: from_ms(r.try_get("fetched_at")?),
        content_hash: r.try_get("content_hash")?,
        revision: r.try_get("revision")?,
        sentiment,
    })
}
