//! The weekly digest of one watch: figures for the ISO week just ended (in the watch's
//! time zone) against the weeks before, rendered as one email with inline charts and a
//! plain-text part with the same facts, queued once per watch and week.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use html_escape::encode_text as esc;

use super::charts::{self, Chart, RatingSeries, WeekSentiment};
use super::drivers::{find_drivers_scored, DriverOptions};
use super::journey::{display_name, JourneyMap};
use crate::config::Config;
use crate::domain::Label;
use crate::store::{
    AlertAsOf, MentionOrder, MentionQuery, NewEmail, PeriodStats, Store, StoredMention,
};
use crate::trends::{self, Health, Period};

/// Weeks shown in the trend charts.
pub const CHART_WEEKS: usize = 12;
/// Most negative and most positive mentions listed.
const TOP_MENTIONS: usize = 3;

/// How many mentions "what drives negativity" reads at most: the newest `recent` of the
/// period it explains and the newest `baseline` of the period before. A big brand has
/// tens of thousands of mentions a week; the terms need texts in memory, the figures
/// (counts, shares, means, the most negative and positive) do not and stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DriverLimits {
    pub recent: i64,
    pub baseline: i64,
}

/// The limits of the digest and of the watch page.
pub const DRIVER_LIMITS: DriverLimits = DriverLimits {
    recent: 5_000,
    baseline: 20_000,
};

/// Which limits of [`DriverLimits`] left mentions out of "what drives negativity".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DriversCapped {
    /// The newest this many of the week's mentions were read (there were more).
    pub recent: Option<i64>,
    /// The newest this many of the four weeks before were read (there were more).
    pub baseline: Option<i64>,
}

impl DriversCapped {
    pub fn any(&self) -> bool {
        self.recent.is_some() || self.baseline.is_some()
    }
}

/// A mention as the digest lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Listed {
    pub source: String,
    pub rating: Option<u8>,
    pub score: f32,
    pub excerpt: String,
    pub url: Option<String>,
    pub replied: bool,
    pub published_at: DateTime<Utc>,
}

/// A driver of negativity with its journey stage and an example.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DriverRow {
    pub term: String,
    pub mentions: usize,
    pub baseline_mentions: usize,
    pub z: f64,
    pub stage: Option<String>,
    pub example: Listed,
}

/// A buyer's view line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ViewRow {
    pub source: String,
    pub reviews: usize,
    pub average: Option<f64>,
    pub published: Option<f64>,
}

/// One watch of the competitor group.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CompetitorRow {
    pub watch: String,
    pub mentions: i64,
    pub mean_rating: Option<f64>,
    pub negative_share: Option<f64>,
}

/// Everything the digest says, computed from the store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Digest {
    pub watch: String,
    /// "2026-W47".
    pub week: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The week's Monday and Sunday in the watch's time zone, for the period line.
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// The watch's time zone (IANA name), which the period line names.
    pub timezone: String,
    pub health: Health,
    pub reasons: Vec<String>,
    pub this_week: PeriodStats,
    pub last_week: PeriodStats,
    pub buyer_views: Vec<ViewRow>,
    /// The chart weeks, oldest first, ending with this digest's week.
    pub weeks: Vec<Period>,
    /// Mean rating per source and week, for the rating chart.
    pub ratings: Vec<RatingSeries>,
    pub volume_by_source: Vec<(String, u64)>,
    pub drivers: Vec<DriverRow>,
    /// Set when the drivers read only some of the mentions (see [`DRIVER_LIMITS`]).
    pub drivers_capped: DriversCapped,
    pub most_negative: Vec<Listed>,
    pub most_positive: Vec<Listed>,
    /// Alerts opened during the week, as they stood at its end.
    pub alerts_fired: Vec<AlertAsOf>,
    /// Alerts resolved during the week, with the severity they had then.
    pub alerts_resolved: Vec<AlertAsOf>,
    pub competitors: Vec<CompetitorRow>,
}

impl Digest {
    pub fn is_empty(&self) -> bool {
        self.this_week.mentions == 0
    }
}

fn listed(m: &StoredMention) -> Listed {
    let text = match &m.mention.title {
        Some(t) if !t.trim().is_empty() => format!("{t}: {}", m.mention.text),
        _ => m.mention.text.clone(),
    };
    let excerpt = crate::rules::excerpt(&text, 240);
    Listed {
        source: m.source.clone(),
        rating: m.mention.rating,
        score: m.sentiment.map(|s| s.score).unwrap_or(0.0),
        excerpt,
        url: m.mention.url.clone(),
        replied: m.mention.owner_reply.is_some(),
        published_at: m.mention.published_at,
    }
}

/// The ISO week that ended last, as of `now`, in `tz`: (label, from, to).
pub fn last_full_week(tz: Tz, now: DateTime<Utc>) -> (String, DateTime<Utc>, DateTime<Utc>) {
    trends::iso_weeks(tz, now, 2).swap_remove(0)
}

/// The week `label` ("2026-W47") in `tz`, if it is one of the last 104 weeks.
pub fn week_by_label(
    tz: Tz,
    now: DateTime<Utc>,
    label: &str,
) -> Option<(String, DateTime<Utc>, DateTime<Utc>)> {
    trends::iso_weeks(tz, now, 104)
        .into_iter()
        .find(|(l, _, _)| l.eq_ignore_ascii_case(label))
}

/// Computes the digest of `watch` for the week `[from, to)`.
pub async fn compute(
    store: &Store,
    config: &Config,
    watch: &str,
    week: (String, DateTime<Utc>, DateTime<Utc>),
) -> Result<Digest> {
    compute_within(store, config, watch, week, DRIVER_LIMITS).await
}

/// [`compute`] with other limits on what "what drives negativity" reads (tests use small
/// ones).
pub async fn compute_within(
    store: &Store,
    config: &Config,
    watch: &str,
    week: (String, DateTime<Utc>, DateTime<Utc>),
    limits: DriverLimits,
) -> Result<Digest> {
    let row = store
        .watch_by_name(watch)
        .await?
        .with_context(|| format!("no watch named `{watch}`"))?;
    let wcfg = config
        .watch(watch)
        .with_context(|| format!("watch `{watch}` is not in the configuration"))?;
    let tz = crate::config::parse_timezone(wcfg.timezone(&config.general))
        .map_err(anyhow::Error::msg)?;
    let (label, from, to) = week;
    // Earlier periods by the calendar in the watch's zone, not by subtracting hours: a
    // week that spans a DST change is 167 or 169 hours long.
    let first_day = from.with_timezone(&tz).date_naive();
    let last_day = first_day + Duration::days(6);
    let last_week_from = trends::local_midnight(tz, first_day - Duration::weeks(1));
    let baseline_from = trends::local_midnight(tz, first_day - Duration::days(28));
    // Every figure, chart and listed mention reads each mention as it stood at the end of
    // the week (its stars, text, reply and sentiment then): a digest made late, or made
    // again, says what the one made on time said, whatever was edited since.
    let as_of = Some(to);
    let this_week = store
        .period_stats_as_of(row.id, None, from, to, as_of)
        .await?;
    let last_week = store
        .period_stats_as_of(row.id, None, last_week_from, from, as_of)
        .await?;

    // The chart weeks end with the digest's week.
    let spans = trends::iso_weeks(tz, to - Duration::hours(1), CHART_WEEKS);
    let mut weeks = Vec::with_capacity(spans.len());
    for (l, f, t) in &spans {
        weeks.push(Period {
            label: l.clone(),
            from: *f,
            to: *t,
            stats: store
                .period_stats_as_of(row.id, None, *f, *t, as_of)
                .await?,
        });
    }
    let sources = store.sources(Some(row.id)).await?;
    // The sources rated at the end of the week: one added since adds no empty line, one
    // whose stars were all removed since keeps its line.
    let rated = store.rated_sources_at(row.id, to).await?;
    let mut ratings = Vec::new();
    let mut volume_by_source = Vec::new();
    for s in &sources {
        let week_stats = store
            .period_stats_as_of(row.id, Some(s.id), from, to, as_of)
            .await?;
        if week_stats.mentions > 0 {
            volume_by_source.push((s.name.clone(), week_stats.mentions as u64));
        }
        if rated.contains(&s.id) {
            let mut points = Vec::with_capacity(spans.len());
            for (l, f, t) in &spans {
                let st = store
                    .period_stats_as_of(row.id, Some(s.id), *f, *t, as_of)
                    .await?;
                points.push((short_week(l), st.mean_rating));
            }
            ratings.push(RatingSeries {
                source: s.name.clone(),
                points,
            });
        }
    }
    volume_by_source.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    // What held at the end of the week, not now: a digest of an earlier week must not
    // show today's buyer's view or today's open alerts.
    let views =
        trends::buyer_views_at(store, row.id, wcfg.alerts.buyer_view_size, Some(to)).await?;
    // The negative share's rise against the four weeks before, of watched time only, as
    // on the dashboard and in `zmot trends`: a source whose stored history begins less
    // than a week before this week is left out of the comparison.
    let rise = trends::watched_comparison(store, row.id, (from, to), baseline_from, as_of).await?;
    let alerts = store.alerts_as_of(row.id, from, to).await?;
    let open: Vec<String> = alerts
        .iter()
        .filter(|a| a.open())
        .map(|a| a.severity.clone())
        .collect();
    let (health, reasons) = trends::health(&wcfg.alerts, &this_week, &rise, &views, &open);
    let buyer_views = views
        .iter()
        .map(|v| ViewRow {
            source: v.source.clone(),
            reviews: v.reviews.len(),
            average: v.average_rating,
            published: v.published.as_ref().map(|p| p.rating),
        })
        .collect();

    // The week's mentions, and the four weeks before as the baseline for drivers: the
    // newest of each up to its limit, one more read to tell whether there were more.
    let newest = |since, until, limit: i64| MentionQuery {
        watch_id: Some(row.id),
        since: Some(since),
        until: Some(until),
        limit: Some(limit + 1),
        as_of,
        ..Default::default()
    };
    let mut mentions = store.mentions(&newest(from, to, limits.recent)).await?;
    let mut before = store
        .mentions(&newest(baseline_from, from, limits.baseline))
        .await?;
    let drivers_capped = DriversCapped {
        recent: (mentions.len() as i64 > limits.recent).then_some(limits.recent),
        baseline: (before.len() as i64 > limits.baseline).then_some(limits.baseline),
    };
    mentions.truncate(limits.recent.max(0) as usize);
    before.truncate(limits.baseline.max(0) as usize);
    let journey = JourneyMap::with_extra(&wcfg.digest.journey);
    let drivers = negativity_drivers(&mentions, &before, &journey);
    drop((mentions, before));

    // The most negative and most positive of the whole week, sorted by the database.
    let top = |label, order| MentionQuery {
        watch_id: Some(row.id),
        since: Some(from),
        until: Some(to),
        limit: Some(TOP_MENTIONS as i64),
        label: Some(label),
        as_of,
        order,
        ..Default::default()
    };
    let most_negative = store
        .mentions(&top(Label::Negative, MentionOrder::LowestScore))
        .await?
        .iter()
        .map(listed)
        .collect();
    let most_positive = store
        .mentions(&top(Label::Positive, MentionOrder::HighestScore))
        .await?
        .iter()
        .map(listed)
        .collect();

    // Each with the severity it had at the end of the week, not its severity now.
    let alerts_fired = alerts
        .iter()
        .filter(|a| a.opened_at >= from)
        .cloned()
        .collect();
    let alerts_resolved = alerts
        .into_iter()
        .filter(|a| a.resolved_at.is_some())
        .collect();

    let mut competitors = Vec::new();
    if let Some(group) = wcfg.competitors.as_deref().filter(|g| !g.is_empty()) {
        for w in config
            .watches
            .iter()
            .filter(|w| w.competitors.as_deref() == Some(group))
        {
            let Some(r) = store.watch_by_name(&w.name).await? else {
                continue;
            };
            // The same calendar week in each watch's own zone.
            let zone = crate::config::parse_timezone(w.timezone(&config.general))
                .map_err(anyhow::Error::msg)?;
            let st = store
                .period_stats_as_of(
                    r.id,
                    None,
                    trends::local_midnight(zone, first_day),
                    trends::local_midnight(zone, first_day + Duration::weeks(1)),
                    as_of,
                )
                .await?;
            competitors.push(CompetitorRow {
                watch: w.name.clone(),
                mentions: st.mentions,
                mean_rating: st.mean_rating,
                negative_share: st.negative_share(),
            });
        }
    }

    Ok(Digest {
        watch: row.name,
        week: label,
        from,
        to,
        first_day,
        last_day,
        timezone: tz.name().to_string(),
        health,
        reasons,
        this_week,
        last_week,
        buyer_views,
        weeks,
        ratings,
        volume_by_source,
        drivers,
        drivers_capped,
        most_negative,
        most_positive,
        alerts_fired,
        alerts_resolved,
        competitors,
    })
}

/// What drives negativity in `mentions`: terms over-represented in their negative ones
/// against a baseline of `before` and their non-negative ones, each with its journey
/// stage and an example. The digest uses it for its week; the watch page for the last
/// seven days against the 28 before.
pub fn negativity_drivers(
    mentions: &[StoredMention],
    before: &[StoredMention],
    journey: &JourneyMap,
) -> Vec<DriverRow> {
    let negative: Vec<&StoredMention> = mentions
        .iter()
        .filter(|m| m.sentiment.is_some_and(|s| s.label == Label::Negative))
        .collect();
    let neg_texts: Vec<String> = negative.iter().map(|m| full_text(m)).collect();
    let neg_scores: Vec<f64> = negative
        .iter()
        .map(|m| f64::from(m.sentiment.map(|s| s.score).unwrap_or(0.0)))
        .collect();
    // The baseline: everything before, and this week's non-negative mentions.
    let base_texts: Vec<String> = before
        .iter()
        .chain(
            mentions
                .iter()
                .filter(|m| !m.sentiment.is_some_and(|s| s.label == Label::Negative)),
        )
        .map(full_text)
        .collect();
    // A week of one product has tens of negative mentions, not thousands: a term in at
    // least two of them and over-represented by one standard error is worth a line.
    let options = DriverOptions {
        min_z: 1.0,
        ..DriverOptions::default()
    };
    let found = find_drivers_scored(&neg_texts, &neg_scores, &base_texts, &options);
    // Each negative text's terms, once (not once per driver).
    let neg_terms: Vec<Vec<String>> = if found.is_empty() {
        Vec::new()
    } else {
        neg_texts.iter().map(|t| super::drivers::terms(t)).collect()
    };
    found
        .into_iter()
        .map(|d| {
            let containing: Vec<&str> = neg_texts
                .iter()
                .zip(&neg_terms)
                .filter(|(_, terms)| terms.contains(&d.term))
                .map(|(t, _)| t.as_str())
                .collect();
            DriverRow {
                stage: journey
                    .stage_of_driver(&d.term, containing)
                    .map(display_name),
                term: d.term,
                mentions: d.count,
                baseline_mentions: d.baseline_count,
                z: d.z,
                example: listed(negative[d.example]),
            }
        })
        .collect()
}

/// The line under "What drives negativity" when its terms read only some mentions (the
/// figures above it count them all).
fn drivers_capped_note(capped: &DriversCapped) -> Option<String> {
    let mut read = Vec::new();
    if let Some(n) = capped.recent {
        read.push(format!("the newest {n} of this week's mentions"));
    }
    if let Some(n) = capped.baseline {
        read.push(format!("the newest {n} mentions of the four weeks before"));
    }
    (!read.is_empty()).then(|| {
        format!(
            "There are more mentions than these terms count: they read only {}.",
            read.join(" and ")
        )
    })
}

fn full_text(m: &StoredMention) -> String {
    match &m.mention.title {
        Some(t) => format!("{t}. {}", m.mention.text),
        None => m.mention.text.clone(),
    }
}

/// "2026-W07" -> "W07".
fn short_week(label: &str) -> String {
    label.rsplit('-').next().unwrap_or(label).to_string()
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.0}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn change_count(now: i64, before: i64) -> String {
    match now - before {
        0 => "no change".into(),
        d if before == 0 => format!("{d:+} (none the week before)"),
        d => format!("{d:+}, {:+.0}%", 100.0 * d as f64 / before as f64),
    }
}

fn change_points(now: Option<f64>, before: Option<f64>) -> String {
    match (now, before) {
        (Some(a), Some(b)) => format!("{:+.0} points", (a - b) * 100.0),
        _ => "no comparison".into(),
    }
}

fn change_stars(now: Option<f64>, before: Option<f64>) -> String {
    match (now, before) {
        (Some(a), Some(b)) => format!("{:+.2}", a - b),
        _ => "no comparison".into(),
    }
}

fn stars(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.2}★")).unwrap_or_else(|| "-".into())
}

fn health_colour(h: Health) -> (&'static str, &'static str) {
    match h {
        Health::Green => ("#2e7d32", "GREEN"),
        Health::Amber => ("#ef8f00", "AMBER"),
        Health::Red => ("#c62828", "RED"),
    }
}

/// The charts of a digest, with their content ids; a chart with nothing to draw is left
/// out (the text says so).
pub fn charts(d: &Digest) -> Vec<(String, Chart)> {
    let mut out = Vec::new();
    let weeks: Vec<WeekSentiment> = d
        .weeks
        .iter()
        .map(|p| WeekSentiment {
            label: short_week(&p.label),
            negative: p.stats.negative as u64,
            neutral: p.stats.neutral as u64,
            positive: p.stats.positive as u64,
            mean_score: p.stats.mean_sentiment,
        })
        .collect();
    let mut push = |id: &str, chart: Result<Chart, charts::ChartError>| match chart {
        Ok(c) => out.push((id.to_string(), c)),
        Err(charts::ChartError::NoData(_)) => {}
        Err(e) => tracing::warn!("digest chart {id} left out: {e}"),
    };
    push("sentiment-trend", charts::sentiment_trend(&weeks));
    push("rating-trend", charts::rating_trend(&d.ratings));
    push(
        "volume-by-source",
        charts::volume_by_source(&d.volume_by_source),
    );
    out
}

/// Subject, plain text, HTML and the charts of a digest.
pub fn render(d: &Digest) -> (String, String, String, Vec<(String, Chart)>) {
    let (colour, word) = health_colour(d.health);
    let t = &d.this_week;
    let l = &d.last_week;
    let subject = if d.is_empty() {
        format!(
            "[zmot] {} weekly digest {}: no mentions this week",
            d.watch, d.week
        )
    } else {
        format!(
            "[zmot] {} weekly digest {}: {word}, {} mentions ({}), {} negative",
            d.watch,
            d.week,
            t.mentions,
            change_count(t.mentions, l.mentions),
            pct(t.negative_share())
        )
    };
    // The days are the watch's: named, since a reader on another clock would take them
    // for theirs.
    let period = format!(
        "Monday {} to Sunday {}, {} time",
        d.first_day.format("%Y-%m-%d"),
        d.last_day.format("%Y-%m-%d"),
        d.timezone
    );

    let mut text = String::new();
    let mut html = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>zmot weekly digest</title></head>\
         <body style=\"margin:0;padding:16px;font-family:Arial,Helvetica,sans-serif;color:#222;background:#f6f6f6\">\
         <table role=\"presentation\" width=\"100%\" style=\"max-width:640px;margin:0 auto;background:#fff;border-collapse:collapse\"><tr><td style=\"padding:16px\">",
    );
    let _ = writeln!(text, "{} weekly digest, {} ({period})\n", d.watch, d.week);
    let _ = write!(
        html,
        "<h1 style=\"font-size:20px;margin:0 0 4px 0\">{} weekly digest</h1>\
         <div style=\"color:#666;margin:0 0 12px 0\">{} ({})</div>",
        esc(&d.watch),
        esc(&d.week),
        esc(&period)
    );

    if d.is_empty() {
        let _ = writeln!(text, "No mentions this week.");
        html.push_str("<p>No mentions this week.</p>");
        return finish(subject, text, html, Vec::new());
    }

    // Headline.
    let _ = writeln!(text, "Health: {word}: {}", d.reasons.join("; "));
    let _ = writeln!(
        text,
        "Mentions: {} ({} on last week)\nMean rating: {} ({})\nNegative: {} ({})",
        t.mentions,
        change_count(t.mentions, l.mentions),
        stars(t.mean_rating),
        change_stars(t.mean_rating, l.mean_rating),
        pct(t.negative_share()),
        change_points(t.negative_share(), l.negative_share())
    );
    let _ = write!(
        html,
        "<div style=\"border-left:6px solid {colour};padding:8px 12px;background:#fafafa;margin:0 0 12px 0\">\
         <div style=\"font-weight:bold;color:{colour}\">{word}</div><div>{}</div></div>\
         <table role=\"presentation\" style=\"border-collapse:collapse;margin:0 0 12px 0\">\
         <tr><td style=\"padding:2px 12px 2px 0\">Mentions</td><td style=\"padding:2px 12px 2px 0\"><b>{}</b></td><td style=\"color:#666\">{}</td></tr>\
         <tr><td style=\"padding:2px 12px 2px 0\">Mean rating</td><td style=\"padding:2px 12px 2px 0\"><b>{}</b></td><td style=\"color:#666\">{}</td></tr>\
         <tr><td style=\"padding:2px 12px 2px 0\">Negative</td><td style=\"padding:2px 12px 2px 0\"><b>{}</b></td><td style=\"color:#666\">{}</td></tr></table>",
        esc(&d.reasons.join("; ")),
        t.mentions,
        esc(&change_count(t.mentions, l.mentions)),
        esc(&stars(t.mean_rating)),
        esc(&change_stars(t.mean_rating, l.mean_rating)),
        pct(t.negative_share()),
        esc(&change_points(t.negative_share(), l.negative_share()))
    );
    if !d.buyer_views.is_empty() {
        let _ = writeln!(text, "\nWhat buyers see first (most recent reviews):");
        html.push_str("<h2 style=\"font-size:16px;margin:16px 0 4px 0\">What buyers see first</h2><ul style=\"padding-left:18px;margin:0\">");
        for v in &d.buyer_views {
            let published = v
                .published
                .map(|p| format!("; the source shows {p:.1}"))
                .unwrap_or_default();
            let _ = writeln!(
                text,
                "  {}: {} over the last {} reviews{published}",
                v.source,
                stars(v.average),
                v.reviews
            );
            let below = v.average.is_some_and(|a| a < 4.3);
            let _ = write!(
                html,
                "<li>{}: <b style=\"color:{}\">{}</b> over the last {} reviews{}</li>",
                esc(&v.source),
                if below { "#c62828" } else { "#222" },
                esc(&stars(v.average)),
                v.reviews,
                esc(&published)
            );
        }
        html.push_str("</ul>");
    }

    // Charts.
    let charts = charts(d);
    if !charts.is_empty() {
        html.push_str("<h2 style=\"font-size:16px;margin:16px 0 4px 0\">Trends</h2>");
        for (id, c) in &charts {
            let _ = write!(
                html,
                "<p style=\"margin:8px 0\"><img src=\"cid:{id}\" width=\"{}\" height=\"{}\" alt=\"{}\" style=\"display:block;max-width:100%;height:auto\"></p>",
                c.width,
                c.height,
                html_escape::encode_double_quoted_attribute(&c.alt)
            );
            let _ = writeln!(text, "\n{}", c.alt);
        }
    }

    // Drivers.
    let _ = writeln!(text, "\nWhat drives negativity this week:");
    html.push_str("<h2 style=\"font-size:16px;margin:16px 0 4px 0\">What drives negativity</h2>");
    if let Some(note) = drivers_capped_note(&d.drivers_capped) {
        let _ = writeln!(text, "  ({note})");
        let _ = write!(
            html,
            "<p style=\"color:#666;font-size:12px;margin:0 0 4px 0\">{}</p>",
            esc(&note)
        );
    }
    if d.drivers.is_empty() {
        let _ = writeln!(
            text,
            "  no term stands out in this week's negative mentions"
        );
        html.push_str("<p>No term stands out in this week's negative mentions.</p>");
    } else {
        html.push_str("<ul style=\"padding-left:18px;margin:0\">");
        for dr in &d.drivers {
            let stage = dr
                .stage
                .as_deref()
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default();
            let _ = writeln!(
                text,
                "  \"{}\"{stage}: {} negative mentions (before: {}), e.g. \"{}\"",
                dr.term, dr.mentions, dr.baseline_mentions, dr.example.excerpt
            );
            let _ = write!(
                html,
                "<li style=\"margin:0 0 6px 0\"><b>{}</b>{} · {} negative mentions (before: {})<br><span style=\"color:#555\">“{}”</span></li>",
                esc(&dr.term),
                esc(&stage),
                dr.mentions,
                dr.baseline_mentions,
                esc(&dr.example.excerpt)
            );
        }
        html.push_str("</ul>");
    }

    // Best and worst.
    for (title, list) in [
        ("Most negative this week", &d.most_negative),
        ("Most positive this week", &d.most_positive),
    ] {
        let _ = writeln!(text, "\n{title}:");
        let _ = write!(
            html,
            "<h2 style=\"font-size:16px;margin:16px 0 4px 0\">{title}</h2>"
        );
        if list.is_empty() {
            let _ = writeln!(text, "  none");
            html.push_str("<p>None.</p>");
            continue;
        }
        html.push_str("<ul style=\"padding-left:18px;margin:0\">");
        for m in list.iter() {
            let rating = m.rating.map(|r| format!(", {r}/5")).unwrap_or_default();
            let replied = if m.replied { "replied" } else { "not replied" };
            let _ = writeln!(
                text,
                "  {}{rating}, {replied}: \"{}\"{}",
                m.source,
                m.excerpt,
                m.url
                    .as_deref()
                    .map(|u| format!("\n    {u}"))
                    .unwrap_or_default()
            );
            let link = m
                .url
                .as_deref()
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
                .map(|u| {
                    format!(
                        " <a href=\"{}\" style=\"color:#1565c0\">open</a>",
                        html_escape::encode_double_quoted_attribute(u)
                    )
                })
                .unwrap_or_default();
            let _ = write!(
                html,
                "<li style=\"margin:0 0 6px 0\"><span style=\"color:#555\">{}{} · {}</span><br>“{}”{link}</li>",
                esc(&m.source),
                esc(&rating),
                replied,
                esc(&m.excerpt)
            );
        }
        html.push_str("</ul>");
    }

    // Alerts.
    let _ = writeln!(text, "\nAlerts this week:");
    html.push_str("<h2 style=\"font-size:16px;margin:16px 0 4px 0\">Alerts this week</h2>");
    if d.alerts_fired.is_empty() && d.alerts_resolved.is_empty() {
        let _ = writeln!(text, "  none");
        html.push_str("<p>None.</p>");
    } else {
        html.push_str("<ul style=\"padding-left:18px;margin:0\">");
        for a in &d.alerts_fired {
            let state = if a.open() {
                "still open at the week's end"
            } else {
                "resolved during the week"
            };
            let _ = writeln!(text, "  fired ({}, {state}): {}", a.severity, a.title);
            let _ = write!(
                html,
                "<li>fired ({}, {state}): {}</li>",
                esc(&a.severity),
                esc(&a.title)
            );
        }
        for a in &d.alerts_resolved {
            let _ = writeln!(text, "  resolved ({}): {}", a.severity, a.title);
            let _ = write!(
                html,
                "<li>resolved ({}): {}</li>",
                esc(&a.severity),
                esc(&a.title)
            );
        }
        html.push_str("</ul>");
    }

    // Competitors.
    if d.competitors.len() > 1 {
        let _ = writeln!(
            text,
            "\nCompetitors this week (mentions, mean rating, negative):"
        );
        html.push_str(
            "<h2 style=\"font-size:16px;margin:16px 0 4px 0\">Competitors</h2>\
             <table style=\"border-collapse:collapse\"><tr>\
             <th style=\"text-align:left;padding:2px 12px 2px 0\">Watch</th>\
             <th style=\"text-align:right;padding:2px 12px 2px 0\">Mentions</th>\
             <th style=\"text-align:right;padding:2px 12px 2px 0\">Mean rating</th>\
             <th style=\"text-align:right;padding:2px 0\">Negative</th></tr>",
        );
        for c in &d.competitors {
            let _ = writeln!(
                text,
                "  {}: {}, {}, {}",
                c.watch,
                c.mentions,
                stars(c.mean_rating),
                pct(c.negative_share)
            );
            let bold = c.watch == d.watch;
            let _ = write!(
                html,
                "<tr{}><td style=\"padding:2px 12px 2px 0\">{}</td><td style=\"text-align:right;padding:2px 12px 2px 0\">{}</td>\
                 <td style=\"text-align:right;padding:2px 12px 2px 0\">{}</td><td style=\"text-align:right;padding:2px 0\">{}</td></tr>",
                if bold { " style=\"font-weight:bold\"" } else { "" },
                esc(&c.watch),
                c.mentions,
                esc(&stars(c.mean_rating)),
                pct(c.negative_share)
            );
        }
        html.push_str("</table>");
    }
    finish(subject, text, html, charts)
}

fn finish(
    subject: String,
    mut text: String,
    mut html: String,
    charts: Vec<(String, Chart)>,
) -> (String, String, String, Vec<(String, Chart)>) {
    text.push_str(
        "\n-- \nzmot weekly digest: you receive this because you are a recipient of this watch.\n",
    );
    html.push_str(
        "<p style=\"font-size:12px;color:#777;margin-top:24px\">zmot weekly digest: you receive this because you are a recipient of this watch.</p>\
         </td></tr></table></body></html>",
    );
    (subject, text, html, charts)
}

/// What `queue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    Queued {
        email_id: i64,
    },
    /// This week's digest of this watch was queued before (by this or another worker).
    AlreadySent,
    /// The digest is off or has no recipients.
    Skipped(String),
}

/// Computes, renders and queues the digest of `watch` for the ISO week that ended last
/// (or `week`), once per watch and week.
pub async fn queue(
    store: &Store,
    config: &Config,
    watch: &str,
    week: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Queued> {
    let wcfg = config
        .watch(watch)
        .with_context(|| format!("watch `{watch}` is not in the configuration"))?;
    if !wcfg.digest.enabled {
        return Ok(Queued::Skipped("the digest of this watch is off".into()));
    }
    let recipients = if wcfg.digest.recipients.is_empty() {
        &wcfg.recipients
    } else {
        &wcfg.digest.recipients
    };
    if recipients.is_empty() {
        return Ok(Queued::Skipped("the watch has no recipients".into()));
    }
    let tz = crate::config::parse_timezone(wcfg.timezone(&config.general))
        .map_err(anyhow::Error::msg)?;
    let span = match week {
        Some(w) => week_by_label(tz, now, w)
            .with_context(|| format!("no week `{w}` in the last two years"))?,
        None => last_full_week(tz, now),
    };
    // A digest goes out once per week under the week's key: queuing a week before its
    // end would send part of it and mark the real one as sent.
    if span.2 > now {
        bail!(
            "week {} is not over yet (it ends on Sunday {} in {tz}), so its digest cannot be \
             sent; it goes out once the week has ended. To look at the week so far: \
             zmot digest --watch {watch} --week {} --preview FILE.html",
            span.0,
            (span.2 - Duration::seconds(1))
                .with_timezone(&tz)
                .format("%Y-%m-%d"),
            span.0
        );
    }
    let row = store
        .watch_by_name(watch)
        .await?
        .with_context(|| format!("no watch named `{watch}`"))?;
    let key = format!("digest:{}:{}", row.id, span.0);
    if store.email_exists(&key).await? {
        return Ok(Queued::AlreadySent);
    }
    let digest = compute(store, config, watch, span).await?;
    let (subject, text, html, charts) = render(&digest);
    let images = charts.iter().map(|(id, c)| c.to_inline_image(id)).collect();
    let message = crate::notify::compose(
        &config.email.from,
        recipients,
        &subject,
        &text,
        &html,
        images,
    )?;
    match store
        .enqueue_email(&NewEmail {
            kind: "digest",
            dedup_key: Some(&key),
            watch_id: Some(row.id),
            recipients,
            subject: &subject,
            message: &message,
        })
        .await?
    {
        Some(id) => Ok(Queued::Queued { email_id: id }),
        None => Ok(Queued::AlreadySent),
    }
}

/// Writes the digest as `path` (HTML) with its charts beside it as PNG files, for a look
/// before anything is sent.
pub async fn preview(
    store: &Store,
    config: &Config,
    watch: &str,
    week: Option<&str>,
    now: DateTime<Utc>,
    path: &std::path::Path,
) -> Result<Digest> {
    let wcfg = config
        .watch(watch)
        .with_context(|| format!("watch `{watch}` is not in the configuration"))?;
    let tz = crate::config::parse_timezone(wcfg.timezone(&config.general))
        .map_err(anyhow::Error::msg)?;
    let span = match week {
        Some(w) => week_by_label(tz, now, w)
            .with_context(|| format!("no week `{w}` in the last two years"))?,
        None => last_full_week(tz, now),
    };
    let digest = compute(store, config, watch, span).await?;
    let (_, _, mut html, charts) = render(&digest);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "digest".into());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    for (id, c) in &charts {
        let file = format!("{stem}-{id}.png");
        std::fs::write(dir.join(&file), &c.png)
            .with_context(|| format!("cannot write {}", dir.join(&file).display()))?;
        html = html.replace(&format!("cid:{id}"), &file);
    }
    std::fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(digest)
}
