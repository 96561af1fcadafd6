//! Bluesky post search, `app.bsky.feed.searchPosts` (sort latest, paged by cursor),
//! signed in with a handle and an app password.
//!
//! Signing in (`com.atproto.server.createSession`) is rate limited hard by the service
//! (tens per five minutes, a few hundred a day per account), so a session is made once per process
//! and reused: connectors are rebuilt for every fetch, so sessions live in a process-wide
//! map keyed by service and handle. When the access token expires the refresh token
//! renews it (`com.atproto.server.refreshSession`); only when that fails too does the
//! connector sign in again.
//!
//! A walk cut by `max_pages` leaves a gap in the cursor; the next run reads it first,
//! with `until` just after the oldest post read, so nothing between is jumped over. With
//! one search per keyword, only the keywords that were cut search the gap (see
//! [`super::cursor::Window::end_query`]); a keyword added later first walks back within
//! the first-run look-back on its own (see [`Searches`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use super::cursor::{self, NewestFirst, Searches, Skips};
use super::http::{check_status, join, shown, Http, HttpOptions, Response};
use super::text::language_allowed;
use super::{Connector, FetchContext, FetchError, Fetched, Params};
use crate::domain::{Engagement, FetchErrorKind, Mention};

const DEFAULT_BASE: &str = "https://bsky.social";

#[derive(Debug, Clone)]
pub struct Bluesky {
    base: Url,
    handle: String,
    password_env: String,
    query: Option<String>,
    page_size: u32,
    max_pages: u32,
    http: HttpOptions,
}

/// Tokens only; deliberately not `Debug`, so they cannot end up in a log line.
#[derive(Clone, Deserialize)]
struct Session {
    #[serde(rename = "accessJwt")]
    access: String,
    #[serde(rename = "refreshJwt")]
    refresh: String,
}

type Slot = Arc<tokio::sync::Mutex<Option<Session>>>;

/// The session of one handle on one service, shared by every fetch in the process.
fn session_slot(base: &Url, handle: &str) -> Slot {
    static SESSIONS: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    let key = format!(
        "{}|{}",
        base.as_str().trim_end_matches('/'),
        handle.to_lowercase()
    );
    SESSIONS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

impl Bluesky {
    pub fn from_params(p: &Params) -> Result<Self, String> {
        p.only(&[
            "handle",
            "password_env",
            "q",
            "base_url",
            "page_size",
            "max_pages",
        ])?;
        Ok(Bluesky {
            base: p.url_or("base_url", DEFAULT_BASE)?,
            handle: p
                .required_str("handle")?
                .trim_start_matches('@')
                .to_string(),
            password_env: p
                .str_or("password_env", "BLUESKY_APP_PASSWORD")?
                .to_string(),
            query: p.str("q")?.map(str::to_string),
            page_size: p.u64_in("page_size", 100, 1..=100)? as u32,
            max_pages: p.u64_in("max_pages", 5, 1..=50)? as u32,
            http: HttpOptions::from_params(p)?,
        })
    }

    async fn create_session(
        &self,
        http: &Http<'_>,
        ctx: &FetchContext,
    ) -> Result<Session, FetchError> {
        let password = std::env::var(&self.password_env)
            .ok()
            .filter(|p| !p.is_empty());
        let Some(password) = password else {
            return Err(FetchError::new(
                FetchErrorKind::Config,
                format!(
                    "bluesky source: the app password is read from the environment variable {}, which is not set",
                    self.password_env
                ),
            ));
        };
        let url = join(&self.base, "xrpc/com.atproto.server.createSession");
        let body = json!({ "identifier": self.handle, "password": password });
        let resp = http
            .execute(&url, || ctx.http.post(url.clone()).json(&body))
            .await?;
        if matches!(resp.status.as_u16(), 400 | 401) {
            return Err(FetchError::new(
                FetchErrorKind::Config,
                format!(
                    "Bluesky refused to sign in as {} ({}); check the handle and the app password in {}",
                    self.handle,
                    xrpc_error(&resp).unwrap_or_else(|| resp.status.to_string()),
                    self.password_env
                ),
            ));
        }
        check_status(&resp)?;
        tracing::info!(handle = %self.handle, "signed in to Bluesky");
        resp.json()
    }

    /// A valid access token: the stored one, or a new session on first use.
    async fn access(
        &self,
        http: &Http<'_>,
        slot: &Slot,
        ctx: &FetchContext,
    ) -> Result<String, FetchError> {
        let mut guard = slot.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.access.clone());
        }
        let s = self.create_session(http, ctx).await?;
        let access = s.access.clone();
        *guard = Some(s);
        Ok(access)
    }

    /// Replaces an expired access token: refresh first, sign in only if that fails.
    async fn renew(
        &self,
        http: &Http<'_>,
        slot: &Slot,
        ctx: &FetchContext,
        stale: &str,
    ) -> Result<String, FetchError> {
        let mut guard = slot.lock().await;
        if let Some(s) = guard.as_ref().filter(|s| s.access != stale) {
            return Ok(s.access.clone()); // another fetch renewed it meanwhile
        }
        if let Some(old) = guard.clone() {
            let url = join(&self.base, "xrpc/com.atproto.server.refreshSession");
            let resp = http
                .execute(&url, || {
                    ctx.http.post(url.clone()).bearer_auth(&old.refresh)
                })
                .await?;
            if resp.status.is_success() {
                let s: Session = resp.json()?;
                let access = s.access.clone();
                *guard = Some(s);
                return Ok(access);
            }
            tracing::info!(handle = %self.handle, "Bluesky refresh refused ({:?}); signing in again", xrpc_error(&resp));
        }
        *guard = None;
        let s = self.create_session(http, ctx).await?;
        let access = s.access.clone();
        *guard = Some(s);
        Ok(access)
    }
}

/// The `error` name of an XRPC error answer.
fn xrpc_error(resp: &Response) -> Option<String> {
    let v: Value = serde_json::from_slice(&resp.body).ok()?;
    Some(v.get("error")?.as_str()?.to_string())
}

fn is_expired(resp: &Response) -> bool {
    matches!(resp.status.as_u16(), 400 | 401)
        && matches!(
            xrpc_error(resp).as_deref(),
            Some("ExpiredToken" | "InvalidToken")
        )
}

#[async_trait]
impl Connector for Bluesky {
    fn kind(&self) -> &'static str {
        "bluesky"
    }

    async fn fetch(&self, ctx: &FetchContext, cursor: Option<&str>) -> Result<Fetched, FetchError> {
        let queries =
            super::text::search_queries(self.query.as_deref(), &ctx.keywords, "bluesky", "q")?;
        let http = Http::new(&ctx.http, &self.http);
        let slot = session_slot(&self.base, &self.handle);
        let mut token = self.access(&http, &slot, ctx).await?;
        let mut searches = Searches::new(
            cursor::load::<NewestFirst>("bluesky", cursor),
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
            let since = window
                .lower_bound()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            // `until` is exclusive and in milliseconds: one past the oldest post read keeps
            // the posts of that very millisecond not read yet.
            let until = window.gap_top().map(|top| {
                (top + chrono::Duration::milliseconds(1))
                    .to_rfc3339_opts(SecondsFormat::Millis, true)
            });
            let mut query_cut = false;
            let mut page_cursor: Option<String> = None;
            for page in 1..=self.max_pages {
                let mut url = join(&self.base, "xrpc/app.bsky.feed.searchPosts");
                url.query_pairs_mut()
                    .append_pair("q", q)
                    .append_pair("sort", "latest")
                    .append_pair("limit", &self.page_size.to_string())
                    .append_pair("since", &since);
                if let Some(until) = &until {
                    url.query_pairs_mut().append_pair("until", until);
                }
                if let Some(c) = &page_cursor {
                    url.query_pairs_mut().append_pair("cursor", c);
                }
                let search = |t: String| {
                    let url = url.clone();
                    let client = ctx.http.clone();
                    move || client.get(url.clone()).bearer_auth(&t)
                };
                let mut resp = http.execute(&url, search(token.clone())).await?;
                if is_expired(&resp) {
                    token = self.renew(&http, &slot, ctx, &token).await?;
                    resp = http.execute(&url, search(token.clone())).await?;
                }
                check_status(&resp)?;
                let body: Value = resp.json()?;
                let posts = body.get("posts").and_then(Value::as_array).ok_or_else(|| {
                    FetchError::new(
                        FetchErrorKind::Malformed,
                        format!("{}: no `posts` list", shown(&url)),
                    )
                })?;
                let mut reached_old = false;
                for (i, p) in posts.iter().enumerate() {
                    let (m, indexed) = match post(p) {
                        Ok(x) => x,
                        Err(why) => {
                            // Counted once, and passed over so the walk's progress
                            // includes it.
                            let new = match place(p) {
                                Some((uri, indexed)) => {
                                    reached_old |= window.is_behind(indexed);
                                    window.passed_unreadable(indexed, uri)
                                        && seen.insert(uri.to_string())
                                }
                                None => true,
                            };
                            if new {
                                skips.add(format!("{q:?} page {page} post {}: {why}", i + 1));
                            }
                            continue;
                        }
                    };
                    reached_old |= window.is_behind(indexed);
                    let new = window.admits(indexed, &m.external_id)
                        && seen.insert(m.external_id.clone());
                    window.saw(indexed, &m.external_id);
                    let langs = m
                        .extra
                        .as_ref()
                        .and_then(|e| e.get("langs"))
                        .and_then(Value::as_array);
                    let lang_ok = langs.is_none_or(|l| {
                        l.is_empty()
                            || l.iter()
                                .any(|x| language_allowed(&ctx.languages, x.as_str()))
                    });
                    if new && lang_ok {
                        mentions.push(m);
                    }
                }
                page_cursor = body
                    .get("cursor")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if reached_old || posts.is_empty() || page_cursor.is_none() {
                    break;
                }
                query_cut = page == self.max_pages;
            }
            window.end_query(q, query_cut);
            cut |= query_cut;
        }

        Ok(Fetched {
            mentions,
            note: cursor::join_notes([
                skips.note(),
                cut.then(|| cursor::page_limit_note(self.max_pages, "posts")),
            ]),
            cursor: Some(cursor::save(&searches.finish())?),
            skipped: skips.count,
            aggregate: None,
            partial: None,
            retry_after: None,
        })
    }
}

fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    Some(
        DateTime::parse_from_rfc3339(v?.as_str()?)
            .ok()?
            .with_timezone(&Utc),
    )
}

/// A post's place in the walk, read even from a post that cannot become a mention: its
/// uri and the time the service indexed it (the search's order; not `createdAt`, which
/// the client sets and which could move the watermark anywhere).
fn place(p: &Value) -> Option<(&str, DateTime<Utc>)> {
    let uri = p.get("uri").and_then(Value::as_str)?;
    Some((uri, time(p.get("indexedAt"))?))
}

/// A post view as a mention, plus the time the service indexed it (server time, which
/// the window uses: `createdAt` is set by the client and can be anything).
fn post(p: &Value) -> Result<(Mention, DateTime<Utc>), String> {
    let uri = p.get("uri").and_then(Value::as_str).ok_or("no uri")?;
    let record = p.get("record").ok_or("no record")?;
    let text = record
        .get("text")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("no text")?;
    let handle = p
        .pointer("/author/handle")
        .and_then(Value::as_str)
        .ok_or("no author")?;
    let created = time(record.get("createdAt"));
    let indexed = time(p.get("indexedAt")).or(created).ok_or("no date")?;
    let rkey = uri.rsplit('/').next().unwrap_or_default();
    let langs = record.get("langs").cloned().unwrap_or(json!([]));
    let first_lang = langs.get(0).and_then(Value::as_str).map(str::to_string);
    let count = |k: &str| p.get(k).and_then(Value::as_i64).unwrap_or(0);
    let m = Mention {
        external_id: uri.to_string(),
        url: Some(format!("https://bsky.app/profile/{handle}/post/{rkey}")),
        author: Some(handle.to_string()),
        title: None,
        text: text.to_string(),
        rating: None,
        engagement: Engagement {
            likes: count("likeCount"),
            replies: count("replyCount"),
            reposts: count("repostCount") + count("quoteCount"),
        },
        language: first_lang,
        published_at: created.unwrap_or(indexed),
        owner_reply: None,
        owner_reply_at: None,
        extra: Some(json!({
            "cid": p.get("cid"),
            "author_name": p.pointer("/author/displayName"),
            "langs": langs,
            "quotes": count("quoteCount"),
        })),
    };
    Ok((m, indexed))
}
