//! A Mastodon instance's public hashtag timeline, `/api/v1/timelines/tag/{tag}`.
//!
//! Status ids are time-ordered, so the cursor is the newest id seen. With a cursor the
//! connector asks for `min_id` (the page right after it) and walks newer through the
//! `Link: rel="prev"` header, so a walk stopped early leaves nothing behind: the next run
//! goes on from the newest status read. A first run starts at the newest page and walks
//! older through `rel="next"` until the look-back; when the page limit, the rate limit
//! (`X-RateLimit-Remaining: 0`) or a failing page (a 429) stops it first, the cursor
//! keeps the [`Gap`] below the oldest status read, and the next runs read it (from
//! `max_id`, down to the look-back) before anything newer. A page failing after others
//! were read keeps what was read and records the run as partial. The cursor moves over
//! every status read, including ones left out, so a status without text is not read and
//! counted again on every run.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::Url;

use super::cursor::{self, Gap, NewestFirst, Skips, Walk, Window};
use super::http::{Http, HttpOptions, Response};
use super::text::{html_to_text, language_allowed};
use super::{Connector, FetchContext, FetchError, Fetched, Params};
use crate::domain::{Engagement, FetchErrorKind, Mention};

const DEFAULT_BASE: &str = "https://mastodon.social";

#[derive(Debug, Clone)]
pub struct Mastodon {
    base: Url,
    tag: Option<String>,
    /// Statuses per page; 40 is the API's maximum.
    page_size: usize,
    max_pages: u32,
    http: HttpOptions,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MastodonCursor {
    newest_id: String,
    /// What a walk back from the newest status (a first run's, or one reading this gap)
    /// did not reach: the statuses older than `resume` (a `max_id`) within the look-back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gap: Option<Gap>,
}

impl Mastodon {
    pub fn from_params(p: &Params) -> Result<Self, String> {
        p.only(&["base_url", "tag", "page_size", "max_pages"])?;
        let tag = p.str("tag")?.map(clean_tag);
        if tag.as_deref() == Some("") {
            return Err("mastodon source: `tag` has no letters or digits".into());
        }
        Ok(Mastodon {
            base: p.url_or("base_url", DEFAULT_BASE)?,
            tag,
            page_size: p.u64_in("page_size", 40, 1..=40)? as usize,
            max_pages: p.u64_in("max_pages", 5, 1..=40)? as u32,
            http: HttpOptions::from_params(p)?,
        })
    }
}

/// Hashtags are letters, digits and underscores; "#Example Notes" becomes "ExampleNotes".
fn clean_tag(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Orders snowflake ids as numbers (they are decimal strings of varying length).
fn id_newer(a: &str, b: &str) -> bool {
    match (a.parse::<u128>(), b.parse::<u128>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => (a.len(), a) > (b.len(), b),
    }
}

#[async_trait]
impl Connector for Mastodon {
    fn kind(&self) -> &'static str {
        "mastodon"
    }

    async fn fetch(&self, ctx: &FetchContext, cursor: Option<&str>) -> Result<Fetched, FetchError> {
        let tag = self
            .tag
            .clone()
            .or_else(|| {
                ctx.keywords
                    .iter()
                    .map(|k| clean_tag(k))
                    .find(|t| !t.is_empty())
            })
            .ok_or_else(|| {
                FetchError::new(
                    FetchErrorKind::Config,
                    "mastodon source needs `tag` (or a keyword on its watch)",
                )
            })?;
        let prev: Option<MastodonCursor> = cursor::load("mastodon", cursor);
        // A walk back from the newest, read newest first within the look-back: a first
        // run's, or one going on below the oldest status a cut one read. Otherwise the
        // walk goes forward from the newest status read.
        let mut back = match &prev {
            None => Some(Window::newest_first(None, ctx)),
            Some(c) => c.gap.clone().map(|gap| {
                let cursor = NewestFirst {
                    gap: Some(gap),
                    ..NewestFirst::default()
                };
                Window::newest_first(Some(cursor), ctx)
            }),
        };
        let forward = back.is_none();
        let mut url = super::http::join(&self.base, &format!("api/v1/timelines/tag/{tag}"));
        url.query_pairs_mut()
            .append_pair("limit", &self.page_size.to_string());
        if let Some(max_id) = back.as_ref().and_then(Window::resume) {
            url.query_pairs_mut().append_pair("max_id", max_id);
        } else if let Some(c) = prev.as_ref().filter(|_| forward) {
            url.query_pairs_mut().append_pair("min_id", &c.newest_id);
        }
        let http = Http::new(&ctx.http, &self.http);
        let mut newest = prev.map(|c| c.newest_id);
        // The oldest status the walk back passed: the next run goes on below it.
        let mut oldest_id: Option<String> = None;
        let mut skips = Skips::default();
        let mut mentions = Vec::new();
        let mut walk = Walk::Complete;
        let mut stop_note = None;
        let mut partial = None;
        let mut retry_after = None;
        let goes_on = if forward {
            "the next run goes on from the newest status read"
        } else {
            "the next run goes on from the oldest status read, down to the look-back"
        };

        for page in 1..=self.max_pages {
            let answer = http.get(&url).await.and_then(|resp| {
                let statuses: Vec<Value> = resp.json()?;
                Ok((resp, statuses))
            });
            let (resp, statuses) = match answer {
                Ok(a) => a,
                Err(e) if page == 1 => return Err(e),
                // A 429 (or any failure) after some pages: keep what was read.
                Err(e) => {
                    stop_note = Some(format!("stopped at page {page}: {e}; {goes_on}"));
                    partial = Some(e.kind);
                    retry_after = e.retry_after;
                    walk = Walk::Cut {
                        resume: oldest_id.clone(),
                    };
                    break;
                }
            };
            let mut reached_old = false;
            for (i, s) in statuses.iter().enumerate() {
                if let Some(id) = s.get("id").and_then(Value::as_str).map(str::trim) {
                    if !id.is_empty() && newest.as_deref().is_none_or(|n| id_newer(id, n)) {
                        newest = Some(id.to_string());
                    }
                    if !id.is_empty() && oldest_id.as_deref().is_none_or(|o| id_newer(o, id)) {
                        oldest_id = Some(id.to_string());
                    }
                }
                if !s.get("reblog").is_none_or(Value::is_null) {
                    continue; // a boost repeats a status that is listed in its own right
                }
                let m = match status(s) {
                    Ok(m) => m,
                    Err(why) => {
                        skips.add(format!("page {page} status {}: {why}", i + 1));
                        continue;
                    }
                };
                if let Some(window) = back.as_mut() {
                    reached_old |= window.is_behind(m.published_at);
                    let admitted = window.admits(m.published_at, &m.external_id);
                    window.saw(m.published_at, &m.external_id);
                    if !admitted {
                        continue;
                    }
                }
                if language_allowed(&ctx.languages, m.language.as_deref()) {
                    mentions.push(m);
                }
            }
            let next = link(&resp, if forward { "prev" } else { "next" })
                .filter(|u| u.origin() == self.base.origin());
            // A short page is the last one; asking again would cost a request for nothing.
            let full = statuses.len() >= self.page_size;
            let Some(next) = next.filter(|_| full && !reached_old) else {
                break;
            };
            if resp.header("x-ratelimit-remaining").map(str::trim) == Some("0") {
                let reset = resp.header("x-ratelimit-reset").unwrap_or("later");
                stop_note = Some(format!(
                    "rate limit reached after page {page} (resets {reset}); {goes_on}"
                ));
                // The next run waits for the reset (an RFC 3339 time), as it would for
                // a Retry-After: one sooner would only be refused.
                retry_after = chrono::DateTime::parse_from_rfc3339(reset.trim())
                    .ok()
                    .and_then(|at| {
                        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                            .to_std()
                            .ok()
                    });
                walk = Walk::Cut {
                    resume: oldest_id.clone(),
                };
                break;
            }
            if page == self.max_pages {
                // Forward, the cursor alone says where to go on.
                if !forward {
                    stop_note = Some(format!(
                        "stopped at the page limit (max_pages = {}) before reaching the \
                         look-back; {goes_on}",
                        self.max_pages
                    ));
                    walk = Walk::Cut {
                        resume: oldest_id.clone(),
                    };
                }
                break;
            }
            url = next;
        }

        let cursor = match newest {
            Some(newest_id) => Some(cursor::save(&MastodonCursor {
                newest_id,
                gap: back.and_then(|window| window.finish(walk).gap),
            })?),
            None => None,
        };
        Ok(Fetched {
            mentions,
            cursor,
            skipped: skips.count,
            note: cursor::join_notes([skips.note(), stop_note]),
            aggregate: None,
            partial,
            retry_after,
        })
    }
}

/// The URL with relation `rel` in a `Link` header (RFC 8288).
fn link(resp: &Response, rel: &str) -> Option<Url> {
    let header = resp.header("link")?;
    for part in header.split(',') {
        let part = part.trim();
        let (target, params) = part.strip_prefix('<')?.split_once('>')?;
        let has_rel = params.split(';').any(|p| {
            p.trim()
                .strip_prefix("rel=")
                .map(|v| v.trim_matches('"'))
                .is_some_and(|v| v.split_whitespace().any(|r| r == rel))
        });
        if has_rel {
            return Url::parse(target).ok();
        }
    }
    None
}

fn status(s: &Value) -> Result<Mention, String> {
    let str_of = |k: &str| s.get(k).and_then(Value::as_str).map(str::trim);
    let id = str_of("id").filter(|i| !i.is_empty()).ok_or("no id")?;
    let created = str_of("created_at").ok_or("no created_at")?;
    let published_at = DateTime::parse_from_rfc3339(created)
        .map_err(|_| format!("bad created_at {created:?}"))?
        .with_timezone(&Utc);
    let content = str_of("content").ok_or("no content")?;
    let text = html_to_text(content);
    // A content warning reads like a title: it is what followers see first.
    let title = str_of("spoiler_text")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if text.is_empty() && title.is_none() {
        return Err("no text (media only)".into());
    }
    let count = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);
    let tags: Vec<&str> = s
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|t| t.get("name")?.as_str()).collect())
        .unwrap_or_default();
    Ok(Mention {
        external_id: id.to_string(),
        url: str_of("url").or(str_of("uri")).map(str::to_string),
        author: s
            .pointer("/account/acct")
            .and_then(Value::as_str)
            .map(str::to_string),
        title,
        text,
        rating: None,
        engagement: Engagement {
            likes: count("favourites_count"),
            replies: count("replies_count"),
            reposts: count("reblogs_count"),
        },
        language: str_of("language").map(str::to_string),
        published_at,
        owner_reply: None,
        owner_reply_at: None,
        extra: Some(json!({
            "tags": tags,
            "account_url": s.pointer("/account/url"),
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_as_numbers() {
        assert!(id_newer("113000000000000010", "99999999999999999"));
        assert!(!id_newer("5", "5"));
        assert_eq!(clean_tag("#Example Notes!"), "ExampleNotes");
    }
}
