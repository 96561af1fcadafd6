//! `zmot bench ingest`: how fast the store takes mentions, and at what memory cost.

use std::time::Instant;

use anyhow::Result;
use chrono::{Duration, TimeZone, Utc};

use crate::config::Config;
use crate::domain::{Engagement, Label, Mention, ScoredMention, Sentiment};
use crate::store::Store;

/// Peak resident memory of this process so far, in MiB (Linux), and a reset so the next
/// measurement starts from the current size.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn reset_peak_rss() {
    // Writing 5 to clear_refs resets the peak resident set size (Linux 4.0+).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

const WORDS: &[&str] = &[
    "kettle",
    "boils",
    "fast",
    "lid",
    "leaks",
    "support",
    "refund",
    "great",
    "value",
    "broke",
    "after",
    "a",
    "week",
    "love",
    "the",
    "design",
    "but",
    "handle",
    "gets",
    "hot",
    "delivery",
    "was",
    "late",
    "works",
    "perfectly",
    "would",
    "buy",
    "again",
    "not",
    "worth",
    "price",
];

/// A deterministic synthetic mention: review-like length, rating, engagement.
pub fn synthetic(i: u64) -> ScoredMention {
    let mut x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51afd7ed558ccd);
        x ^= x >> 33;
        x
    };
    let len = 20 + (next() % 40) as usize;
    let text: Vec<&str> = (0..len)
        .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
        .collect();
    let rating = 1 + (next() % 5) as u8;
    let score = (rating as f32 - 3.0) / 2.0;
    ScoredMention {
        mention: Mention {
            external_id: format!("bench-{i}"),
            url: Some(format!("https://reviews.example.com/r/{i}")),
            author: Some(format!("user{}", next() % 10_000)),
            title: Some(format!("Review {i}")),
            text: text.join(" "),
            rating: Some(rating),
            engagement: Engagement {
                likes: (next() % 50) as i64,
                replies: (next() % 5) as i64,
                reposts: 0,
            },
            language: Some("en".into()),
            published_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                + Duration::seconds((i * 37) as i64),
            owner_reply: None,
            owner_reply_at: None,
            extra: None,
        },
        sentiment: Some(Sentiment {
            label: if score < -0.3 {
                Label::Negative
            } else if score > 0.3 {
                Label::Positive
            } else {
                Label::Neutral
            },
            score,
            confidence: 0.9,
        }),
    }
}

/// Ingests `count` synthetic mentions in batches of `batch` into the database at `url`
/// (a fresh watch and source) and prints the rate and peak memory.
pub async fn ingest(url: &str, count: u64, batch: usize) -> Result<(f64, Option<f64>)> {
    let store = Store::connect(url, 4).await?;
    let run_tag = uuid::Uuid::new_v4().simple().to_string();
    let text = format!(
        "[[watch]]\nname = \"bench-{run_tag}\"\n[[watch.source]]\nname = \"bench\"\nkind = \"feed\"\nenabled = false\nparams = {{ url = \"http://127.0.0.1:9/\" }}\n"
    );
    let config: Config =
        crate::config::parse(&text, "bench", &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    store.sync_config(&config).await?;
    let source = store
        .sources(None)
        .await?
        .into_iter()
        .find(|s| s.watch_name == format!("bench-{run_tag}"))
        .expect("bench source");
    // Build the data first so the measurement is the store's work only.
    let data: Vec<ScoredMention> = (0..count).map(synthetic).collect();
    reset_peak_rss();
    let started = Instant::now();
    for chunk in data.chunks(batch.max(1)) {
        store.ingest(&source, chunk, Some(("bench", "1"))).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = count as f64 / secs;
    let peak = peak_rss_mib();
    store.close().await;
    Ok((rate, peak))
}

/// The `zmot bench ingest` command.
pub async fn run_ingest(
    count: u64,
    batch: usize,
    sqlite: Option<String>,
    postgres: Option<String>,
) -> Result<()> {
    let tmp;
    let sqlite = match sqlite {
        Some(u) => u,
        None => {
            tmp =
                std::env::temp_dir().join(format!("zmot-bench-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&tmp)?;
            format!("sqlite://{}/bench.db", tmp.display())
        }
    };
    let mut targets = vec![("SQLite", sqlite.clone())];
    if let Some(pg) = postgres {
        targets.push(("PostgreSQL", pg));
    }
    println!("Ingesting {count} synthetic mentions (with sentiment rows) in batches of {batch}:");
    for (name, url) in targets {
        let (rate, peak) = ingest(&url, count, batch).await?;
        println!(
            "  {name:<10} {rate:>10.0} mentions/s   peak RSS {} MiB   ({})",
            peak.map(|p| format!("{p:.0}"))
                .unwrap_or_else(|| "?".into()),
            crate::redact::database_url(&url)
        );
    }
    if let Some(dir) = sqlite
        .strip_prefix("sqlite://")
        .and_then(|p| std::path::Path::new(p).parent())
        .filter(|d| d.starts_with(std::env::temp_dir()))
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// Page timings of `zmot bench web`, in milliseconds (median of the timed requests).
#[derive(Debug, Clone)]
pub struct PageTiming {
    pub name: &'static str,
    pub path: String,
    pub target_ms: f64,
    pub median_ms: f64,
    pub runs: Vec<f64>,
}

fn bench_watch_name(i: usize) -> String {
    format!("Brand {:02}", i + 1)
}

fn bench_web_config(watches: usize) -> Result<Config> {
    let mut text = String::new();
    for i in 0..watches {
        text.push_str(&format!(
            "[[watch]]\nname = \"{}\"\n[[watch.source]]\nname = \"store\"\nkind = \"feed\"\nenabled = false\nparams = {{ url = \"http://127.0.0.1:9/{i}\" }}\n\n",
            bench_watch_name(i)
        ));
    }
    crate::config::parse(&text, "bench", &[]).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Seeds `count` mentions spread evenly over `watches` watches and the year before
/// `now`, newest first, in batches of 1,000 per watch; every tenth has an owner reply.
/// Skipped when the store already holds the watches' mentions.
async fn seed_web(store: &Store, config: &Config, count: u64, watches: usize) -> Result<()> {
    store.sync_config(config).await?;
    if store.count_mentions(None).await? >= count as i64 {
        println!("  (store already seeded)");
        return Ok(());
    }
    let sources = store.sources(None).await?;
    let by_watch: Vec<_> = (0..watches)
        .map(|i| {
            sources
                .iter()
                .find(|s| s.watch_name == bench_watch_name(i))
                .cloned()
                .expect("bench source")
        })
        .collect();
    let now = Utc::now();
    let per_watch = (count / watches as u64).max(1);
    let step_ms = (365 * 24 * 3_600_000 / per_watch as i64).max(1);
    let started = Instant::now();
    let block = 1000u64;
    let mut i = 0u64;
    while i < count {
        let end = (i + block * watches as u64).min(count);
        let mut buckets: Vec<Vec<ScoredMention>> = vec![Vec::new(); watches];
        for j in i..end {
            let w = (j % watches as u64) as usize;
            let mut m = synthetic(j);
            m.mention.published_at =
                now - Duration::milliseconds((j / watches as u64) as i64 * step_ms);
            if j % 10 == 0 {
                m.mention.owner_reply = Some("Thank you for the review".into());
                m.mention.owner_reply_at = Some(m.mention.published_at + Duration::hours(5));
            }
            buckets[w].push(m);
        }
        for (w, batch) in buckets.iter().enumerate() {
            if !batch.is_empty() {
                store
                    .ingest(&by_watch[w], batch, Some(("bench", "1")))
                    .await?;
            }
        }
        i = end;
        if i % 100_000 < block * watches as u64 {
            eprint!("\r  seeded {i} mentions");
        }
    }
    eprintln!();
    store.vacuum_analyze().await?;
    println!(
        "  seeded {count} mentions in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Serves the dashboard on 127.0.0.1 and times its pages: one warm-up request, then
/// `runs` timed ones each.
pub async fn time_pages(store: &Store, config: Config, runs: usize) -> Result<Vec<PageTiming>> {
    let state =
        crate::web::WebState::with_access(store.clone(), std::sync::Arc::new(config), None, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, crate::web::router(state)).await;
    });
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()?;
    let since = (Utc::now() - Duration::days(90)).date_naive();
    // Bench watch names are letters, digits and a space.
    let watch = bench_watch_name(0).replace(' ', "%20");
    let pages: Vec<(&'static str, String, f64)> = vec![
        ("overview", "/".to_string(), 200.0),
        ("watch", format!("/watch/{watch}"), 200.0),
        (
            "mentions, filtered",
            format!("/mentions?watch={watch}&sentiment=negative&stars=1-2"),
            300.0,
        ),
        (
            "mentions, text search",
            format!("/mentions?watch={watch}&q=refund&from={since}&page=2"),
            300.0,
        ),
        ("mentions, all", "/mentions".to_string(), 300.0),
    ];
    let mut out = Vec::new();
    for (name, path, target_ms) in pages {
        let url = format!("{base}{path}");
        let mut times = Vec::with_capacity(runs);
        for k in 0..=runs {
            let t = Instant::now();
            let r = http.get(&url).send().await?;
            let status = r.status();
            let body = r.bytes().await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if !status.is_success() {
                anyhow::bail!(
                    "{path} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            if k > 0 {
                times.push(ms);
            }
        }
        let mut sorted = times.clone();
        let median_ms = crate::store::median(&mut sorted).unwrap_or(f64::NAN);
        out.push(PageTiming {
            name,
            path,
            target_ms,
            median_ms,
            runs: times,
        });
    }
    server.abort();
    Ok(out)
}

/// A fresh database on the PostgreSQL server at `admin` (dropped by [`drop_postgres`]).
async fn fresh_postgres(admin: &str) -> Result<(String, String)> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("zmot_bench_web_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let mut url = url::Url::parse(admin)?;
    url.set_path(&format!("/{name}"));
    Ok((url.to_string(), name))
}

/// The SQLite database a bench measures: the one given, or a new file in a temporary
/// folder named after `prefix` (returned, to be removed by [`end_sqlite`]).
fn sqlite_target(
    given: Option<String>,
    prefix: &str,
) -> Result<(String, Option<std::path::PathBuf>)> {
    if let Some(url) = given {
        return Ok((url, None));
    }
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok((format!("sqlite://{}/bench.db", dir.display()), Some(dir)))
}

/// After measuring one database: a PostgreSQL database this bench created is dropped,
/// or with `keep` named so it can be measured again.
async fn end_target(
    pg_name: Option<&str>,
    admin: Option<&str>,
    url: &str,
    keep: bool,
) -> Result<()> {
    if let (Some(name), Some(admin)) = (pg_name, admin) {
        if keep {
            println!("  kept {}", crate::redact::database_url(url));
        } else {
            drop_postgres(admin, name).await?;
        }
    }
    Ok(())
}

/// Removes the temporary SQLite folder, or with `keep` says where it is.
fn end_sqlite(tmp: Option<std::path::PathBuf>, keep: bool) {
    if let Some(dir) = tmp {
        if keep {
            println!("  kept {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn drop_postgres(admin: &str, name: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(admin).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// The `zmot bench web` command.
pub async fn run_web(
    count: u64,
    watches: usize,
    runs: usize,
    sqlite: Option<String>,
    postgres: Option<String>,
    keep: bool,
) -> Result<()> {
    let watches = watches.max(1);
    let config = bench_web_config(watches)?;
    let (sqlite, tmp) = sqlite_target(sqlite, "zmot-bench-web")?;
    let mut targets: Vec<(&str, String, Option<String>)> = vec![("SQLite", sqlite, None)];
    if let Some(admin) = &postgres {
        let kept = url::Url::parse(admin)
            .ok()
            .is_some_and(|u| u.path().starts_with("/zmot_bench_web_"));
        if kept {
            // A database kept by an earlier `--keep` run: measured again as it is.
            targets.push(("PostgreSQL", admin.clone(), None));
        } else {
            let (url, name) = fresh_postgres(admin).await?;
            targets.push(("PostgreSQL", url, Some(name)));
        }
    }
    println!(
        "Dashboard pages with {count} mentions across {watches} watches (median of {runs} requests after one warm-up):"
    );
    let mut result = Ok(());
    for (backend, url, pg_name) in &targets {
        println!("{backend} ({}):", crate::redact::database_url(url));
        let outcome = async {
            let store = Store::connect(url, 4).await?;
            seed_web(&store, &config, count, watches).await?;
            let timings = time_pages(&store, config.clone(), runs).await?;
            for t in &timings {
                println!(
                    "  {:<22} {:>8.1} ms   target < {:>3.0} ms  {}   {}",
                    t.name,
                    t.median_ms,
                    t.target_ms,
                    if t.median_ms < t.target_ms {
                        "ok  "
                    } else {
                        "SLOW"
                    },
                    t.path
                );
            }
            store.close().await;
            anyhow::Ok(())
        }
        .await;
        end_target(pg_name.as_deref(), postgres.as_deref(), url, keep).await?;
        if outcome.is_err() {
            result = outcome;
            break;
        }
    }
    end_sqlite(tmp, keep);
    result
}

/// Seeds `count` mentions of one watch (`Brand 01`, one source) spread evenly over the
/// `weeks` weeks before `now`, every tenth answered by the owner, then edits every 50th
/// (now, after every past week's end), so a past week's digest reads their earlier
/// versions.
async fn seed_digest(store: &Store, config: &Config, count: u64, weeks: i64) -> Result<()> {
    store.sync_config(config).await?;
    if store.count_mentions(None).await? >= count as i64 {
        println!("  (store already seeded)");
        return Ok(());
    }
    let source = store
        .sources(None)
        .await?
        .into_iter()
        .next()
        .expect("bench source");
    let now = Utc::now();
    let step_ms = (weeks * 7 * 24 * 3_600_000 / count.max(1) as i64).max(1);
    let make = |j: u64| {
        let mut m = synthetic(j);
        m.mention.published_at = now - Duration::milliseconds(j as i64 * step_ms);
        if j.is_multiple_of(10) {
            m.mention.owner_reply = Some("Thank you for the review".into());
            m.mention.owner_reply_at = Some(m.mention.published_at + Duration::hours(5));
        }
        m
    };
    let started = Instant::now();
    let ids: Vec<u64> = (0..count).collect();
    for chunk in ids.chunks(1000) {
        let batch: Vec<ScoredMention> = chunk.iter().map(|&j| make(j)).collect();
        store.ingest(&source, &batch, Some(("bench", "1"))).await?;
    }
    let edits: Vec<u64> = (0..count).step_by(50).collect();
    for chunk in edits.chunks(1000) {
        let batch: Vec<ScoredMention> = chunk
            .iter()
            .map(|&j| {
                let mut m = make(j);
                m.mention.text.push_str(" edited later");
                m
            })
            .collect();
        store.ingest(&source, &batch, Some(("bench", "1"))).await?;
    }
    store.vacuum_analyze().await?;
    println!(
        "  seeded {count} mentions over {weeks} weeks ({} edited since) in {:.0} s",
        edits.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Times computing and rendering the digest of the last full week and of the week
/// `weeks_back` before it, with the peak resident memory of each.
async fn time_digests(
    store: &Store,
    config: &Config,
    weeks_back: u32,
) -> Result<Vec<(String, f64, Option<f64>, i64)>> {
    let now = Utc::now();
    let tz = chrono_tz::UTC;
    let last = crate::digest::report::last_full_week(tz, now);
    let past = crate::trends::iso_weeks(tz, now, weeks_back as usize + 2).swap_remove(0);
    let mut out = Vec::new();
    for (kind, week) in [("last full week", last), ("past week", past)] {
        reset_peak_rss();
        let started = Instant::now();
        let digest =
            crate::digest::report::compute(store, config, &bench_watch_name(0), week).await?;
        let _ = crate::digest::report::render(&digest);
        let secs = started.elapsed().as_secs_f64();
        out.push((
            format!("{kind} {}", digest.week),
            secs,
            peak_rss_mib(),
            digest.this_week.mentions,
        ));
    }
    Ok(out)
}

/// The `zmot bench digest` command.
pub async fn run_digest(
    count: u64,
    weeks: i64,
    sqlite: Option<String>,
    postgres: Option<String>,
    keep: bool,
) -> Result<()> {
    let config = bench_web_config(1)?;
    let (sqlite, tmp) = sqlite_target(sqlite, "zmot-bench-digest")?;
    let mut targets: Vec<(&str, String, Option<String>)> = vec![("SQLite", sqlite, None)];
    if let Some(admin) = &postgres {
        let (url, name) = fresh_postgres(admin).await?;
        targets.push(("PostgreSQL", url, Some(name)));
    }
    println!("Weekly digest of one watch with {count} mentions over {weeks} weeks:");
    let mut result = Ok(());
    for (backend, url, pg_name) in &targets {
        println!("{backend} ({}):", crate::redact::database_url(url));
        let outcome = async {
            let store = Store::connect(url, 4).await?;
            seed_digest(&store, &config, count, weeks).await?;
            for (week, secs, peak, mentions) in time_digests(&store, &config, 4).await? {
                println!(
                    "  {week:<26} {mentions:>7} mentions  {:>8.0} ms   peak RSS {} MiB",
                    secs * 1000.0,
                    peak.map(|p| format!("{p:.0}"))
                        .unwrap_or_else(|| "?".into())
                );
            }
            store.close().await;
            anyhow::Ok(())
        }
        .await;
        end_target(pg_name.as_deref(), postgres.as_deref(), url, keep).await?;
        if outcome.is_err() {
            result = outcome;
            break;
        }
    }
    end_sqlite(tmp, keep);
    result
}
