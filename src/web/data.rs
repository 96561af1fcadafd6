//! What the pages and the API both show, gathered from the store and the trends code.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::params::watch_settings;
use super::WebState;
use crate::store::{SourceStatus, WatchRow};
use crate::trends::{self, BuyerView, Health, Period, WatchTrends};

/// A buyer's view in a few figures.
#[derive(Debug, Clone, Serialize)]
pub struct BuyerViewSummary {
    pub source_id: i64,
    pub source: String,
    pub kind: String,
    pub reviews: usize,
    pub average_rating: Option<f64>,
    pub negative_share: Option<f64>,
    /// The rating the source itself shows, when known.
    pub published_rating: Option<f64>,
    /// Whether it holds enough reviews to be judged against the threshold.
    pub judged: bool,
    pub below_threshold: bool,
}

/// One watch as the overview shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WatchSummary {
    pub id: i64,
    pub name: String,
    pub active: bool,
    pub timezone: String,
    pub health: Health,
    pub reasons: Vec<String>,
    pub buyer_view_threshold: f64,
    pub buyer_views: Vec<BuyerViewSummary>,
    /// The current ISO week so far, and the one before, in the watch's time zone.
    pub this_week: Period,
    pub last_week: Option<Period>,
    pub open_alerts: usize,
    pub sources: Vec<SourceStatus>,
}

pub fn view_summary(v: &BuyerView, threshold: f64, min_reviews: usize) -> BuyerViewSummary {
    let judged = v.reviews.len() >= min_reviews;
    BuyerViewSummary {
        source_id: v.source_id,
        source: v.source.clone(),
        kind: v.kind.clone(),
        reviews: v.reviews.len(),
        average_rating: v.average_rating,
        negative_share: v.negative_share,
        published_rating: v.published.as_ref().map(|p| p.rating),
        judged,
        below_threshold: judged && v.average_rating.is_some_and(|a| a < threshold),
    }
}

/// The trends of a watch over `weeks` ISO weeks, with its settings' threshold.
pub async fn trends_of(
    s: &WebState,
    w: &WatchRow,
    weeks: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<(WatchTrends, crate::config::AlertSettings)> {
    let (tz, settings) = watch_settings(&s.config, w);
    let t = trends::watch_trends(&s.store, w.id, &w.name, tz, &settings, weeks, now).await?;
    Ok((t, settings))
}

/// How many watches' summaries are computed at once (in watch order).
const SUMMARY_CONCURRENCY: usize = 4;

/// The summaries of the given watches (sources' status read once).
pub async fn summaries(
    s: &WebState,
    watches: &[WatchRow],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<WatchSummary>> {
    use futures::stream::{StreamExt, TryStreamExt};
    let status = s.store.source_status().await?;
    let status = &status;
    // A few watches at a time: the database works on one while another's rows travel.
    futures::stream::iter(watches.iter().cloned())
        .map(|w| async move {
            let (tz, settings) = watch_settings(&s.config, &w);
            let t =
                trends::watch_trends_brief(&s.store, w.id, &w.name, tz, &settings, 2, now).await?;
            summary_of(s, &w, &t, &settings, status).await
        })
        .buffered(SUMMARY_CONCURRENCY)
        .try_collect()
        .await
}

/// The summary of a watch from trends already computed (with at least one week).
pub async fn summary_of(
    s: &WebState,
    w: &WatchRow,
    t: &WatchTrends,
    settings: &crate::config::AlertSettings,
    status: &[SourceStatus],
) -> anyhow::Result<WatchSummary> {
    let open = s.store.open_alerts(w.id).await?.len();
    let n = t.weeks.len();
    Ok(WatchSummary {
        id: w.id,
        name: w.name.clone(),
        active: w.active,
        timezone: t.timezone.clone(),
        health: t.health,
        reasons: t.reasons.clone(),
        buyer_view_threshold: settings.buyer_view_threshold,
        buyer_views: t
            .buyer_views
            .iter()
            .map(|v| {
                view_summary(
                    v,
                    settings.buyer_view_threshold,
                    settings.buyer_view_min_reviews,
                )
            })
            .collect(),
        this_week: t.weeks[n - 1].clone(),
        last_week: (n >= 2).then(|| t.weeks[n - 2].clone()),
        open_alerts: open,
        sources: status
            .iter()
            .filter(|st| st.watch == w.name)
            .cloned()
            .collect(),
    })
}

/// Watches that share this one's competitor group (itself excluded).
pub async fn competitors(s: &WebState, w: &WatchRow) -> anyhow::Result<Vec<WatchRow>> {
    let Some(group) = w.competitors.as_deref().filter(|g| !g.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    Ok(s.store
        .watches()
        .await?
        .into_iter()
        .filter(|o| o.id != w.id && o.active && o.competitors.as_deref() == Some(group))
        .collect())
}
