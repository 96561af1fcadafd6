//! The dashboard and its JSON API: server-rendered pages (no JavaScript, nothing loaded
//! from elsewhere; the stylesheet is embedded) and `/api/...` with the same data.
//! It reads the store and the trends code and writes only through store functions.
//!
//! Access (see the README, "Dashboard and API"):
//! - The token is the value of the environment variable named by `server.token_env`.
//! - Bound to loopback, token or not: requests whose `Host` is not a loopback name are
//!   refused (no DNS rebinding), on every route [`app`] serves.
//! - Bound to loopback without a token: everything is open to this machine.
//! - With a token: the API and every state-changing request need `Authorization: Bearer
//!   <token>` or the session cookie given by the login form (one random session per
//!   login, ended by logging out); pages are readable without logging in only when bound
//!   to loopback. Repeated wrong tokens lock the login form for a growing while, for the
//!   client's address: the connection's, or behind a proxy listed in
//!   `server.trusted_proxies` the one it reports in `X-Forwarded-For` (or `Forwarded`).
//! - Bound beyond loopback without a token: every request is refused.
//! - Every state-changing request, API included, must come from the same origin
//!   (`Origin`, else `Referer`, must match `Host` when present; `Sec-Fetch-Site` must not
//!   say another site), unless it carries the bearer token. Forms also carry a
//!   per-process CSRF token.

mod api;
mod charts;
mod client;
mod data;
mod html;
mod pages;
mod params;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::config::Config;
use crate::store::Store;

/// Request bodies larger than this are refused (forms and JSON are small).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The largest page of mentions a request may ask for.
pub const MAX_PAGE_SIZE: i64 = 100;
/// The largest page the API gives.
pub const MAX_API_LIMIT: i64 = 200;

const SESSION_COOKIE: &str = "zmot_session";

/// What the handlers share.
#[derive(Clone)]
pub struct WebState {
    pub store: Store,
    pub config: Arc<Config>,
    security: Arc<Security>,
}

struct Security {
    /// The access token, when one is configured.
    token: Option<String>,
    /// Whether the server listens on loopback only.
    loopback: bool,
    /// Per-process secret embedded in forms.
    csrf: String,
    /// Sessions given out by the login form (a random value each) and when they expire;
    /// logging out removes one. In memory: a restart logs everyone out.
    sessions: Mutex<HashMap<String, Instant>>,
    /// Failed logins by client address, to slow down guessing the token.
    logins: Mutex<HashMap<Option<IpAddr>, LoginThrottle>>,
    /// Reverse proxies allowed to name the client (`server.trusted_proxies`).
    trusted_proxies: client::TrustedProxies,
}

/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Sessions kept at most; the one closest to expiring goes first.
const MAX_SESSIONS: usize = 1000;
/// Wrong tokens accepted in a row before logins are locked.
const FREE_LOGIN_FAILURES: u32 = 5;
/// The first lock; it doubles with each further failure, up to `MAX_LOGIN_LOCK`.
const FIRST_LOGIN_LOCK: Duration = Duration::from_secs(1);
const MAX_LOGIN_LOCK: Duration = Duration::from_secs(15 * 60);
/// Client addresses whose failures are remembered at most.
const MAX_LOGIN_CLIENTS: usize = 10_000;

/// Consecutive failed logins of one client address (the TCP peer's, or the one a trusted
/// proxy reports in `X-Forwarded-For`; never a header from anyone else, who could write
/// any address): a guesser gets a handful of tries, then one per lock period, while other
/// addresses can still log in and a bearer token keeps working for scripts.
#[derive(Default)]
struct LoginThrottle {
    failures: u32,
    locked_until: Option<Instant>,
}

fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Whether an address to listen on (`host:port`) is loopback only.
pub fn is_loopback_listen(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or(listen);
    host.eq_ignore_ascii_case("localhost")
}

impl WebState {
    /// The state for `config`: the token is read from the variable named by
    /// `server.token_env`, loopback is judged from `server.listen`.
    pub fn new(store: Store, config: Arc<Config>) -> WebState {
        let token = crate::push::token_from_env(&config.server.token_env);
        let loopback = is_loopback_listen(&config.server.listen);
        WebState::with_access(store, config, token, loopback)
    }

    /// The state with an explicit token and binding (for tests and embedding).
    pub fn with_access(
        store: Store,
        config: Arc<Config>,
        token: Option<String>,
        loopback: bool,
    ) -> WebState {
        let trusted_proxies = client::TrustedProxies::new(
            config.server.trusted_proxy_ranges(),
            config.server.client_address_header,
        );
        WebState {
            store,
            config,
            security: Arc::new(Security {
                token,
                loopback,
                csrf: random_hex(),
                sessions: Mutex::default(),
                logins: Mutex::default(),
                trusted_proxies,
            }),
        }
    }

    /// The CSRF token forms must carry.
    pub fn csrf_token(&self) -> &str {
        &self.security.csrf
    }

    /// Whether the token is required and whether a start is refused; `Err` explains
    /// why this configuration must not serve (beyond loopback without a token).
    pub fn check_exposure(&self) -> Result<(), String> {
        if !self.security.loopback && self.security.token.is_none() {
            return Err(format!(
                "server.listen = {} is reachable beyond this machine: set an access token in ${}",
                self.config.server.listen, self.config.server.token_env
            ));
        }
        Ok(())
    }
}

/// The dashboard's and the API's routes, ready to be merged next to the health router.
pub fn router(state: WebState) -> Router {
    let api = Router::new()
        .route("/watches", get(api::watches))
        .route("/watches/{watch}", get(api::watch))
        .route("/watches/{watch}/trends", get(api::trends))
        .route("/watches/{watch}/buyers-view", get(api::buyers_view))
        .route("/watches/{watch}/triage", get(api::triage_summary))
        .route("/mentions", get(api::mentions))
        .route(
            "/mentions/{id}",
            get(api::mention).patch(api::patch_mention),
        )
        .route("/mentions/{id}/triage", post(api::patch_mention))
        .route("/alerts", get(api::alerts))
        .route("/alerts/{id}/acknowledge", post(api::acknowledge_alert))
        .route("/alerts/{id}/snooze", post(api::snooze_alert))
        .route("/sources", get(api::sources))
        .route("/sources/{id}/fetch", post(api::fetch_now))
        .route("/openapi.json", get(api::openapi))
        .fallback(api::not_found);
    Router::new()
        .route("/", get(pages::overview))
        .route("/watch/{name}", get(pages::watch))
        .route("/mentions", get(pages::mentions))
        .route("/mentions/{id}", get(pages::mention))
        .route("/mentions/{id}/triage", post(pages::triage))
        .route("/alerts/{id}/acknowledge", post(pages::acknowledge_alert))
        .route("/alerts/{id}/snooze", post(pages::snooze_alert))
        .route("/sources", get(pages::sources))
        .route("/sources/{id}/fetch", post(pages::fetch_now))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/assets/zmot.css", get(css))
        .nest("/api", api)
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn(secure_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Everything `zmot run` and `zmot serve` listen with: the dashboard and its API, and
/// `others` (health, metrics, push ingest) behind the same loopback `Host` check, since a
/// rebound name could otherwise read `/metrics` from a browser.
pub fn app(state: WebState, others: Router) -> Router {
    let others = others.layer(middleware::from_fn_with_state(state.clone(), host_only));
    router(state).merge(others)
}

async fn host_only(State(s): State<WebState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let is_api = path == "/api" || path.starts_with("/api/");
    if let Some(refused) = host_refusal(&s.security, req.headers(), is_api) {
        return refused;
    }
    next.run(req).await
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        html::CSS,
    )
}

async fn secure_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Equal strings, compared in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    // Compared as digests, byte by byte without an early exit: the time taken tells
    // neither where a guess goes wrong nor how long the token is.
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The token of an `Authorization: Bearer` header (the scheme in any case, RFC 9110).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The host (with port) a URL-ish header names.
fn origin_host(value: &str) -> Option<String> {
    let u = url::Url::parse(value).ok()?;
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

fn host_is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

impl Security {
    /// Whether the request carries the configured token as `Authorization: Bearer`.
    fn bearer_valid(&self, headers: &HeaderMap) -> bool {
        self.token
            .as_ref()
            .is_some_and(|token| bearer(headers).is_some_and(|b| same_secret(b, token)))
    }

    /// Whether the request proves it holds the token (bearer or session cookie).
    fn authenticated(&self, headers: &HeaderMap) -> bool {
        if self.token.is_none() {
            return true;
        }
        if self.bearer_valid(headers) {
            return true;
        }
        let Some(given) = cookie(headers, SESSION_COOKIE) else {
            return false;
        };
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(given)
            .is_some_and(|expires| *expires > Instant::now())
    }

    /// One login attempt, checked and counted under one lock (so parallel guesses cannot
    /// all pass the check before any is counted): `Err(wait)` while logins are locked
    /// after repeated failures, else whether `given` is the token. A wrong one past the
    /// free tries locks logins for a doubling period.
    fn try_login(
        &self,
        client: Option<IpAddr>,
        given: &str,
        token: &str,
    ) -> Result<bool, Duration> {
        let mut logins = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if logins.len() >= MAX_LOGIN_CLIENTS && !logins.contains_key(&client) {
            // Many addresses: forget those not locked now (a lock still holds).
            logins.retain(|_, t| t.locked_until.is_some_and(|until| until > now));
        }
        let t = logins.entry(client).or_default();
        if let Some(until) = t.locked_until.filter(|until| *until > now) {
            return Err(until - now);
        }
        if same_secret(given, token) {
            return Ok(true);
        }
        t.failures = t.failures.saturating_add(1);
        if t.failures >= FREE_LOGIN_FAILURES {
            let doublings = (t.failures - FREE_LOGIN_FAILURES).min(20);
            let lock = FIRST_LOGIN_LOCK
                .saturating_mul(1 << doublings)
                .min(MAX_LOGIN_LOCK);
            t.locked_until = Some(now + lock);
        }
        Ok(false)
    }

    /// A successful login from `client`: its failure count restarts and a new session is
    /// returned.
    fn start_session(&self, client: Option<IpAddr>) -> String {
        self.logins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&client);
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, expires| *expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(first) = sessions
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&first);
            }
        }
        let id = random_hex();
        sessions.insert(id.clone(), now + SESSION_LIFETIME);
        id
    }

    /// Ends the session the request's cookie names, if any.
    fn end_session(&self, headers: &HeaderMap) {
        if let Some(given) = cookie(headers, SESSION_COOKIE) {
            self.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(given);
        }
    }
}

/// Refusal in the request's dialect: JSON for the API, a page otherwise.
fn refuse(api: bool, status: StatusCode, code: &str, message: &str) -> Response {
    if api {
        let mut res = api::error_response(status, code, message);
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"zmot\""),
            );
        }
        res
    } else {
        html::error_page(status, message)
    }
}

/// Whether a state-changing request may have been sent by a page of another site: its
/// `Origin` (else `Referer`) names a host other than `host`, its `Origin` is opaque
/// (`null`), or the browser says so in `Sec-Fetch-Site`. Requests with none of these
/// (curl, scripts) are not cross-site: a browser always sends `Origin` on a
/// cross-origin POST.
fn cross_site(headers: &HeaderMap, host: &str) -> Option<&'static str> {
    // "same-site" includes another port on this machine: a different origin still.
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Some("this request was sent from another site");
        }
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin.is_some_and(|o| o.trim() == "null") {
        return Some("this request was sent from an opaque origin");
    }
    let claimed = origin.or_else(|| headers.get(header::REFERER).and_then(|v| v.to_str().ok()));
    if headers.get(header::ORIGIN).is_some() && claimed.is_none() {
        return Some("this request was sent from an unreadable origin");
    }
    match claimed {
        Some(c) if origin_host(c).is_none_or(|o| !o.eq_ignore_ascii_case(host)) => {
            Some("this request was sent from another site")
        }
        _ => None,
    }
}

/// Refuses requests that name a host other than this machine while the server is bound to
/// loopback, so that a page whose name was rebound to 127.0.0.1 cannot read or change
/// anything, with or without a token.
fn host_refusal(sec: &Security, headers: &HeaderMap, is_api: bool) -> Option<Response> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    (sec.loopback && !host_is_loopback(host)).then(|| {
        refuse(
            is_api,
            StatusCode::FORBIDDEN,
            "bad_host",
            "requests must name this machine (localhost or 127.0.0.1) as their host",
        )
    })
}

/// Access control in front of every route (see the module documentation).
async fn guard(State(s): State<WebState>, req: Request, next: Next) -> Response {
    let sec = &s.security;
    let path = req.uri().path().to_string();
    let is_api = path == "/api" || path.starts_with("/api/");
    let headers = req.headers();
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);

    if !sec.loopback && sec.token.is_none() {
        return refuse(
            is_api,
            StatusCode::FORBIDDEN,
            "no_token",
            "this server listens beyond loopback and has no access token configured",
        );
    }
    if let Some(refused) = host_refusal(sec, headers, is_api) {
        return refused;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    if path == "/assets/zmot.css" {
        return next.run(req).await;
    }
    // Changes must come from this server's pages or from outside a browser. A valid
    // bearer token is exempt: a browser never attaches one by itself, unlike the
    // session cookie (or nothing at all, on loopback without a token).
    if !reading && !sec.bearer_valid(headers) {
        if let Some(why) = cross_site(headers, &host) {
            return refuse(is_api, StatusCode::FORBIDDEN, "cross_origin", why);
        }
    }
    if is_api {
        if !sec.authenticated(headers) {
            return refuse(
                true,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <token>",
            );
        }
        return next.run(req).await;
    }
    if !reading {
        if path != "/login" && !sec.authenticated(req.headers()) {
            return refuse(
                false,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "log in with the access token first",
            );
        }
        return next.run(req).await;
    }
    // Reading pages: free on loopback, otherwise after logging in.
    if !sec.loopback && path != "/login" && !sec.authenticated(headers) {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        return Redirect::to(&format!("/login?next={}", params::query_escape(&target)))
            .into_response();
    }
    next.run(req).await
}

/// JSON error body: `{"error": {"code": ..., "message": ...}}`.
pub(crate) fn json_error(code: &str, message: &str) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "error": { "code": code, "message": message } }))
}

/// An error of a handler, rendered by the page or API wrapper.
#[derive(Debug)]
pub(crate) enum Failure {
    NotFound(String),
    BadRequest(String),
    Forbidden(String),
    /// A request body over [`MAX_BODY_BYTES`].
    TooLarge(String),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Internal(e)
    }
}

impl Failure {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            Failure::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            Failure::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            // The code push gives for the same refusal.
            Failure::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m.clone()),
            Failure::Internal(e) => {
                // The cause goes to the log, never to the client.
                tracing::error!(error = %format!("{e:#}"), "dashboard request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong; the server log has the details".to_string(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_lock_starts_at_a_second_doubles_and_stops_at_fifteen_minutes() {
        let s = Security {
            token: Some("t".into()),
            loopback: true,
            csrf: String::new(),
            sessions: Mutex::default(),
            logins: Mutex::default(),
            trusted_proxies: client::TrustedProxies::default(),
        };
        let client = Some("203.0.113.5".parse().unwrap());
        // The lock's time left, right after it was set; then let it run out, as time
        // passing would.
        let lock_left = || {
            let left = s.try_login(client, "t", "t").unwrap_err();
            s.logins
                .lock()
                .unwrap()
                .get_mut(&client)
                .unwrap()
                .locked_until = Some(Instant::now());
            left
        };
        for _ in 1..FREE_LOGIN_FAILURES {
            assert_eq!(s.try_login(client, "guess", "t"), Ok(false));
        }
        assert!(s.try_login(client, "t", "t").is_ok(), "not locked yet");
        for expected in [1u64, 2, 4, 8] {
            assert_eq!(s.try_login(client, "guess", "t"), Ok(false));
            let left = lock_left();
            assert!(
                left <= Duration::from_secs(expected)
                    && left > Duration::from_secs(expected) - Duration::from_millis(200),
                "{left:?}, expected {expected} s"
            );
        }
        for _ in 0..20 {
            assert_eq!(s.try_login(client, "guess", "t"), Ok(false));
            lock_left();
        }
        assert_eq!(s.try_login(client, "guess", "t"), Ok(false));
        let left = lock_left();
        assert!(
            left <= MAX_LOGIN_LOCK && left > MAX_LOGIN_LOCK - Duration::from_secs(1),
            "{left:?}"
        );
    }
}
