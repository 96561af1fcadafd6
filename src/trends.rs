//! Trends: the health of a watch's zero moment of truth, read from the store. Per day
//! and per ISO week (in the watch's time zone), per source and overall, plus the
//! buyer's view: the reviews a prospective buyer sees first on each rated source.
//!
//! Health colour, from these documented thresholds (the first that applies wins):
//! - **red**: a buyer's view averages under `buyer_view_threshold - 0.3` stars (4.0 by
//!   default), or 40 % or more of this week's scored mentions are negative (at least 5
//!   mentions), or a red alert is open;
//! - **amber**: a buyer's view averages under `buyer_view_threshold` (4.3), or 25 % or
//!   more of this week's mentions are negative (at least 5), or the negative share rose
//!   by 10 points or more against the four weeks before, or any alert is open;
//! - **green** otherwise.
//!
//! The rise compares watched time only, as the alert rules do ([`watched_comparison`]):
//! a source counts once its stored history begins a week before this week, and the weeks
//! before are cut to after the start of the history of the sources counted, so a new
//! source's first fetch (or a new watch's) is not compared with weeks nobody read it.

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::AlertSettings;
use crate::domain::AggregateRating;
use crate::store::{MentionQuery, PeriodStats, SourceRow, Store, StoredMention};

/// Green, amber or red.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Green,
    Amber,
    Red,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Green => "green",
            Health::Amber => "amber",
            Health::Red => "red",
        }
    }
}

/// One period's figures with its label.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Period {
    /// "2026-W47" or "2026-11-23".
    pub label: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(flatten)]
    pub stats: PeriodStats,
}

/// The reviews a buyer sees first on one rated source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuyerView {
    pub source_id: i64,
    pub source: String,
    pub kind: String,
    /// Newest first, at most N.
    pub reviews: Vec<StoredMention>,
    pub average_rating: Option<f64>,
    pub negative_share: Option<f64>,
    /// The rating the source itself shows, when known.
    pub published: Option<AggregateRating>,
}

/// Weekly series of one source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceTrend {
    pub source_id: i64,
    pub source: String,
    pub kind: String,
    pub weeks: Vec<Period>,
}

/// Everything `zmot trends` shows for a watch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WatchTrends {
    pub watch: String,
    pub timezone: String,
    pub generated_at: DateTime<Utc>,
    pub health: Health,
    /// Why the colour is what it is, one sentence each.
    pub reasons: Vec<String>,
    /// Oldest first; the last one is the current (possibly partial) week.
    pub weeks: Vec<Period>,
    /// The last 14 days, oldest first.
    pub days: Vec<Period>,
    pub sources: Vec<SourceTrend>,
    pub buyer_views: Vec<BuyerView>,
}

/// Midnight of a local date in a zone, as UTC (the earliest instant if the day starts
/// in a DST gap or overlap).
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
        chrono::LocalResult::None => tz
            .from_local_datetime(&(naive + Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&naive)),
    }
}

/// The ISO week containing `now` in `tz` and the `n - 1` weeks before: (label, from, to),
/// oldest first. Weeks start Monday 00:00 local time.
pub fn iso_weeks(
    tz: Tz,
    now: DateTime<Utc>,
    n: usize,
) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    let today = now.with_timezone(&tz).date_naive();
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    (0..n)
        .rev()
        .map(|i| {
            let start = monday - Duration::weeks(i as i64);
            let iso = start.iso_week();
            (
                format!("{}-W{:02}", iso.year(), iso.week()),
                local_midnight(tz, start),
                local_midnight(tz, start + Duration::weeks(1)),
            )
        })
        .collect()
}

/// The last `n` local days up to and including today, oldest first.
pub fn days(tz: Tz, now: DateTime<Utc>, n: usize) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    let today = now.with_timezone(&tz).date_naive();
    (0..n)
        .rev()
        .map(|i| {
            let d = today - Duration::days(i as i64);
            (
                d.to_string(),
                local_midnight(tz, d),
                local_midnight(tz, d + Duration::days(1)),
            )
        })
        .collect()
}

/// How many periods' figures are asked of the database at once.
const PERIOD_CONCURRENCY: usize = 4;

async fn periods(
    store: &Store,
    watch_id: i64,
    source_id: Option<i64>,
    spans: &[(String, DateTime<Utc>, DateTime<Utc>)],
) -> Result<Vec<Period>> {
    use futures::stream::{StreamExt, TryStreamExt};
    // A few periods at a time (in order): the database's cores share the work.
    futures::stream::iter(spans.iter().cloned())
        .map(|(label, from, to)| async move {
            Ok::<_, anyhow::Error>(Period {
                label,
                from,
                to,
                stats: store.period_stats(watch_id, source_id, from, to).await?,
            })
        })
        .buffered(PERIOD_CONCURRENCY)
        .try_collect()
        .await
}

/// The buyer's view of one source: its `n` most recent rated reviews.
pub async fn buyer_view(store: &Store, source: &SourceRow, n: usize) -> Result<BuyerView> {
    buyer_view_at(store, source, n, None).await
}

/// The buyer's view of one source as it stood at `at` (now when `None`): the `n` most
/// recent reviews published before then that had stars then, each as it read then (its
/// stars, text and sentiment: a later edit does not change what buyers saw), and the
/// source's own rating as last recorded before then.
pub async fn buyer_view_at(
    store: &Store,
    source: &SourceRow,
    n: usize,
    at: Option<DateTime<Utc>>,
) -> Result<BuyerView> {
    let reviews = store
        .mentions(&MentionQuery {
            source_id: Some(source.id),
            until: at,
            rated_only: true,
            limit: Some(n as i64),
            as_of: at,
            ..Default::default()
        })
        .await?;
    let ratings: Vec<f64> = reviews
        .iter()
        .filter_map(|m| m.mention.rating)
        .map(f64::from)
        .collect();
    let scored: Vec<_> = reviews.iter().filter_map(|m| m.sentiment).collect();
    let published = store
        .aggregate_at(source.id, at.unwrap_or(DateTime::<Utc>::MAX_UTC))
        .await?;
    Ok(BuyerView {
        source_id: source.id,
        source: source.name.clone(),
        kind: source.kind.clone(),
        average_rating: (!ratings.is_empty())
            .then(|| ratings.iter().sum::<f64>() / ratings.len() as f64),
        negative_share: (!scored.is_empty()).then(|| {
            scored
                .iter()
                .filter(|s| s.label == crate::domain::Label::Negative)
                .count() as f64
                / scored.len() as f64
        }),
        published,
        reviews,
    })
}

/// The buyer's views of every rated source of a watch.
pub async fn buyer_views(store: &Store, watch_id: i64, n: usize) -> Result<Vec<BuyerView>> {
    buyer_views_at(store, watch_id, n, None).await
}

/// The buyer's views of every source of a watch rated at `at` (now when `None`), as they
/// stood then; a source without a rated review by then is left out, one whose stars were
/// removed since is not.
pub async fn buyer_views_at(
    store: &Store,
    watch_id: i64,
    n: usize,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<BuyerView>> {
    let rated = match at {
        Some(at) => store.rated_sources_at(watch_id, at).await?,
        None => store.rated_sources(watch_id).await?,
    };
    let mut out = Vec::new();
    for s in store.sources(Some(watch_id)).await? {
        if rated.contains(&s.id) {
            let view = buyer_view_at(store, &s, n, at).await?;
            if !view.reviews.is_empty() {
                out.push(view);
            }
        }
    }
    Ok(out)
}

/// The sources of a watch whose stored history (what its first fetch brought, then what
/// was fetched since) begins at or before `settled`, by id, with their name and where
/// their history begins (epoch ms): the ones a comparison of a window with the time
/// before it may count, since that time was watched. A source added to a watch, or a new
/// watch, would otherwise compare its first days with days nobody read it.
pub async fn watched_since(
    store: &Store,
    watch_id: i64,
    settled: DateTime<Utc>,
) -> Result<HashMap<i64, (String, i64)>> {
    let starts = store.history_starts(watch_id).await?;
    Ok(split_by_history(starts, settled).0)
}

/// [`Store::history_starts`] split at `settled`: the sources whose history begins by
/// then (id, name and start), and the names of the others, sorted.
fn split_by_history(
    starts: Vec<(i64, String, i64)>,
    settled: DateTime<Utc>,
) -> (HashMap<i64, (String, i64)>, Vec<String>) {
    let settled_ms = settled.timestamp_millis();
    let mut counted = HashMap::new();
    let mut too_new = Vec::new();
    for (id, name, first) in starts {
        if first <= settled_ms {
            counted.insert(id, (name, first));
        } else {
            too_new.push(name);
        }
    }
    too_new.sort();
    (counted, too_new)
}

/// A window's figures against the time before it, of watched time only (see
/// [`watched_comparison`]).
#[derive(Debug, Clone, Default)]
pub struct WatchedComparison {
    /// The sources counted: id, name and where their history begins (epoch ms).
    pub sources: HashMap<i64, (String, i64)>,
    /// The sources with a history left out because it begins too late, by name.
    pub too_new: Vec<String>,
    /// The window's figures, of the sources counted.
    pub window: PeriodStats,
    /// Where the window, and so the time before it, ends.
    pub from: DateTime<Utc>,
    /// Where the time before begins: as asked, or later if the history of a source
    /// counted begins later.
    pub before_from: DateTime<Utc>,
    /// The figures of `[before_from, from)`, of the sources counted.
    pub before: PeriodStats,
}

impl WatchedComparison {
    /// The length of the time before, in days (rounded: a calendar span across a DST
    /// change is an hour off).
    pub fn before_days(&self) -> i64 {
        ((self.from - self.before_from).num_minutes() + 720).div_euclid(1440)
    }
}

/// The figures of `[from, to)` against `[before_from, from)`, each mention as it stood at
/// `as_of` (`None`: as stored now), counting only watched time: a source counts once its
/// stored history begins a week before `from`, and the time before is cut to after the
/// start of the history of the sources counted. So a new source whose first fetch
/// brings a bad week is not compared with weeks nobody read it, nor a new watch's first
/// fetch with the day or two it brought before the window.
pub async fn watched_comparison(
    store: &Store,
    watch_id: i64,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    before_from: DateTime<Utc>,
    as_of: Option<DateTime<Utc>>,
) -> Result<WatchedComparison> {
    let starts = store.history_starts(watch_id).await?;
    let (sources, too_new) = split_by_history(starts, from - Duration::days(7));
    let ids: Vec<i64> = sources.keys().copied().collect();
    let watched_from = sources
        .values()
        .map(|(_, first)| *first)
        .max()
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    let before_from = before_from.max(watched_from.unwrap_or(from));
    let (window, before) = tokio::try_join!(
        store.period_stats_of_sources(watch_id, &ids, from, to, as_of),
        store.period_stats_of_sources(watch_id, &ids, before_from, from, as_of),
    )?;
    Ok(WatchedComparison {
        sources,
        too_new,
        window,
        from,
        before_from,
        before,
    })
}

/// Health colour and reasons from this week's figures, its negative share against the
/// weeks before (`rise`, of watched time only), the buyer's views and the open alerts'
/// severities.
pub fn health(
    settings: &AlertSettings,
    this_week: &PeriodStats,
    rise: &WatchedComparison,
    views: &[BuyerView],
    open_alert_severities: &[String],
) -> (Health, Vec<String>) {
    let mut colour = Health::Green;
    let mut reasons = Vec::new();
    let mut raise = |c: Health, why: String| {
        colour = colour.max(c);
        reasons.push(why);
    };
    for v in views {
        if v.reviews.len() < settings.buyer_view_min_reviews {
            continue;
        }
        if let Some(avg) = v.average_rating {
            if avg < settings.buyer_view_threshold - 0.3 {
                raise(
                    Health::Red,
                    format!(
                        "{}: the {} reviews buyers see first average {} stars",
                        v.source,
                        v.reviews.len(),
                        crate::rules::star_figure(avg)
                    ),
                );
            } else if avg < settings.buyer_view_threshold {
                raise(
                    Health::Amber,
                    format!(
                        "{}: the {} reviews buyers see first average {} stars, under {}",
                        v.source,
                        v.reviews.len(),
                        crate::rules::star_figure(avg),
                        crate::rules::star_figure(settings.buyer_view_threshold)
                    ),
                );
            }
        }
    }
    if let Some(share) = this_week
        .negative_share()
        .filter(|_| this_week.scored() >= 5)
    {
        let pct = share * 100.0;
        if share >= 0.40 {
            raise(
                Health::Red,
                format!("{pct:.0}% of this week's mentions are negative"),
            );
        } else if share >= 0.25 {
            raise(
                Health::Amber,
                format!("{pct:.0}% of this week's mentions are negative"),
            );
        } else if let (Some(now), Some(before)) = (
            rise.window
                .negative_share()
                .filter(|_| rise.window.scored() >= 5),
            rise.before.negative_share(),
        ) {
            if now - before >= 0.10 {
                let span = match rise.before_days() {
                    28 => "four weeks".to_string(),
                    1 => "day".to_string(),
                    days => format!("{days} days"),
                };
                // The sources left out say why the share differs from the week's figures.
                let left_out = if rise.too_new.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (not counting {}: read for less than a week before)",
                        rise.too_new.join(", ")
                    )
                };
                raise(
                    Health::Amber,
                    format!(
                        "negative share up from {:.0}% to {:.0}% against the {span} before{left_out}",
                        before * 100.0,
                        now * 100.0
                    ),
                );
            }
        }
    }
    let reds = open_alert_severities.iter().filter(|s| *s == "red").count();
    let others = open_alert_severities.len() - reds;
    if reds > 0 {
        raise(Health::Red, format!("{reds} red alert(s) open"));
    }
    if others > 0 {
        raise(Health::Amber, format!("{others} alert(s) open"));
    }
    if reasons.is_empty() {
        reasons.push("buyer's views and this week's sentiment are within thresholds".into());
    }
    (colour, reasons)
}

/// The trends of a watch as of `now`.
pub async fn watch_trends(
    store: &Store,
    watch_id: i64,
    watch_name: &str,
    tz: Tz,
    settings: &AlertSettings,
    weeks: usize,
    now: DateTime<Utc>,
) -> Result<WatchTrends> {
    let all = Parts {
        days: true,
        sources: true,
    };
    watch_trends_parts(store, watch_id, watch_name, tz, settings, weeks, now, all).await
}

/// Which optional series [`watch_trends_parts`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// The last 14 days.
    pub days: bool,
    /// The weeks of each source.
    pub sources: bool,
}

/// The trends of a watch without the daily and per-source series (left empty): what a
/// summary card needs, at a fraction of the queries.
pub async fn watch_trends_brief(
    store: &Store,
    watch_id: i64,
    watch_name: &str,
    tz: Tz,
    settings: &AlertSettings,
    weeks: usize,
    now: DateTime<Utc>,
) -> Result<WatchTrends> {
    let none = Parts {
        days: false,
        sources: false,
    };
    watch_trends_parts(store, watch_id, watch_name, tz, settings, weeks, now, none).await
}

/// The trends of a watch with only the optional series asked for (the others empty).
#[allow(clippy::too_many_arguments)]
pub async fn watch_trends_parts(
    store: &Store,
    watch_id: i64,
    watch_name: &str,
    tz: Tz,
    settings: &AlertSettings,
    weeks: usize,
    now: DateTime<Utc>,
    parts: Parts,
) -> Result<WatchTrends> {
    let week_spans = iso_weeks(tz, now, weeks.max(1));
    let day_spans = if parts.days {
        days(tz, now, 14)
    } else {
        Vec::new()
    };
    // Health looks at the last seven days against the 28 before, whatever the weekday.
    let week_start = now - Duration::days(7);
    let (weekly, daily, this_week, rise) = tokio::try_join!(
        periods(store, watch_id, None, &week_spans),
        periods(store, watch_id, None, &day_spans),
        store.period_stats(watch_id, None, week_start, now),
        watched_comparison(
            store,
            watch_id,
            (week_start, now),
            week_start - Duration::days(28),
            None,
        ),
    )?;
    let mut sources = Vec::new();
    let per_source = if parts.sources {
        store.sources(Some(watch_id)).await?
    } else {
        Vec::new()
    };
    for s in per_source {
        sources.push(SourceTrend {
            source_id: s.id,
            source: s.name.clone(),
            kind: s.kind.clone(),
            weeks: periods(store, watch_id, Some(s.id), &week_spans).await?,
        });
    }
    let views = buyer_views(store, watch_id, settings.buyer_view_size).await?;
    let severities: Vec<String> = store
        .open_alerts(watch_id)
        .await?
        .into_iter()
        .map(|a| a.severity)
        .collect();
    let (health, reasons) = health(settings, &this_week, &rise, &views, &severities);
    Ok(WatchTrends {
        watch: watch_name.to_string(),
        timezone: tz.name().to_string(),
        generated_at: now,
        health,
        reasons,
        weeks: weekly,
        days: daily,
        sources,
        buyer_views: views,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_weeks_start_on_local_mondays() {
        let tz: Tz = "Europe/Paris".parse().unwrap();
        // Wednesday 25 November 2026, 10:00 UTC.
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let w = iso_weeks(tz, now, 2);
        assert_eq!(w[1].0, "2026-W48");
        assert_eq!(
            w[1].1,
            Utc.with_ymd_and_hms(2026, 11, 22, 23, 0, 0).unwrap()
        );
        assert_eq!(w[0].0, "2026-W47");
        assert_eq!(w[0].2, w[1].1);
        // A week across the autumn change is 169 hours long in Paris.
        let now = Utc.with_ymd_and_hms(2026, 10, 21, 12, 0, 0).unwrap(); // clocks go back on the 25th
        let w = iso_weeks(tz, now, 1);
        assert_eq!((w[0].2 - w[0].1).num_hours(), 169);
    }

    fn stats(neg: i64, neu: i64, pos: i64) -> PeriodStats {
        PeriodStats {
            mentions: neg + neu + pos,
            negative: neg,
            neutral: neu,
            positive: pos,
            ..Default::default()
        }
    }

    /// This week against the four weeks before, every source counted.
    fn rise(this_week: &PeriodStats, before: PeriodStats) -> WatchedComparison {
        let from = Utc.with_ymd_and_hms(2026, 11, 18, 12, 0, 0).unwrap();
        WatchedComparison {
            window: this_week.clone(),
            from,
            before_from: from - Duration::days(28),
            before,
            ..Default::default()
        }
    }

    #[test]
    fn health_follows_the_documented_thresholds() {
        let s = AlertSettings::default();
        let h_of = |week: PeriodStats, before: PeriodStats, alerts: &[String]| {
            health(&s, &week, &rise(&week, before), &[], alerts)
        };
        let (h, _) = h_of(stats(1, 5, 14), stats(2, 10, 28), &[]);
        assert_eq!(h, Health::Green);
        let (h, why) = h_of(stats(6, 4, 10), stats(2, 10, 28), &[]);
        assert_eq!(h, Health::Amber);
        assert!(why[0].contains("30% of this week"), "{why:?}");
        let (h, _) = h_of(stats(8, 4, 8), stats(2, 10, 28), &[]);
        assert_eq!(h, Health::Red);
        // Four mentions are too few to judge a share.
        let (h, _) = h_of(stats(4, 0, 0), stats(0, 0, 0), &[]);
        assert_eq!(h, Health::Green);
        // A rise of ten points against the baseline is amber even under 25 %.
        let (h, why) = h_of(stats(4, 6, 10), stats(2, 18, 30), &[]);
        assert_eq!(h, Health::Amber, "{why:?}");
        assert_eq!(
            why,
            ["negative share up from 4% to 20% against the four weeks before"]
        );
        let (h, _) = h_of(stats(0, 0, 10), stats(0, 0, 0), &["red".into()]);
        assert_eq!(h, Health::Red);
    }

    #[test]
    fn the_rise_counts_only_the_sources_watched_before() {
        let s = AlertSettings::default();
        // 4 of 20 negative this week, but only 1 of the 14 of the sources counted.
        let week = stats(4, 6, 10);
        let mut counted = rise(&stats(1, 4, 9), stats(2, 18, 30));
        counted.too_new = vec!["reddit".into()];
        let (h, why) = health(&s, &week, &counted, &[], &[]);
        assert_eq!(h, Health::Green, "{why:?}");
        // A rise of the sources counted is amber, and the sentence says who is left out
        // and over how many days, when fewer than 28.
        counted.window = stats(3, 4, 7);
        counted.before_from = counted.from - Duration::days(12);
        let (h, why) = health(&s, &week, &counted, &[], &[]);
        assert_eq!(h, Health::Amber);
        assert_eq!(
            why,
            [
                "negative share up from 4% to 21% against the 12 days before \
              (not counting reddit: read for less than a week before)"
            ]
        );
    }
}
