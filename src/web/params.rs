//! Query parameters shared by the pages and the API, parsed into store filters. Empty
//! values (what a GET form sends for an untouched field) count as absent.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::Failure;
use crate::config::{AlertSettings, Config};
use crate::domain::Label;
use crate::store::{MentionFilter, Store, TriageStatus, WatchRow};

/// The mention list's parameters (`from`/`to` and `since`/`until` are synonyms).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MentionParams {
    pub watch: Option<String>,
    pub source: Option<String>,
    pub sentiment: Option<String>,
    pub stars: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub q: Option<String>,
    pub status: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

/// A query string's parameters, or a 400 (in the route's dialect, unlike axum's plain
/// text) when they cannot be read, such as a parameter given twice.
pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Failure> {
    q.map(|Query(v)| v)
        .map_err(|e| Failure::BadRequest(e.body_text()))
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl MentionParams {
    pub fn watch(&self) -> Option<&str> {
        given(&self.watch)
    }
    pub fn source(&self) -> Option<&str> {
        given(&self.source)
    }
    pub fn sentiment(&self) -> Option<&str> {
        given(&self.sentiment)
    }
    pub fn stars(&self) -> Option<&str> {
        given(&self.stars)
    }
    pub fn from(&self) -> Option<&str> {
        given(&self.from).or(given(&self.since))
    }
    pub fn to(&self) -> Option<&str> {
        given(&self.to).or(given(&self.until))
    }
    pub fn q(&self) -> Option<&str> {
        given(&self.q)
    }
    pub fn status(&self) -> Option<&str> {
        given(&self.status)
    }

    /// 1-based page number.
    pub fn page(&self) -> Result<i64, Failure> {
        match given(&self.page) {
            None => Ok(1),
            Some(p) => p
                .parse::<i64>()
                .ok()
                .filter(|p| (1..=100_000).contains(p))
                .ok_or_else(|| Failure::BadRequest(format!("page `{p}` is not a page number"))),
        }
    }

    /// Page size, capped at `max`.
    pub fn size(&self, default: i64, max: i64) -> Result<i64, Failure> {
        match given(&self.per_page).or(given(&self.limit)) {
            None => Ok(default),
            Some(n) => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n.min(max))
                .ok_or_else(|| {
                    Failure::BadRequest(format!("page size `{n}` is not a positive number"))
                }),
        }
    }

    /// The query string of these filters (no page), for links that keep them.
    pub fn filter_query(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("watch", self.watch()),
            ("source", self.source()),
            ("sentiment", self.sentiment()),
            ("stars", self.stars()),
            ("from", self.from()),
            ("to", self.to()),
            ("q", self.q()),
            ("status", self.status()),
            ("per_page", given(&self.per_page)),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }

    /// The store filter, resolving watch and source names. The watch found is returned
    /// too.
    /// Dates are days on the clock of the watch asked for, else of the general zone.
    pub async fn filter(
        &self,
        store: &Store,
        config: &Config,
    ) -> Result<(MentionFilter, Option<WatchRow>), Failure> {
        let mut f = MentionFilter::default();
        let watch = match self.watch() {
            Some(w) => Some(
                resolve_watch(store, w)
                    .await?
                    .ok_or_else(|| Failure::BadRequest(format!("no watch `{w}`")))?,
            ),
            None => None,
        };
        f.watch_id = watch.as_ref().map(|w| w.id);
        let tz = match &watch {
            Some(w) => watch_zone(config, w),
            None => general_tz(config),
        };
        if let Some(src) = self.source() {
            let sources = store.sources(f.watch_id).await?;
            let found = match src.parse::<i64>() {
                Ok(id) => sources.iter().find(|s| s.id == id),
                Err(_) => sources.iter().find(|s| s.name.eq_ignore_ascii_case(src)),
            };
            f.source_id = Some(
                found
                    .ok_or_else(|| Failure::BadRequest(format!("no source `{src}`")))?
                    .id,
            );
        }
        if let Some(l) = self.sentiment() {
            f.label = Some(Label::parse(l).ok_or_else(|| {
                Failure::BadRequest(format!(
                    "sentiment `{l}`: use negative, neutral or positive"
                ))
            })?);
        }
        if let Some(s) = self.stars() {
            let (min, max) = parse_stars(s).ok_or_else(|| {
                Failure::BadRequest(format!("stars `{s}`: use 1 to 5, a range like 1-2, or 4+"))
            })?;
            f.stars_min = Some(min);
            f.stars_max = Some(max);
        }
        if let Some(d) = self.from() {
            f.since = Some(parse_time(d, tz, false).ok_or_else(|| bad_date(d))?);
        }
        if let Some(d) = self.to() {
            f.until = Some(parse_time(d, tz, true).ok_or_else(|| bad_date(d))?);
        }
        f.text = self.q().map(|q| q.chars().take(200).collect());
        if let Some(s) = self.status() {
            f.status = Some(TriageStatus::parse(s).ok_or_else(|| {
                Failure::BadRequest(format!(
                    "status `{s}`: use open, acknowledged, replied, resolved or ignored"
                ))
            })?);
        }
        if let Some(c) = given(&self.cursor) {
            f.after =
                Some(parse_cursor(c).ok_or_else(|| {
                    Failure::BadRequest(format!("cursor `{c}` is not one we gave"))
                })?);
        }
        Ok((f, watch))
    }
}

fn bad_date(d: &str) -> Failure {
    Failure::BadRequest(format!("date `{d}`: use YYYY-MM-DD or an RFC 3339 time"))
}

/// "3" is exactly three stars, "1-2" a range, "4+" four or more.
pub fn parse_stars(s: &str) -> Option<(u8, u8)> {
    let star = |v: &str| v.trim().parse::<u8>().ok().filter(|n| (1..=5).contains(n));
    if let Some(min) = s.strip_suffix('+') {
        return Some((star(min)?, 5));
    }
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (star(a)?, star(b)?);
        return (a <= b).then_some((a, b));
    }
    star(s).map(|n| (n, n))
}

/// A date (local midnight in `tz`; as an end, the midnight after it, so the day is
/// included) or an RFC 3339 time.
pub fn parse_time(s: &str, tz: Tz, end: bool) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let d = if end { d + Duration::days(1) } else { d };
    Some(crate::trends::local_midnight(tz, d))
}

/// The API's cursor: the last item's publication time and id.
pub fn cursor_of(published_ms: i64, id: i64) -> String {
    format!("{published_ms}_{id}")
}

pub fn parse_cursor(c: &str) -> Option<(i64, i64)> {
    let (a, b) = c.split_once('_')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A watch by id (digits) or name (any case).
pub async fn resolve_watch(store: &Store, key: &str) -> anyhow::Result<Option<WatchRow>> {
    if let Ok(id) = key.parse::<i64>() {
        if let Some(w) = store.watches().await?.into_iter().find(|w| w.id == id) {
            return Ok(Some(w));
        }
    }
    store.watch_by_name(key).await
}

/// A watch's time zone and alert settings, from the configuration (defaults for a
/// watch no longer configured).
pub fn watch_settings(config: &Config, watch: &WatchRow) -> (Tz, AlertSettings) {
    let settings = match config.watch(&watch.name) {
        Some(w) => w.alerts.clone(),
        None => AlertSettings::default(),
    };
    (watch_zone(config, watch), settings)
}

use crate::clock::watch_zone;

/// Every stored watch's clock by name, for pages that list several watches' times.
pub struct Zones {
    by_name: std::collections::HashMap<String, Tz>,
    general: Tz,
}

impl Zones {
    pub fn of_watches(config: &Config, watches: &[WatchRow]) -> Zones {
        Zones {
            by_name: watches
                .iter()
                .map(|w| (w.name.to_lowercase(), watch_zone(config, w)))
                .collect(),
            general: general_tz(config),
        }
    }

    pub async fn load(store: &Store, config: &Config) -> anyhow::Result<Zones> {
        Ok(Zones::of_watches(config, &store.watches().await?))
    }

    /// The clock of the watch named `watch` (the general one for a name not stored).
    pub fn of(&self, watch: &str) -> Tz {
        self.by_name
            .get(&watch.to_lowercase())
            .copied()
            .unwrap_or(self.general)
    }
}

/// The configuration's general time zone.
pub fn general_tz(config: &Config) -> Tz {
    config.general_zone()
}

/// Percent-encodes a path segment (everything but unreserved characters).
pub fn path_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encodes a value for a query string.
pub fn query_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A redirect target from a form: only a local path, never another site.
pub fn local_target(back: Option<&str>) -> String {
    match back.map(str::trim) {
        Some(b)
            if b.starts_with('/')
                && !b.starts_with("//")
                && !b.contains('\\')
                && !b.chars().any(char::is_control) =>
        {
            b.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_targets() {
        assert_eq!(parse_stars("3"), Some((3, 3)));
        assert_eq!(parse_stars("1-2"), Some((1, 2)));
        assert_eq!(parse_stars("4+"), Some((4, 5)));
        assert_eq!(parse_stars("6"), None);
        assert_eq!(parse_stars("3-1"), None);
        assert_eq!(local_target(Some("//evil.test/")), "/");
        assert_eq!(local_target(Some("https://evil.test/")), "/");
        assert_eq!(local_target(Some("/watch/A?x=1")), "/watch/A?x=1");
        assert_eq!(path_escape("Acme Notes/1"), "Acme%20Notes%2F1");
        assert_eq!(parse_cursor(&cursor_of(12, 3)), Some((12, 3)));
    }
}
