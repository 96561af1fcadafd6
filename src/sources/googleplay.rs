//! Google Play reviews through the store's own web endpoint, `batchexecute` with the
//! `UsvDTd` call, newest first, paged by an opaque token.
//!
//! This is not a public API: Google documents no such endpoint for third parties, may
//! change it without notice and throttles it. That is why the connector is off unless
//! the source says `enabled_unofficial = true`, why it reads positions defensively and
//! skips what it cannot read, and why the throttling answer (an HTTP 200 whose body
//! contains `PlayGatewayError`) ends the fetch as rate limited instead of retrying hard.
//!
//! Google often throttles after a few pages. A walk cut there, or by `max_pages`, keeps
//! what it read and saves the next page's token in the cursor's gap: the next run goes
//! on from that page (pages are newest first, so the unread reviews are the older ones).

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use url::Url;

use super::cursor::{self, NewestFirst, Skips, Walk, Window};
use super::http::{shown, Http, HttpOptions};
use super::{Connector, FetchContext, FetchError, Fetched, Params};
use crate::domain::{Engagement, FetchErrorKind, Mention};

const DEFAULT_BASE: &str = "https://play.google.com";
const RPC_ID: &str = "UsvDTd";
/// Sort order code for "newest" in the review request.
const SORT_NEWEST: u8 = 2;

/// One app's reviews in one language and country.
#[derive(Debug, Clone)]
pub struct GooglePlay {
    base: Url,
    app_id: String,
    lang: String,
    country: String,
    page_size: u32,
    max_pages: u32,
    http: HttpOptions,
}

impl GooglePlay {
    pub fn from_params(p: &Params) -> Result<Self, String> {
        p.only(&[
            "app_id",
            "enabled_unofficial",
            "lang",
            "country",
            "base_url",
            "page_size",
            "max_pages",
        ])?;
        if !p.bool_or("enabled_unofficial", false)? {
            return Err(
                "googleplay source reads an unofficial Google endpoint that may change or \
                        throttle without notice; set `enabled_unofficial = true` to use it"
                    .into(),
            );
        }
        let app_id = p.required_str("app_id")?;
        if !app_id.contains('.') || app_id.contains(|c: char| c.is_whitespace() || c == '"') {
            return Err(format!(
                "googleplay source: `app_id` must be the package name from the store URL (…?id=com.example.app), not `{app_id}`"
            ));
        }
        Ok(GooglePlay {
            base: p.url_or("base_url", DEFAULT_BASE)?,
            app_id: app_id.to_string(),
            lang: p.str_or("lang", "en")?.to_string(),
            country: p.str_or("country", "us")?.to_ascii_lowercase(),
            page_size: p.u64_in("page_size", 100, 1..=199)? as u32,
            max_pages: p.u64_in("max_pages", 5, 1..=50)? as u32,
            http: HttpOptions::from_params(p)?,
        })
    }

    /// The `f.req` form value: a JSON array holding the call id and its arguments,
    /// themselves JSON encoded as a string.
    fn request_body(&self, token: Option<&str>) -> String {
        let args = json!([
            null,
            null,
            [
                2,
                SORT_NEWEST,
                [self.page_size, null, token],
                null,
                [null, null]
            ],
            [self.app_id, 7]
        ]);
        json!([[[RPC_ID, args.to_string(), null, "generic"]]]).to_string()
    }
}

#[async_trait]
impl Connector for GooglePlay {
    fn kind(&self) -> &'static str {
        "googleplay"
    }

    async fn fetch(&self, ctx: &FetchContext, cursor: Option<&str>) -> Result<Fetched, FetchError> {
        let http = Http::new(&ctx.http, &self.http);
        let mut url = super::http::join(&self.base, "_/PlayStoreUi/data/batchexecute");
        url.query_pairs_mut()
            .append_pair("hl", &self.lang)
            .append_pair("gl", &self.country);
        let mut window =
            Window::newest_first(cursor::load::<NewestFirst>("googleplay", cursor), ctx);
        let mut skips = Skips::default();
        let mut seen = HashSet::new();
        let mut mentions = Vec::new();
        // A cut walk's gap starts at the page it did not read.
        let mut token: Option<String> = window.resume().map(str::to_string);
        let mut walk = Walk::Complete;
        let mut stop_note = None;
        let mut partial = None;
        let mut retry_after = None;

        for page in 1..=self.max_pages {
            let body = self.request_body(token.as_deref());
            let answer = http
                .send(&url, || {
                    ctx.http.post(url.clone()).form(&[("f.req", body.as_str())])
                })
                .await
                .and_then(|resp| parse_answer(&resp.body, &url));
            let (reviews, next) = match answer {
                Ok(a) => a,
                Err(e) if page == 1 => return Err(e),
                // Throttling after a few pages is usual: keep what was read and start
                // at this page next run.
                Err(e) => {
                    stop_note = Some(format!(
                        "stopped at page {page}: {e}; the next run goes on from that page"
                    ));
                    partial = Some(e.kind);
                    retry_after = e.retry_after;
                    walk = Walk::Cut { resume: token };
                    break;
                }
            };
            let mut reached_old = false;
            for (i, r) in reviews.iter().enumerate() {
                let m = match review(r, &self.app_id, &self.lang) {
                    Ok(m) => m,
                    Err(why) => {
                        skips.add(format!("page {page} review {}: {why}", i + 1));
                        continue;
                    }
                };
                reached_old |= window.is_behind(m.published_at);
                let new = window.admits(m.published_at, &m.external_id)
                    && seen.insert(m.external_id.clone());
                window.saw(m.published_at, &m.external_id);
                if new {
                    mentions.push(m);
                }
            }
            match next {
                Some(t) if !reached_old && !reviews.is_empty() => {
                    if page == self.max_pages {
                        stop_note = Some(cursor::page_limit_note(self.max_pages, "reviews"));
                        walk = Walk::Cut { resume: Some(t) };
                        break;
                    }
                    token = Some(t);
                }
                _ => break,
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

/// Reads a `batchexecute` answer: the `)]}'` guard, then either one JSON envelope or,
/// in the chunked form, length lines alternating with envelopes. Returns the review
/// arrays and the next page token.
fn parse_answer(body: &[u8], url: &Url) -> Result<(Vec<Value>, Option<String>), FetchError> {
    let text = String::from_utf8_lossy(body);
    let malformed =
        |why: String| FetchError::new(FetchErrorKind::Malformed, format!("{}: {why}", shown(url)));
    if text.contains("PlayGatewayError") {
        return Err(FetchError::new(
            FetchErrorKind::RateLimited,
            format!("{}: Google Play is throttling this client (PlayGatewayError); backing off until the next run", shown(url)),
        ));
    }
    let rest = text
        .trim_start()
        .strip_prefix(")]}'")
        .ok_or_else(|| malformed("the answer does not start with the )]}' guard".into()))?;
    let mut envelopes: Vec<Value> = Vec::new();
    match serde_json::from_str::<Value>(rest) {
        Ok(Value::Array(a)) => envelopes.extend(a),
        _ => {
            for line in rest.lines().map(str::trim) {
                if line.is_empty() || line.chars().all(|c| c.is_ascii_digit()) {
                    continue;
                }
                if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(line) {
                    envelopes.extend(a);
                }
            }
        }
    }
    let call = envelopes
        .iter()
        .find(|e| e.get(0) == Some(&json!("wrb.fr")) && e.get(1) == Some(&json!(RPC_ID)))
        .ok_or_else(|| malformed(format!("no {RPC_ID} answer in the response")))?;
    let payload = call.get(2).and_then(Value::as_str).ok_or_else(|| {
        malformed("the review call returned no data (is the app id right for this country?)".into())
    })?;
    let payload: Value = serde_json::from_str(payload)
        .map_err(|e| malformed(format!("invalid review data: {e}")))?;
    let reviews = match payload.get(0) {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(malformed("review data is not a list".into())),
    };
    // The last element is `[null, token]`; on the last page the token is missing.
    let token = payload
        .as_array()
        .filter(|a| a.len() > 1)
        .and_then(|a| a.last())
        .and_then(|t| t.as_array())
        .and_then(|t| t.last())
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((reviews, token))
}

fn timestamp(v: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(v?.as_i64()?, 0)
}

fn review(r: &Value, app_id: &str, lang: &str) -> Result<Mention, String> {
    let id = r.get(0).and_then(Value::as_str).ok_or("no review id")?;
    let rating = r.get(2).and_then(Value::as_u64).ok_or("no star rating")?;
    if !(1..=5).contains(&rating) {
        return Err(format!("star rating {rating} is outside 1-5"));
    }
    let text = r
        .get(4)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("no review text")?;
    let published_at = timestamp(r.pointer("/5/0")).ok_or("no date")?;
    let reply = r.get(7).filter(|v| v.is_array());
    let owner_reply = reply
        .and_then(|v| v.get(1))
        .and_then(Value::as_str)
        .map(super::text::html_to_text)
        .filter(|t| !t.is_empty());
    let mut url = super::http::join(
        &Url::parse(DEFAULT_BASE).expect("constant"),
        "store/apps/details",
    );
    url.query_pairs_mut()
        .append_pair("id", app_id)
        .append_pair("reviewId", id);
    let version = r.get(10).and_then(Value::as_str);
    Ok(Mention {
        external_id: id.to_string(),
        url: Some(url.to_string()),
        author: r
            .pointer("/1/0")
            .and_then(Value::as_str)
            .map(str::to_string),
        title: None,
        text: text.to_string(),
        rating: Some(rating as u8),
        engagement: Engagement {
            likes: r.get(6).and_then(Value::as_i64).unwrap_or(0),
            ..Engagement::default()
        },
        language: Some(lang.to_string()),
        published_at,
        owner_reply_at: owner_reply
            .as_ref()
            .and_then(|_| timestamp(reply.and_then(|v| v.pointer("/2/0")))),
        owner_reply,
        extra: Some(json!({ "app_version": version, "developer": reply.and_then(|v| v.get(0)) })),
    })
}
