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
            crate::store::redact(&url)
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
