//! Hacker News stories and comments through the Algolia search API, newest first
//! (`/search_by_date`), restricted on the server to items at or after the last seen
//! `created_at_i` so a run reads only what is new. A walk cut by `max_pages` leaves a gap
//! in the cursor; the next run reads it first, bounded above on the server by the oldest
//! `created_at_i` read, so a busy day is fetched over several runs and nothing is jumped.
//!
//! The query is the source's `query`, or else each of the watch's keywords in turn; the
//! gap is bounded by the oldest hit read by the queries that were cut, and only they
//! search it: the others read down to the watermark already (see
//! [`super::cursor::Window::end_query`]). A keyword added later first walks back within
//! the first-run look-back on its own (see [`Searches`]).

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use url::Url;

use super::cursor::{self, NewestFirst, Searches, Skips};
use super::http::{join, shown, Http, HttpOptions};
use super::text::html_to_text;
use super::{Connector, FetchContext, FetchError, Fetched, Params};
use crate::domain::{Engagement, FetchErrorKind, Mention};

const DEFAULT_BASE: &str = "https://hn.algolia.com/api/v1";
const ITEM_URL: &str = "https://news.ycombinator.com/item?id=";

#[derive(Debug, Clone)]
pub struct HackerNews {
    base: Url,
    query: Option<String>,
    tags: String,
    page_size: u32,
    max_pages: u32,
    http: HttpOptions,
}

impl HackerNews {
    pub fn from_params(p: &Params) -> Result<Self, String> {
        p.only(&["query", "tags", "base_url", "page_size", "max_pages"])?;
        Ok(HackerNews {
            base: p.url_or("base_url", DEFAULT_BASE)?,
            query: p.str("query")?.map(str::to_string),
            tags: p.str_or("tags", "(story,comment)")?.to_string(),
            page_size: p.u64_in("page_size", 100, 1..=1000)? as u32,
            max_pages: p.u64_in("max_pages", 5, 1..=50)? as u32,
            http: HttpOptions::from_params(p)?,
        })
    }
}

#[async_trait]
impl Connector for HackerNews {
    fn kind(&self) -> &'static str {
        "hackernews"
    }

    async fn fetch(&self, ctx: &FetchContext, cursor: Option<&str>) -> Result<Fetched, FetchError> {
        let queries = super::text::search_queries(
            self.query.as_deref(),
            &ctx.keywords,
            "hackernews",
            "query",
        )?;
        let http = Http::new(&ctx.http, &self.http);
        let mut searches = Searches::new(
            cursor::load::<NewestFirst>("hackernews", cursor),
            &queries,
            ctx,
        );
        let mut cut = false;
        let mut skips = Skips::default();
        let mut seen = HashSet::new();
        let mut mentions = Vec::new();

        for q in &queries {
            let window = searches.window(q);
            if window.has_read_query(q) {
                continue;
            }
            let since = window.lower_bound().timestamp();
            // Inclusive at the top too: the gap's oldest second may hold hits not read yet.
            let numeric_filters = match window.gap_top() {
                Some(top) => format!("created_at_i>={since},created_at_i<={}", top.timestamp()),
                None => format!("created_at_i>={since}"),
            };
            let mut query_cut = false;
            for page in 0..self.max_pages {
                let mut url = join(&self.base, "search_by_date");
                url.query_pairs_mut()
                    .append_pair("query", q)
                    .append_pair("tags", &self.tags)
                    .append_pair("numericFilters", &numeric_filters)
                    .append_pair("hitsPerPage", &self.page_size.to_string())
                    .append_pair("page", &page.to_string());
                let body: Value = http.get(&url).await?.json()?;
                let hits = body.get("hits").and_then(Value::as_array).ok_or_else(|| {
                    FetchError::new(
                        FetchErrorKind::Malformed,
                        format!("{}: no `hits` list", shown(&url)),
                    )
                })?;
                for (i, h) in hits.iter().enumerate() {
                    let m = match hit(h) {
                        Ok(m) => m,
                        Err(why) => {
                            // Counted once, and passed over so the walk's progress
                            // includes it.
                            let new = match object_id(h).zip(created_at(h)) {
                                Some((id, at)) => {
                                    window.passed_unreadable(at, id) && seen.insert(id.to_string())
                                }
                                None => true,
                            };
                            if new {
                                skips.add(format!("{q:?} page {page} hit {}: {why}", i + 1));
                            }
                            continue;
                        }
                    };
                    let new = window.admits(m.published_at, &m.external_id)
                        && seen.insert(m.external_id.clone());
                    window.saw(m.published_at, &m.external_id);
                    if new {
                        mentions.push(m);
                    }
                }
                let pages = body.get("nbPages").and_then(Value::as_u64).unwrap_or(0);
                if hits.is_empty() || u64::from(page) + 1 >= pages {
                    break;
                }
                query_cut = page + 1 == self.max_pages;
            }
            window.end_query(q, query_cut);
            cut |= query_cut;
        }

        Ok(Fetched {
            mentions,
            note: cursor::join_notes([
                skips.note(),
                cut.then(|| cursor::page_limit_note(self.max_pages, "hits")),
            ]),
            cursor: Some(cursor::save(&searches.finish())?),
            skipped: skips.count,
            aggregate: None,
            partial: None,
            retry_after: None,
        })
    }
}

/// A hit's id and time (`created_at_i`, the time the search is sorted and filtered by)
/// are its place in the walk, read even from a hit that cannot become a mention.
fn object_id(h: &Value) -> Option<&str> {
    h.get("objectID")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn created_at(h: &Value) -> Option<DateTime<Utc>> {
    h.get("created_at_i")
        .and_then(Value::as_i64)
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

fn hit(h: &Value) -> Result<Mention, String> {
    let str_of = |k: &str| {
        h.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let id = object_id(h).ok_or("no objectID")?;
    let at = created_at(h).ok_or("no created_at_i")?;
    let tags: Vec<&str> = h
        .get("_tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let is_comment = tags.contains(&"comment") || str_of("comment_text").is_some();
    let (title, text) = if is_comment {
        let text = str_of("comment_text")
            .map(html_to_text)
            .ok_or("comment without text")?;
        (None, text)
    } else {
        let title = str_of("title")
            .map(html_to_text)
            .ok_or("story without title")?;
        let text = str_of("story_text")
            .map(html_to_text)
            .unwrap_or_else(|| title.clone());
        (Some(title), text)
    };
    let count = |k: &str| h.get(k).and_then(Value::as_i64).unwrap_or(0);
    Ok(Mention {
        external_id: id.to_string(),
        url: Some(format!("{ITEM_URL}{id}")),
        author: str_of("author").map(str::to_string),
        title,
        text,
        rating: None,
        engagement: Engagement {
            likes: count("points"),
            replies: count("num_comments"),
            reposts: 0,
        },
        language: None,
        published_at: at,
        owner_reply: None,
        owner_reply_at: None,
        extra: Some(json!({
            "type": if is_comment { "comment" } else { "story" },
            "link": str_of("url"),
            "story_id": h.get("story_id"),
            "story_title": str_of("story_title"),
        })),
    })
}
