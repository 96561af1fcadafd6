//! The one HTTP layer every connector goes through, so politeness is not re-implemented
//! seven times: requests to one host are spaced out, transient failures (timeouts, 429,
//! 5xx) are retried a bounded number of times with exponential backoff and jitter while
//! honouring `Retry-After`, answers are read up to a size cap, and HTTP statuses become
//! the [`FetchErrorKind`]s a user can act on.
//!
//! The User-Agent (zmot, its version and the contact URL from `[http]`) and the overall
//! timeout are set once on the shared client built by `pipeline::http_client`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{self, HeaderMap};
use reqwest::{RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{FetchError, Params};
use crate::domain::FetchErrorKind;

/// Settings every kind of source accepts, on top of its own.
pub const COMMON_PARAMS: &[&str] = &[
    "max_body_bytes",
    "retries",
    "retry_base_ms",
    "max_retry_wait_secs",
    "min_interval_ms",
];

/// How politely and how patiently to talk to a service.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Answers larger than this are refused (decompressed size, so a gzip bomb is too).
    pub max_body_bytes: u64,
    /// Extra attempts after a transient failure.
    pub retries: u32,
    /// First backoff; doubled on each attempt, plus up to 50 % jitter.
    pub retry_base: Duration,
    /// A `Retry-After` longer than this fails the fetch (rate limited) instead of
    /// holding a worker; the next scheduled run tries again.
    pub max_retry_wait: Duration,
    /// Minimum spacing between two requests to the same host, across all sources.
    pub min_interval: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_body_bytes: 10 * 1024 * 1024,
            retries: 2,
            retry_base: Duration::from_millis(1000),
            max_retry_wait: Duration::from_secs(60),
            min_interval: Duration::from_millis(1000),
        }
    }
}

/// The range `max_body_bytes` must be in, in `[http]` and in a source's params.
pub const MAX_BODY_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=1 << 30;
/// The longest gap `[http] per_host_rate` or `min_interval_ms` may ask for.
const MAX_MIN_INTERVAL_MS: u64 = 600_000;

impl HttpOptions {
    /// The defaults the `[http]` section sets for every source: `max_body_bytes`, and
    /// `per_host_rate` (requests per second to one host) as the gap between two requests.
    pub fn from_config(http: &crate::config::Http) -> Self {
        let gap_ms = (1000.0 / http.per_host_rate).clamp(0.0, MAX_MIN_INTERVAL_MS as f64);
        HttpOptions {
            max_body_bytes: http.max_body_bytes,
            min_interval: Duration::from_millis(if gap_ms.is_nan() {
                1000
            } else {
                gap_ms.round() as u64
            }),
            ..HttpOptions::default()
        }
    }

    /// The source's own settings, falling back to `p`'s HTTP defaults.
    pub fn from_params(p: &Params) -> Result<Self, String> {
        let d = p.http_defaults();
        let ms = |d: Duration| d.as_millis() as u64;
        Ok(HttpOptions {
            max_body_bytes: p.u64_in("max_body_bytes", d.max_body_bytes, MAX_BODY_BYTES_RANGE)?,
            retries: p.u64_in("retries", u64::from(d.retries), 0..=5)? as u32,
            retry_base: Duration::from_millis(p.u64_in(
                "retry_base_ms",
                ms(d.retry_base),
                0..=60_000,
            )?),
            max_retry_wait: Duration::from_secs(p.u64_in(
                "max_retry_wait_secs",
                d.max_retry_wait.as_secs(),
                0..=600,
            )?),
            min_interval: Duration::from_millis(p.u64_in(
                "min_interval_ms",
                ms(d.min_interval),
                0..=MAX_MIN_INTERVAL_MS,
            )?),
        })
    }
}

/// An answer read in full (within the cap).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub url: Url,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text; invalid UTF-8 is replaced rather than failing the whole page.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the body as JSON; a truncated or invalid answer is `Malformed`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, FetchError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            FetchError::new(
                FetchErrorKind::Malformed,
                format!("invalid JSON from {}: {e}", shown(&self.url)),
            )
        })
    }

    /// The validators to send next time for a conditional request.
    pub fn validators(&self) -> Validators {
        Validators {
            etag: self.header("etag").map(str::to_string),
            last_modified: self.header("last-modified").map(str::to_string),
        }
    }
}

/// `ETag` / `Last-Modified` of the last answer, kept in the cursor so an unchanged feed
/// or page costs the server a 304 and nothing more.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Validators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// The shared client plus this source's politeness settings.
pub struct Http<'a> {
    client: &'a reqwest::Client,
    opts: &'a HttpOptions,
}

impl<'a> Http<'a> {
    pub fn new(client: &'a reqwest::Client, opts: &'a HttpOptions) -> Self {
        Http { client, opts }
    }

    pub fn client(&self) -> &'a reqwest::Client {
        self.client
    }

    /// GET, failing on any non-success status.
    pub async fn get(&self, url: &Url) -> Result<Response, FetchError> {
        self.send(url, || self.client.get(url.clone())).await
    }

    /// Conditional GET: `Ok(None)` when the server answers 304 Not Modified.
    pub async fn get_conditional(
        &self,
        url: &Url,
        v: &Validators,
    ) -> Result<Option<Response>, FetchError> {
        let r = self
            .send(url, || {
                let mut rb = self.client.get(url.clone());
                if let Some(etag) = &v.etag {
                    rb = rb.header(header::IF_NONE_MATCH, etag);
                }
                if let Some(lm) = &v.last_modified {
                    rb = rb.header(header::IF_MODIFIED_SINCE, lm);
                }
                rb
            })
            .await?;
        Ok((r.status != StatusCode::NOT_MODIFIED).then_some(r))
    }

    /// Sends the request `make` builds (once per attempt) and fails on any status that
    /// is not a success.
    pub async fn send(
        &self,
        url: &Url,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, FetchError> {
        let r = self.execute(url, make).await?;
        check_status(&r)?;
        Ok(r)
    }

    /// Sends with pacing and retries and returns the final answer whatever its status,
    /// for callers that must read an error body (Bluesky's `ExpiredToken`). Transient
    /// failures that outlast the retries are errors.
    pub async fn execute(
        &self,
        url: &Url,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, FetchError> {
        let mut attempt = 0;
        loop {
            pace(url, self.opts.min_interval).await;
            let last = attempt >= self.opts.retries;
            let resp = match make().send().await {
                Ok(r) => r,
                // reqwest's errors quote the whole URL: left out, `shown` says which.
                Err(e) if e.is_builder() => {
                    return Err(FetchError::new(
                        FetchErrorKind::Config,
                        format!(
                            "cannot build a request for {}: {}",
                            shown(url),
                            e.without_url()
                        ),
                    ))
                }
                Err(e) if !last => {
                    tracing::debug!(url = %shown(url), attempt, "request failed, retrying: {}", e.without_url());
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(network_error(url, e)),
            };
            let status = resp.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                if is_challenge(resp.headers()) {
                    return Err(blocked(url, status, None));
                }
                let asked = retry_after(resp.headers());
                let wait = asked.unwrap_or_else(|| self.backoff(attempt));
                if !last && wait <= self.opts.max_retry_wait {
                    tracing::debug!(url = %shown(url), %status, ?wait, "transient answer, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                return Err(transient_error(url, status, asked));
            }
            let headers = resp.headers().clone();
            let body = read_capped(resp, url, self.opts.max_body_bytes).await?;
            return Ok(Response {
                status,
                headers,
                body,
                url: url.clone(),
            });
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.opts.retry_base.saturating_mul(1 << attempt.min(10));
        let jitter = rand::thread_rng().gen_range(0.0..0.5);
        base.mul_f64(1.0 + jitter)
    }
}

/// Maps a final non-success status to the error a user can act on.
pub fn check_status(r: &Response) -> Result<(), FetchError> {
    let s = r.status;
    if s.is_success() || s == StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    let url = shown(&r.url);
    Err(match s {
        StatusCode::FORBIDDEN => blocked(&r.url, s, page_title(&r.body)),
        StatusCode::UNAUTHORIZED => FetchError::new(
            FetchErrorKind::Config,
            format!("{url} refused the credentials (HTTP 401)"),
        ),
        StatusCode::NOT_FOUND | StatusCode::GONE => FetchError::new(
            FetchErrorKind::NotFound,
            format!("{url} not found (HTTP {})", s.as_u16()),
        ),
        StatusCode::TOO_MANY_REQUESTS => transient_error(&r.url, s, retry_after(&r.headers)),
        s if s.is_server_error() => transient_error(&r.url, s, None),
        s => FetchError::new(
            FetchErrorKind::Other,
            format!("{url} answered HTTP {}", s.as_u16()),
        ),
    })
}

/// A URL as errors and logs show it: query values and password hidden, for a feed's
/// or a service's key is often in its URL (see [`crate::redact::source_url`]).
pub fn shown(url: &Url) -> String {
    crate::redact::source_url(url.as_str())
}

/// Appends `path` to a base URL that may or may not end with a slash.
pub fn join(base: &Url, path: &str) -> Url {
    let s = format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    Url::parse(&s).unwrap_or_else(|_| base.clone())
}

fn blocked(url: &Url, status: StatusCode, title: Option<String>) -> FetchError {
    let url = shown(url);
    let title = title
        .map(|t| format!(" (page title: {t:?})"))
        .unwrap_or_default();
    FetchError::new(
        FetchErrorKind::Blocked,
        format!(
            "{url} refused access (HTTP {}): bot protection or access denied{title}",
            status.as_u16()
        ),
    )
}

fn transient_error(url: &Url, status: StatusCode, asked: Option<Duration>) -> FetchError {
    let url = shown(url);
    let wait = asked
        .map(|d| format!("; the server asks to wait {} s", d.as_secs()))
        .unwrap_or_default();
    if status == StatusCode::TOO_MANY_REQUESTS {
        FetchError::new(
            FetchErrorKind::RateLimited,
            format!("{url} rate limited this client (HTTP 429){wait}"),
        )
    } else {
        FetchError::new(
            FetchErrorKind::Network,
            format!("{url} failed with HTTP {}{wait}", status.as_u16()),
        )
    }
    .with_retry_after(asked)
}

fn network_error(url: &Url, e: reqwest::Error) -> FetchError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // The source chain carries the useful part (DNS, TLS, reset); reqwest's own text
    // would quote the whole URL, secrets included.
    let e = e.without_url();
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        detail = format!("{detail}: {s}");
        src = s.source();
    }
    FetchError::new(
        FetchErrorKind::Network,
        format!("{} {what}: {detail}", shown(url)),
    )
}

/// Cloudflare and similar answer a JS challenge with 403/503 and this header; retrying
/// would only earn a longer block.
fn is_challenge(h: &HeaderMap) -> bool {
    h.get("cf-mitigated")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("challenge"))
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

async fn read_capped(
    mut resp: reqwest::Response,
    url: &Url,
    max: u64,
) -> Result<Vec<u8>, FetchError> {
    let too_big = || {
        let url = shown(url);
        FetchError::new(
            FetchErrorKind::TooLarge,
            format!(
                "{url} sent more than {max} bytes (raise `max_body_bytes` if this is expected)"
            ),
        )
    };
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > max {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(network_error(url, e)),
        }
    }
}

/// The `<title>` of an HTML error page, to say in the error whose page it was.
fn page_title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]);
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = start + lower[start..].find('>')? + 1;
    let close = open_end + lower[open_end..].find("</title")?;
    let title = super::text::collapse_whitespace(&html_escape::decode_html_entities(
        &text[open_end..close],
    ));
    (!title.is_empty()).then(|| title.chars().take(120).collect())
}

/// Waits for this host's next free slot: request starts to one host are spaced by
/// `interval` across every source in the process, which is what a site owner sees.
async fn pace(url: &Url, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    static NEXT: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    let key = format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    );
    let wait = {
        let mut map = NEXT
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() > 1024 {
            map.retain(|_, t| *t > now);
        }
        let slot = map.get(&key).copied().filter(|t| *t > now).unwrap_or(now);
        map.insert(key, slot + interval);
        slot - now
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert(
            header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn page_title_is_found_and_decoded() {
        let body = b"<html><head><TITLE>Attention Required! &amp; | Cloudflare</TITLE>";
        assert_eq!(
            page_title(body).as_deref(),
            Some("Attention Required! & | Cloudflare")
        );
        assert_eq!(page_title(b"{\"error\":1}"), None);
    }

    #[test]
    fn join_handles_slashes() {
        let b = Url::parse("http://127.0.0.1:8/api/").unwrap();
        assert_eq!(join(&b, "/v1/x").as_str(), "http://127.0.0.1:8/api/v1/x");
    }
}
