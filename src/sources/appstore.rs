//! Apple App Store customer reviews, from the public RSS feed in its JSON form:
//! `/{country}/rss/customerreviews/page={n}/id={app_id}/sortby=mostrecent/json`.
//!
//! The feed gives the 500 most recent reviews of one storefront in ten pages of 50. Its
//! JSON is a mechanical translation of XML, hence the quirks handled here: every value
//! is wrapped in `{"label": ...}`, `entry` is a single object when there is one review
//! and absent when there are none, and numbers arrive as strings.
//!
//! A walk cut by `max_pages` or a failing page saves the next page's number in the
//! cursor's gap, and the next run goes on from there (new reviews push older ones to
//! later pages, never earlier, so nothing is jumped). Past page 10 there is nothing to
//! go on with: a walk that reads page 10 without reaching the reviews read before is
//! recorded as partial, since the reviews in between are out of the feed's reach.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use url::Url;

use super::cursor::{self, NewestFirst, Skips, Walk, Window};
use super::http::{shown, Http, HttpOptions};
use super::{Connector, FetchContext, FetchError, Fetched, Params};
use crate::domain::{Engagement, FetchErrorKind, Mention};

const DEFAULT_BASE: &str = "https://itunes.apple.com";
/// Apple serves no page after this one.
const LAST_PAGE: u32 = 10;

/// One app in one storefront.
#[derive(Debug, Clone)]
pub struct AppStore {
    base: Url,
    app_id: String,
    country: String,
    max_pages: u32,
    http: HttpOptions,
}

impl AppStore {
    pub fn from_params(p: &Params) -> Result<Self, String> {
        p.only(&["app_id", "country", "base_url", "max_pages"])?;
        let app_id = p
            .required_str("app_id")?
            .trim_start_matches("id")
            .to_string();
        if !app_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "appstore source: `app_id` must be the numeric id from the app's URL (…/id284882215), not `{app_id}`"
            ));
        }
        let country = p.str_or("country", "us")?.to_ascii_lowercase();
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!(
                "appstore source: `country` must be a two-letter storefront code such as \"us\", not `{country}`"
            ));
        }
        Ok(AppStore {
            base: p.url_or("base_url", DEFAULT_BASE)?,
            app_id,
            country,
            max_pages: p.u64_in("max_pages", 10, 1..=10)? as u32,
            http: HttpOptions::from_params(p)?,
        })
    }

    fn page_url(&self, page: u32) -> Url {
        super::http::join(
            &self.base,
            &format!(
                "{}/rss/customerreviews/page={page}/id={}/sortby=mostrecent/json",
                self.country, self.app_id
            ),
        )
    }
}

#[async_trait]
impl Connector for AppStore {
    fn kind(&self) -> &'static str {
        "appstore"
    }

    async fn fetch(&self, ctx: &FetchContext, cursor: Option<&str>) -> Result<Fetched, FetchError> {
        let http = Http::new(&ctx.http, &self.http);
        let mut window = Window::newest_first(cursor::load::<NewestFirst>("appstore", cursor), ctx);
        let mut skips = Skips::default();
        let mut seen = HashSet::new();
        let mut mentions = Vec::new();
        let mut stop_note = None;
        let mut partial = None;
        let mut retry_after = None;
        let mut walk = Walk::Complete;
        let first = window
            .resume()
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| (1..=LAST_PAGE).contains(p))
            .unwrap_or(1);
        let last = (first + self.max_pages - 1).min(LAST_PAGE);

        for page in first..=last {
            let url = self.page_url(page);
            let entries = match http.get(&url).await.and_then(|r| parse_feed(&r.body, &url)) {
                Ok(e) => e,
                // Past the last page Apple answers an error or an empty feed.
                Err(e) if page > 1 && e.kind == FetchErrorKind::NotFound => break,
                Err(e) if page == first => return Err(e),
                // A later page failing keeps what was read; the next run starts there.
                Err(e) => {
                    stop_note = Some(format!(
                        "stopped at page {page}: {e}; the next run goes on from that page"
                    ));
                    partial = Some(e.kind);
                    retry_after = e.retry_after;
                    walk = Walk::Cut {
                        resume: Some(page.to_string()),
                    };
                    break;
                }
            };
            if entries.is_empty() {
                break;
            }
            let mut reached_old = false;
            for (i, entry) in entries.iter().enumerate() {
                if entry.get("im:name").is_some() && entry.get("im:rating").is_none() {
                    continue; // the app's own description, sent first by older feeds
                }
                let m = match review(entry, &self.country) {
                    Ok(m) => m,
                    Err(why) => {
                        skips.add(format!("page {page} entry {}: {why}", i + 1));
                        continue;
                    }
                };
                if window.is_behind(m.published_at) {
                    reached_old = true;
                }
                let new = window.admits(m.published_at, &m.external_id)
                    && seen.insert(m.external_id.clone());
                window.saw(m.published_at, &m.external_id);
                if new {
                    mentions.push(m);
                }
            }
            if reached_old {
                break;
            }
            if page == last && page < LAST_PAGE {
                stop_note = Some(cursor::page_limit_note(self.max_pages, "reviews"));
                walk = Walk::Cut {
                    resume: Some((page + 1).to_string()),
                };
            } else if page == LAST_PAGE {
                // Nothing older is served: going on would only read page 10 again.
                let oldest = window.oldest().at.map_or_else(String::new, |at| {
                    format!(" and {}", at.format("%Y-%m-%d %H:%M UTC"))
                });
                stop_note = Some(format!(
                    "Apple's feed ends at page {LAST_PAGE} (its 500 most recent reviews) before \
                     the reviews read before: any reviews between {}{oldest} are missing",
                    window.lower_bound().format("%Y-%m-%d %H:%M UTC")
                ));
                partial = Some(FetchErrorKind::Other);
            }
        }

        Ok(Fetched {
            mentions,
            cursor: Some(cursor::save(&window.finish(walk))?),
            skipped: skips.count,
            note: cursor::join_notes([skips.note(), stop_note]),
            aggregate: None,
            partial,
            retry_after,
        })
    }
}

/// The entries of one page: a list, a single object, or none at all.
fn parse_feed(body: &[u8], url: &Url) -> Result<Vec<Value>, FetchError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        FetchError::new(
            FetchErrorKind::Malformed,
            format!("invalid JSON from {}: {e}", shown(url)),
        )
    })?;
    let feed = v.get("feed").ok_or_else(|| {
        FetchError::new(
            FetchErrorKind::Malformed,
            format!("{}: no `feed` object in the answer", shown(url)),
        )
    })?;
    Ok(match feed.get("entry") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        Some(_) => {
            return Err(FetchError::new(
                FetchErrorKind::Malformed,
                format!(
                    "{}: `feed.entry` is neither a list nor an object",
                    shown(url)
                ),
            ))
        }
    })
}

/// `{"key": {"label": "..."}}` -> `"..."`.
fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.get("label")?.as_str().map(str::trim)
}

fn review(e: &Value, country: &str) -> Result<Mention, String> {
    let id = label(e, "id").filter(|s| !s.is_empty()).ok_or("no id")?;
    let rating: u8 = label(e, "im:rating")
        .ok_or("no im:rating")?
        .parse()
        .map_err(|_| "im:rating is not a number")?;
    if !(1..=5).contains(&rating) {
        return Err(format!("im:rating {rating} is outside 1-5"));
    }
    let updated = label(e, "updated").ok_or("no updated date")?;
    let published_at = DateTime::parse_from_rfc3339(updated)
        .map_err(|_| format!("bad updated date {updated:?}"))?
        .with_timezone(&Utc);
    let text = label(e, "content").unwrap_or("").to_string();
    let title = label(e, "title")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if text.is_empty() && title.is_none() {
        return Err("no content".into());
    }
    let author = e
        .get("author")
        .and_then(|a| label(a, "name"))
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    // `link` is one object, or a list when Apple adds more relations.
    let link = match e.get("link") {
        Some(Value::Array(a)) => a.first(),
        other => other,
    };
    let url = link
        .and_then(|l| l.pointer("/attributes/href"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let number = |k| label(e, k).and_then(|s| s.parse::<i64>().ok());
    let version = label(e, "im:version").filter(|v| !v.is_empty());
    Ok(Mention {
        external_id: id.to_string(),
        url,
        author,
        title,
        text,
        rating: Some(rating),
        engagement: Engagement {
            // "Helpful" votes: the sum is helpful minus unhelpful, never shown negative.
            likes: number("im:voteSum").unwrap_or(0).max(0),
            ..Engagement::default()
        },
        language: None,
        published_at,
        owner_reply: None,
        owner_reply_at: None,
        extra: Some(json!({
            "app_version": version,
            "vote_sum": number("im:voteSum"),
            "vote_count": number("im:voteCount"),
            "country": country,
        })),
    })
}
