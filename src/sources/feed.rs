//! Any RSS 2.0, RSS 1.0, Atom or JSON Feed: Google Alerts, Google News searches, Reddit
//! search `.rss`, YouTube channel feeds, a company's own review feed.
//!
//! Feeds are a sliding window of recent items in no guaranteed order, and their dates
//! are the article's or post's (Google News, Reddit search), not when the item reached
//! the feed: an item dated yesterday can appear after one dated today, and a date can
//! lie in the future. So what is new is decided by id, not date: the cursor keeps the
//! ids seen in the feed recently (see [`SeenItems`]), and the date only bounds the first
//! run's look-back. Passing an item on twice is harmless (the store de-duplicates by
//! id); leaving one out is not, so when unsure an item is passed on. A feed is not
//! a search: the watch's keywords filter its items (unless `filter_keywords = false`,
//! for feeds that are about the product by construction). Conditional requests make an
//! unchanged feed cost one 304.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use feed_rs::model::{Entry, Link};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::cursor::{self, Skips, Watermark};
use super::http::{shown, Http, HttpOptions, Validators};
use super::text::{hash_id, html_to_text, language_allowed, matches_keywords};
use super::{Connector, FetchContext, FetchError, Fetched, Params};
use crate::domain::{FetchErrorKind, Mention};

/// How long an item is remembered after it left the feed. Feeds rarely bring an item
/// back after weeks, and if one does it is only passed on again.
const SEEN_RETENTION_DAYS: i64 = 30;
/// Items remembered at most, so the cursor stays small (about 30 bytes each); the ones
/// seen last are kept. Far more than a feed holds at a time (Google News: 100).
const MAX_SEEN: usize = 2000;

#[derive(Debug, Clone)]
pub struct Feed {
    url: Url,
    filter_keywords: bool,
    http: HttpOptions,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FeedCursor {
    /// The items seen in the feed, with the day each was last there. Absent in cursors
    /// written before items were remembered by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seen: Option<SeenItems>,
    /// Older cursors: the newest date seen and the ids at that date. Read, never written.
    #[serde(flatten, skip_serializing)]
    legacy_newest: Watermark,
    /// Older cursors: ids of undated items already passed on. Read, never written.
    #[serde(default, rename = "undated", skip_serializing)]
    legacy_undated: Vec<String>,
    #[serde(flatten)]
    validators: Validators,
}

/// Items by [`seen_key`], with the day (UTC) each was last seen in the feed.
type SeenItems = BTreeMap<String, NaiveDate>;

/// How the cursor names an item: a 64-bit hash of its id. Google News ids run to 200
/// characters; a hash keeps the cursor's size independent of them, and two of the
/// 2000 remembered items sharing one is a one-in-10^13 chance.
fn seen_key(id: &str) -> String {
    hash_id(&[id])[..16].to_string()
}

/// What the previous fetches tell about an item.
enum Known {
    /// No cursor: everything within the look-back is new.
    Nothing,
    /// A cursor from before ids were kept (`newest` + `undated`). Kept readable so an
    /// upgrade loses nothing: an item is new if that cursor would have taken it, or if
    /// it is within the look-back (the old cursor dropped such items wrongly, and the
    /// store absorbs the ones it already has).
    Legacy {
        newest: Watermark,
        undated: HashSet<String>,
    },
    Seen(SeenItems),
}

impl Known {
    fn from_cursor(prev: Option<&FeedCursor>) -> Known {
        match prev {
            None => Known::Nothing,
            Some(FeedCursor { seen: Some(s), .. }) => Known::Seen(s.clone()),
            Some(c) => Known::Legacy {
                newest: c.legacy_newest.clone(),
                undated: c.legacy_undated.iter().cloned().collect(),
            },
        }
    }

    fn is_new(&self, id: &str, dated: Option<DateTime<Utc>>, since: DateTime<Utc>) -> bool {
        let within_look_back = dated.is_none_or(|at| at >= since);
        match self {
            Known::Nothing => within_look_back,
            Known::Legacy { newest, undated } => match dated {
                Some(at) => within_look_back || newest.is_new(at, id),
                None => !undated.contains(id),
            },
            Known::Seen(seen) => !seen.contains_key(&seen_key(id)),
        }
    }

    /// The items to remember after this fetch: the ones in the feed now, then the
    /// previously remembered ones still within the retention, last seen first, up to
    /// [`MAX_SEEN`].
    fn remember(self, in_feed: &[String], now: DateTime<Utc>) -> SeenItems {
        let today = now.date_naive();
        let keep_from = today - Duration::days(SEEN_RETENTION_DAYS);
        let mut earlier: Vec<(String, NaiveDate)> = match self {
            Known::Seen(s) => s.into_iter().filter(|(_, day)| *day >= keep_from).collect(),
            _ => Vec::new(),
        };
        earlier.sort_by_key(|(_, day)| std::cmp::Reverse(*day));
        let mut seen = SeenItems::new();
        for id in in_feed {
            if seen.len() >= MAX_SEEN {
                break;
            }
            seen.insert(seen_key(id), today);
        }
        for (key, day) in earlier {
            if seen.len() >= MAX_SEEN {
                break;
            }
            seen.entry(key).or_insert(day);
        }
        seen
    }
}

impl Feed {
    pub fn from_params(p: &Params) -> Result<Self, String> {
        p.only(&["url", "filter_keywords"])?;
        Ok(Feed {
            url: p.required_url("url")?,
            filter_keywords: p.bool_or("filter_keywords", true)?,
            http: HttpOptions::from_params(p)?,
        })
    }
}

#[async_trait]
impl Connector for Feed {
    fn kind(&self) -> &'static str {
        "feed"
    }

    async fn fetch(&self, ctx: &FetchContext, cursor: Option<&str>) -> Result<Fetched, FetchError> {
        let prev: Option<FeedCursor> = cursor::load("feed", cursor);
        let validators = prev
            .as_ref()
            .map(|c| c.validators.clone())
            .unwrap_or_default();
        let http = Http::new(&ctx.http, &self.http);
        let Some(resp) = http.get_conditional(&self.url, &validators).await? else {
            return Ok(Fetched::default()); // 304: nothing new, cursor unchanged
        };
        let mut parsed = feed_rs::parser::Builder::new()
            .base_uri(Some(self.url.as_str()))
            .id_generator(stable_id)
            .build()
            .parse(resp.body.as_slice())
            .map_err(|e| {
                FetchError::new(
                    FetchErrorKind::Malformed,
                    format!(
                        "{} is not a readable RSS or Atom feed: {e}",
                        shown(&self.url)
                    ),
                )
            })?;

        let bare = stable_id(&[], &None, None);
        for e in parsed.entries.iter_mut().filter(|e| e.id == bare) {
            if let Some(id) = id_from_text(e) {
                e.id = id;
            }
        }

        let known = Known::from_cursor(prev.as_ref());
        // Every item in the feed, passed on or not, so none is judged again next time.
        let mut in_feed = Vec::with_capacity(parsed.entries.len());
        let mut skips = Skips::default();
        let mut mentions = Vec::new();
        let feed_title = parsed.title.as_ref().map(|t| html_to_text(&t.content));
        let keywords: &[String] = if self.filter_keywords {
            &ctx.keywords
        } else {
            &[]
        };

        for (i, entry) in parsed.entries.iter().enumerate() {
            let new = known.is_new(
                &entry.id,
                entry.published.or(entry.updated),
                ctx.first_run_since,
            );
            in_feed.push(entry.id.clone());
            if !new {
                continue;
            }
            let Some(mut m) = mention(entry, ctx) else {
                skips.add(format!("item {} ({}): no title or text", i + 1, entry.id));
                continue;
            };
            let lang = entry.language.as_deref().or(parsed.language.as_deref());
            if !language_allowed(&ctx.languages, lang)
                || !matches_keywords(keywords, &[m.title.as_deref().unwrap_or(""), &m.text])
            {
                continue;
            }
            m.language = lang.map(str::to_string);
            if let Some(extra) = m.extra.as_mut() {
                extra["feed"] = json!(feed_title);
            }
            mentions.push(m);
        }

        let next = FeedCursor {
            seen: Some(known.remember(&in_feed, ctx.now)),
            validators: resp.validators(),
            ..FeedCursor::default()
        };
        Ok(Fetched {
            mentions,
            cursor: Some(cursor::save(&next)?),
            skipped: skips.count,
            note: skips.note(),
            aggregate: None,
            partial: None,
            retry_after: None,
        })
    }
}

/// An id for items that carry none, from their link and title, so the same item gets
/// the same id on every fetch (the parser's default is a random UUID).
fn stable_id(links: &[Link], title: &Option<feed_rs::model::Text>, _base: Option<&str>) -> String {
    let link = links.first().map(|l| l.href.as_str()).unwrap_or("");
    let title = title.as_ref().map(|t| t.content.as_str()).unwrap_or("");
    format!("h:{}", hash_id(&[link, title]))
}

/// An item with no id, link or title (a bare `<description>`, as some alert feeds send)
/// is named by its text: the generator above sees only links and title, and would give
/// every such item the same id, so all but one were taken for repeats.
fn id_from_text(e: &Entry) -> Option<String> {
    let summary = e.summary.as_ref().map(|t| t.content.as_str());
    let content = e.content.as_ref().and_then(|c| c.body.as_deref());
    let text = summary.or(content).filter(|t| !t.is_empty())?;
    Some(format!("h:{}", hash_id(&["", "", text])))
}

fn mention(e: &Entry, ctx: &FetchContext) -> Option<Mention> {
    let title = e
        .title
        .as_ref()
        .map(|t| html_to_text(&t.content))
        .filter(|t| !t.is_empty());
    let body = e
        .content
        .as_ref()
        .and_then(|c| c.body.as_deref())
        .or(e.summary.as_ref().map(|s| s.content.as_str()))
        // YouTube puts the video description in media:group.
        .or_else(|| {
            e.media
                .iter()
                .find_map(|m| m.description.as_ref().map(|d| d.content.as_str()))
        })
        .map(html_to_text)
        .filter(|t| !t.is_empty());
    let text = body.or_else(|| title.clone())?;
    let link = e
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .or(e.links.first())
        .map(|l| unwrap_redirect(&l.href));
    // A date in the future is a feed's mistake (or a time-zone slip); as the item's
    // date it would sort above everything for weeks, so it counts as now.
    let at = e
        .published
        .or(e.updated)
        .map_or(ctx.now, |at| at.min(ctx.now));
    let categories: Vec<&str> = e.categories.iter().map(|c| c.term.as_str()).collect();
    Some(Mention {
        external_id: e.id.clone(),
        url: link,
        author: e
            .authors
            .first()
            .map(|a| a.name.trim().to_string())
            // The parser names an Atom author with an empty <name> "unknown".
            .filter(|a| !a.is_empty() && a != "unknown"),
        title,
        text,
        rating: None,
        engagement: Default::default(),
        language: None,
        published_at: at,
        owner_reply: None,
        owner_reply_at: None,
        extra: Some(json!({ "categories": categories })),
    })
}

/// Google Alerts and Google News link through `google.com/url?...&url=<real>`; keep the
/// real address so links in emails go where the reader expects and do not track.
pub fn unwrap_redirect(href: &str) -> String {
    let Ok(u) = Url::parse(href) else {
        return href.to_string();
    };
    let is_google = u
        .host_str()
        .is_some_and(|h| h == "google.com" || h.ends_with(".google.com"));
    if is_google && u.path() == "/url" {
        if let Some((_, real)) = u.query_pairs().find(|(k, _)| k == "url" || k == "q") {
            if real.starts_with("http://") || real.starts_with("https://") {
                return real.into_owned();
            }
        }
    }
    href.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn remembered_items_stay_bounded_in_number_and_age() {
        let now = Utc.with_ymd_and_hms(2026, 11, 5, 8, 0, 0).unwrap();
        let day = |d: i64| now.date_naive() - Duration::days(d);
        let mut before = SeenItems::new();
        before.insert(seen_key("gone-40-days"), day(40));
        before.insert(seen_key("gone-29-days"), day(29));
        before.insert(seen_key("still-there"), day(3));
        let in_feed: Vec<String> = vec!["still-there".into(), "new".into()];

        let seen = Known::Seen(before.clone()).remember(&in_feed, now);
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen.get(&seen_key("still-there")), Some(&day(0)));
        assert_eq!(seen.get(&seen_key("gone-29-days")), Some(&day(29)));
        assert!(!seen.contains_key(&seen_key("gone-40-days")));

        // A feed bigger than the bound: its own items first, and no more than the bound.
        let huge: Vec<String> = (0..MAX_SEEN + 10).map(|i| format!("item-{i}")).collect();
        let seen = Known::Seen(before).remember(&huge, now);
        assert_eq!(seen.len(), MAX_SEEN);
        assert!(seen.contains_key(&seen_key("item-0")));
        assert!(!seen.contains_key(&seen_key("gone-29-days")));
    }

    #[test]
    fn google_redirects_are_unwrapped() {
        let href = "https://www.google.com/url?rct=j&sa=t&url=https://example.com/a%3Fb%3D1&ct=ga&cd=CAIyGg&usg=AOvVaw";
        assert_eq!(unwrap_redirect(href), "https://example.com/a?b=1");
        assert_eq!(
            unwrap_redirect("https://example.com/url?url=https://x"),
            "https://example.com/url?url=https://x"
        );
    }
}
