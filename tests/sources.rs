//! The seven connectors against recorded responses, served by a real HTTP server on
//! 127.0.0.1 that each test starts. Nothing here reaches beyond the loopback address:
//! every service address is a `base_url` / `url` setting pointed at the local server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::Value;
use zmot::config::{self, Config};
use zmot::domain::{FetchErrorKind, Mention};
use zmot::pipeline::{http_client, Pipeline};
use zmot::sources::{self, FetchContext, FetchError, Fetched};
use zmot::testutil;

// ---------------------------------------------------------------- the local server

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, decoded.
    fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

#[derive(Clone)]
enum Payload {
    Bytes(Vec<u8>),
    /// A body of this many bytes sent in chunks without a length.
    Stream(usize),
}

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Payload,
}

impl Reply {
    fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: Payload::Bytes(body.into()),
        }
    }

    fn status(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            ..Reply::ok(body)
        }
    }

    fn fixture(path: &str) -> Reply {
        Reply::ok(fixture(path))
    }

    fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

type Matcher = Box<dyn Fn(&Seen) -> bool + Send + Sync>;
type Responder = Box<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// Replies served in order; the last one repeats. A route with a responder answers
/// each request from what it asks (a fake service that filters and pages).
struct Route {
    matcher: Matcher,
    replies: VecDeque<Reply>,
    responder: Option<Responder>,
}

#[derive(Default)]
struct ServerState {
    routes: Vec<Route>,
    seen: Vec<Seen>,
}

struct Server {
    base: String,
    state: Arc<Mutex<ServerState>>,
}

impl Server {
    async fn start() -> Server {
        let state: Arc<Mutex<ServerState>> = Arc::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            base: format!("http://{addr}"),
            state,
        }
    }

    /// Answers requests to `path` (any query) with `reply`; repeated calls queue replies.
    fn on(&self, path: &str, reply: Reply) {
        let path = path.to_string();
        self.on_when(move |s| s.path == path, reply);
    }

    fn on_when(&self, matcher: impl Fn(&Seen) -> bool + Send + Sync + 'static, reply: Reply) {
        let mut st = self.state.lock().unwrap();
        st.routes.push(Route {
            matcher: Box::new(matcher),
            replies: VecDeque::from([reply]),
            responder: None,
        });
    }

    /// Answers requests to `path` with what `respond` makes of each.
    fn on_request(&self, path: &str, respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        let path = path.to_string();
        let mut st = self.state.lock().unwrap();
        st.routes.push(Route {
            matcher: Box::new(move |s| s.path == path),
            replies: VecDeque::new(),
            responder: Some(Box::new(respond)),
        });
    }

    /// Adds a reply to the most recent route, served after the ones before it.
    fn then(&self, reply: Reply) {
        let mut st = self.state.lock().unwrap();
        st.routes.last_mut().unwrap().replies.push_back(reply);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn hits(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn handle(State(state): State<Arc<Mutex<ServerState>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let reply = {
        let mut st = state.lock().unwrap();
        st.seen.push(seen.clone());
        st.routes.iter_mut().find(|r| (r.matcher)(&seen)).map(|r| {
            if let Some(respond) = &r.responder {
                respond(&seen)
            } else if r.replies.len() > 1 {
                r.replies.pop_front().unwrap()
            } else {
                r.replies[0].clone()
            }
        })
    };
    let reply = reply.unwrap_or_else(|| Reply::status(404, "no route"));
    let mut resp = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in &reply.headers {
        resp = resp.header(k, v);
    }
    let body = match reply.body {
        Payload::Bytes(b) => Body::from(b),
        Payload::Stream(n) => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = (0..n / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
            Body::from_stream(futures::stream::iter(chunks))
        }
    };
    resp.body(body).unwrap()
}

// ---------------------------------------------------------------- helpers

fn fixture(path: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn ctx() -> FetchContext {
    FetchContext {
        http: http_client(&Config::default()).unwrap(),
        keywords: Vec::new(),
        languages: Vec::new(),
        first_run_since: t("2026-01-01T00:00:00Z"),
        now: t("2026-11-05T00:00:00Z"),
    }
}

/// Source settings from TOML, with no pacing and short backoffs so tests run fast.
fn params(toml_text: &str) -> toml::Table {
    let mut p: toml::Table = toml::from_str(toml_text).unwrap();
    p.entry("min_interval_ms").or_insert(0.into());
    p.entry("retry_base_ms").or_insert(10.into());
    p
}

async fn fetch(
    kind: &str,
    p: &toml::Table,
    ctx: &FetchContext,
    cursor: Option<&str>,
) -> Result<Fetched, FetchError> {
    let c = sources::build(kind, p).unwrap_or_else(|e| panic!("build {kind}: {e}"));
    assert_eq!(c.kind(), kind);
    c.fetch(ctx, cursor).await
}

fn ids(f: &Fetched) -> Vec<&str> {
    f.mentions.iter().map(|m| m.external_id.as_str()).collect()
}

fn by_id<'a>(f: &'a Fetched, id: &str) -> &'a Mention {
    f.mentions
        .iter()
        .find(|m| m.external_id == id)
        .unwrap_or_else(|| panic!("no mention {id} in {:?}", ids(f)))
}

fn cursor_json(f: &Fetched) -> Value {
    serde_json::from_str(f.cursor.as_deref().expect("a cursor")).unwrap()
}

// ---------------------------------------------------------------- check_params

#[test]
fn check_params_names_what_is_missing_or_wrong() {
    let err = |kind: &str, text: &str| {
        sources::check_params(kind, &toml::from_str(text).unwrap()).unwrap_err()
    };
    assert_eq!(err("appstore", ""), "appstore source needs `app_id`");
    assert!(err("appstore", "app_id = \"notes\"").contains("numeric id"));
    assert!(err("appstore", "app_id = \"1\"\nappid = 2").contains("no setting `appid`"));
    assert_eq!(err("feed", ""), "feed source needs `url`");
    assert!(err("feed", "url = \"ftp://x\"").contains("http or https"));
    assert_eq!(err("page", ""), "page source needs `url`");
    assert!(err(
        "page",
        "url = \"http://127.0.0.1/\"\nreview_selector = \"div[\""
    )
    .contains("not a valid CSS selector"));
    assert!(err(
        "page",
        "url = \"http://127.0.0.1/\"\nreview_selector = \".r\""
    )
    .contains("needs `text_selector`"));
    assert!(err(
        "page",
        "url = \"http://127.0.0.1/\"\ntext_selector = \".t\""
    )
    .contains("needs `review_selector`"));
    assert_eq!(err("bluesky", "q = \"x\""), "bluesky source needs `handle`");
    assert!(
        err("googleplay", "app_id = \"com.example.notes\"").contains("enabled_unofficial = true")
    );
    assert_eq!(
        err("googleplay", "enabled_unofficial = true"),
        "googleplay source needs `app_id`"
    );
    assert!(err("mastodon", "max_pages = 0").contains("between 1 and 40"));
    assert!(err("hackernews", "retries = \"3\"").contains("`retries` must be a whole number"));
    assert!(err("carrier-pigeon", "").contains("unknown source kind"));
    // What the shipped example and the other tests configure stays valid.
    for (kind, text) in [
        ("hackernews", "query = \"acme\""),
        ("hackernews", ""),
        ("mastodon", "tag = \"ExampleNotes\""),
        ("feed", "url = \"http://127.0.0.1:9/feed\""),
        ("bluesky", "handle = \"zmot.bsky.social\""),
        ("page", "url = \"https://shop.example.com/p\""),
        ("appstore", "app_id = \"id1450000000\"\ncountry = \"GB\""),
        (
            "googleplay",
            "app_id = \"com.example.notes\"\nenabled_unofficial = true",
        ),
    ] {
        sources::check_params(kind, &toml::from_str(text).unwrap())
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}

// ---------------------------------------------------------------- appstore

const APP_PAGE: &str = "/us/rss/customerreviews/page={}/id=1450000000/sortby=mostrecent/json";

fn app_page(n: u32) -> String {
    APP_PAGE.replace("{}", &n.to_string())
}

fn appstore_params(srv: &Server, extra: &str) -> toml::Table {
    params(&format!(
        "app_id = \"1450000000\"\nbase_url = \"{}\"\n{extra}",
        srv.base
    ))
}

#[tokio::test]
async fn appstore_reads_every_page_field_by_field() {
    let srv = Server::start().await;
    srv.on(&app_page(1), Reply::fixture("appstore/page1.json"));
    srv.on(&app_page(2), Reply::fixture("appstore/page2.json"));
    srv.on(&app_page(3), Reply::fixture("appstore/empty.json"));
    let f = fetch("appstore", &appstore_params(&srv, ""), &ctx(), None)
        .await
        .unwrap();

    assert_eq!(
        ids(&f),
        [
            "11223344556",
            "11223340001",
            "11223330000",
            "11223320000",
            "11223310000"
        ]
    );
    assert_eq!(f.skipped, 1, "the entry without im:rating");
    assert!(
        f.note
            .as_deref()
            .unwrap()
            .contains("page 1 entry 3: no im:rating"),
        "{:?}",
        f.note
    );
    let m = by_id(&f, "11223344556");
    assert_eq!(m.author.as_deref(), Some("kettlefan_92"));
    assert_eq!(
        m.title.as_deref(),
        Some("Finally a notes app that syncs 🎉")
    );
    assert_eq!(
        m.text,
        "Switched from paper & three other apps. Sync between iPad and Mac is instant — love it! 😍"
    );
    assert_eq!(m.rating, Some(5));
    assert_eq!(m.published_at, t("2026-11-03T15:14:51Z"));
    assert_eq!(
        m.url.as_deref(),
        Some("https://itunes.apple.com/us/review?id=1450000000&type=Purple%20Software")
    );
    assert_eq!(m.engagement.likes, 3);
    let extra = m.extra.as_ref().unwrap();
    assert_eq!(extra["app_version"], "4.12.0");
    assert_eq!(extra["vote_count"], 4);
    assert_eq!(extra["country"], "us");
    let zoe = by_id(&f, "11223340001");
    assert_eq!(zoe.author.as_deref(), Some("Zoë M."));
    assert_eq!(zoe.rating, Some(1));
    assert!(zoe.text.contains("gone.\nSupport"), "{}", zoe.text);
    assert_eq!(
        by_id(&f, "11223330000").text,
        "使いやすいけど、検索が遅い。"
    );

    let c = cursor_json(&f);
    assert_eq!(c["at"], "2026-11-03T15:14:51Z");
    assert_eq!(c["ids"], serde_json::json!(["11223344556"]));
    let seen = srv.seen();
    assert_eq!(seen.len(), 3, "pages 1-3, stopping at the empty one");
    let ua = seen[0].header("user-agent").unwrap();
    assert!(ua.starts_with("zmot/") && ua.contains("+https://"), "{ua}");
}

#[tokio::test]
async fn appstore_second_run_brings_only_newer_reviews() {
    let srv = Server::start().await;
    srv.on(&app_page(1), Reply::fixture("appstore/page1.json"));
    srv.then(Reply::fixture("appstore/page1_later.json"));
    srv.on(&app_page(2), Reply::fixture("appstore/page2.json"));
    srv.on(&app_page(3), Reply::fixture("appstore/empty.json"));
    let p = appstore_params(&srv, "");
    let first = fetch("appstore", &p, &ctx(), None).await.unwrap();
    assert_eq!(first.mentions.len(), 5);

    let second = fetch("appstore", &p, &ctx(), first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&second), ["11223350000"]);
    let m = &second.mentions[0];
    assert_eq!(m.author.as_deref(), Some("Sam ✈️"));
    assert_eq!(m.rating, Some(2));
    assert_eq!(
        srv.hits(&app_page(2)).len(),
        1,
        "page 1 already reached known reviews"
    );
    assert_eq!(cursor_json(&second)["at"], "2026-11-04T14:00:00Z");

    let third = fetch("appstore", &p, &ctx(), second.cursor.as_deref())
        .await
        .unwrap();
    assert!(third.mentions.is_empty(), "{:?}", ids(&third));
}

#[tokio::test]
async fn appstore_first_run_is_bounded_by_the_look_back() {
    let srv = Server::start().await;
    srv.on(&app_page(1), Reply::fixture("appstore/page1.json"));
    srv.on(&app_page(2), Reply::fixture("appstore/page2.json"));
    let mut c = ctx();
    c.first_run_since = t("2026-11-02T00:00:00Z");
    let f = fetch("appstore", &appstore_params(&srv, ""), &c, None)
        .await
        .unwrap();
    assert_eq!(ids(&f), ["11223344556", "11223340001"]);
    assert!(
        srv.hits(&app_page(2)).is_empty(),
        "older reviews on page 1 end the walk"
    );
}

#[tokio::test]
async fn appstore_single_entry_object_empty_feed_and_past_last_page() {
    let srv = Server::start().await;
    srv.on(&app_page(1), Reply::fixture("appstore/single.json"));
    // Page 2 has no route: the server answers 404, which ends the walk.
    let f = fetch("appstore", &appstore_params(&srv, ""), &ctx(), None)
        .await
        .unwrap();
    assert_eq!(ids(&f), ["11223350000"]);
    assert!(f.cursor.is_some());

    let empty = Server::start().await;
    empty.on(&app_page(1), Reply::fixture("appstore/empty.json"));
    let f = fetch("appstore", &appstore_params(&empty, ""), &ctx(), None)
        .await
        .unwrap();
    assert!(f.mentions.is_empty());
    assert_eq!(f.skipped, 0);
    assert_eq!(empty.seen().len(), 1);
}

#[tokio::test]
async fn appstore_bot_protection_page_is_blocked_without_retrying() {
    let srv = Server::start().await;
    srv.on(
        &app_page(1),
        Reply::status(403, fixture("common/cloudflare_403.html"))
            .header("content-type", "text/html"),
    );
    let e = fetch("appstore", &appstore_params(&srv, ""), &ctx(), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Blocked);
    assert!(
        e.message.contains("Attention Required! | Cloudflare"),
        "{}",
        e.message
    );
    assert_eq!(srv.seen().len(), 1);
}

#[tokio::test]
async fn appstore_429_with_long_retry_after_fails_as_rate_limited() {
    let srv = Server::start().await;
    srv.on(
        &app_page(1),
        Reply::status(429, "slow down").header("retry-after", "3600"),
    );
    let e = fetch("appstore", &appstore_params(&srv, ""), &ctx(), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::RateLimited);
    assert!(e.message.contains("wait 3600 s"), "{}", e.message);
    assert_eq!(srv.seen().len(), 1, "a long Retry-After is not waited out");
}

#[tokio::test]
async fn appstore_429_with_short_retry_after_is_waited_and_retried() {
    let srv = Server::start().await;
    srv.on(
        &app_page(1),
        Reply::status(429, "").header("retry-after", "1"),
    );
    srv.then(Reply::fixture("appstore/page1.json"));
    srv.on(&app_page(2), Reply::fixture("appstore/empty.json"));
    let started = Instant::now();
    let f = fetch("appstore", &appstore_params(&srv, ""), &ctx(), None)
        .await
        .unwrap();
    assert_eq!(f.mentions.len(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(srv.hits(&app_page(1)).len(), 2);
}

#[tokio::test]
async fn appstore_5xx_is_retried_a_bounded_number_of_times() {
    let srv = Server::start().await;
    srv.on(&app_page(1), Reply::status(503, "upstream down"));
    let e = fetch(
        "appstore",
        &appstore_params(&srv, "retries = 2"),
        &ctx(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Network);
    assert!(e.message.contains("HTTP 503"), "{}", e.message);
    assert_eq!(srv.seen().len(), 3, "one try and two retries");

    let flaky = Server::start().await;
    flaky.on(&app_page(1), Reply::status(502, ""));
    flaky.then(Reply::fixture("appstore/single.json"));
    let f = fetch("appstore", &appstore_params(&flaky, ""), &ctx(), None)
        .await
        .unwrap();
    assert_eq!(ids(&f), ["11223350000"]);
}

#[tokio::test]
async fn appstore_truncated_json_is_malformed() {
    let srv = Server::start().await;
    srv.on(&app_page(1), Reply::fixture("appstore/truncated.json"));
    let e = fetch("appstore", &appstore_params(&srv, ""), &ctx(), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Malformed);
    assert!(e.message.contains("invalid JSON"), "{}", e.message);
}

#[tokio::test]
async fn appstore_later_page_failing_keeps_reviews_and_the_next_run_starts_there() {
    let srv = Server::start().await;
    srv.on(&app_page(1), Reply::fixture("appstore/page1.json"));
    srv.on(&app_page(2), Reply::status(500, "oops"));
    srv.then(Reply::fixture("appstore/page2.json"));
    srv.on(&app_page(3), Reply::fixture("appstore/empty.json"));
    let p = appstore_params(&srv, "retries = 0");
    let f = fetch(
        "appstore",
        &p,
        &ctx(),
        Some("{\"at\":\"2026-10-01T00:00:00Z\"}"),
    )
    .await
    .unwrap();
    assert_eq!(f.mentions.len(), 3);
    assert_eq!(f.partial, Some(FetchErrorKind::Network));
    let note = f.note.as_deref().unwrap();
    assert!(note.contains("page 1 entry 3"), "{note}");
    assert!(note.contains("stopped at page 2"), "{note}");
    let gap = &cursor_json(&f)["gap"];
    assert_eq!(
        cursor_json(&f)["at"],
        "2026-10-01T00:00:00Z",
        "the old watermark"
    );
    assert_eq!(gap["resume"], "2");

    let next = fetch("appstore", &p, &ctx(), f.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(next.mentions.len(), 2, "page 2's reviews");
    assert_eq!(next.partial, None);
    let pages: Vec<String> = srv.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(pages, [app_page(1), app_page(2), app_page(2), app_page(3)]);
    assert_eq!(
        cursor_json(&next),
        serde_json::json!({"at": "2026-11-03T15:14:51Z", "ids": ["11223344556"]}),
        "the gap is read: the newest review of the first run is the watermark"
    );
}

#[tokio::test]
async fn appstore_page_limit_goes_on_from_the_next_page_next_run() {
    let srv = Server::start().await;
    srv.on(&app_page(1), Reply::fixture("appstore/page1.json"));
    srv.on(&app_page(2), Reply::fixture("appstore/page2.json"));
    srv.on(&app_page(3), Reply::fixture("appstore/empty.json"));
    let p = appstore_params(&srv, "max_pages = 1");
    // The cursor as older versions wrote it: a bare watermark.
    let mut cursor = Some("{\"at\":\"2026-10-01T00:00:00Z\"}".to_string());
    let mut read = Vec::new();
    for _ in 0..3 {
        let f = fetch("appstore", &p, &ctx(), cursor.as_deref())
            .await
            .unwrap();
        assert_eq!(
            f.partial, None,
            "nothing is lost, so the run is not partial"
        );
        read.extend(ids(&f).iter().map(|id| id.to_string()));
        cursor = f.cursor;
    }
    let pages: Vec<String> = srv.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(pages, [app_page(1), app_page(2), app_page(3)]);
    assert_eq!(
        read.len(),
        5,
        "page 1's three reviews and page 2's two: {read:?}"
    );
    let c: Value = serde_json::from_str(cursor.as_deref().unwrap()).unwrap();
    assert_eq!(
        c,
        serde_json::json!({"at": "2026-11-03T15:14:51Z", "ids": ["11223344556"]})
    );
}

#[tokio::test]
async fn appstore_reading_page_10_without_reaching_known_reviews_is_partial() {
    let srv = Server::start().await;
    // A busy storefront: ten full pages newer than the last run (the same reviews stand
    // in for each page; what matters is that none is as old as the watermark).
    srv.on_when(
        |s| s.path.starts_with("/us/rss/customerreviews/page="),
        Reply::fixture("appstore/page1.json"),
    );
    let f = fetch(
        "appstore",
        &appstore_params(&srv, ""),
        &ctx(),
        Some("{\"at\":\"2026-10-01T00:00:00Z\"}"),
    )
    .await
    .unwrap();
    assert_eq!(srv.seen().len(), 10);
    assert_eq!(f.partial, Some(FetchErrorKind::Other));
    let note = f.note.as_deref().unwrap();
    assert!(
        note.contains("ends at page 10")
            && note.contains("between 2026-10-01 00:00 UTC and 2026-11-01 17:00 UTC"),
        "{note}"
    );
    assert_eq!(cursor_json(&f)["at"], "2026-11-03T15:14:51Z");
    assert_eq!(
        cursor_json(&f).get("gap"),
        None,
        "nothing more to go on with"
    );
}

// ---------------------------------------------------------------- googleplay

const PLAY_PATH: &str = "/_/PlayStoreUi/data/batchexecute";

fn play_params(srv: &Server) -> toml::Table {
    params(&format!(
        "app_id = \"com.example.notes\"\nenabled_unofficial = true\nbase_url = \"{}\"",
        srv.base
    ))
}

/// The `f.req` form value of a batchexecute request.
fn freq(s: &Seen) -> String {
    url::form_urlencoded::parse(s.body.as_bytes())
        .find(|(k, _)| k == "f.req")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

#[tokio::test]
async fn googleplay_reads_reviews_replies_and_pages() {
    let srv = Server::start().await;
    srv.on(PLAY_PATH, Reply::fixture("googleplay/page1.txt"));
    srv.then(Reply::fixture("googleplay/page2.txt"));
    let f = fetch("googleplay", &play_params(&srv), &ctx(), None)
        .await
        .unwrap();

    assert_eq!(f.mentions.len(), 4);
    assert_eq!(f.skipped, 1, "the rating without text");
    assert!(f.note.as_deref().unwrap().contains("no review text"));
    let m = by_id(&f, "gp:AOqpTOGx1aA2bB3cC4dD5eE6fF7gG8hH9iI0jJ");
    assert_eq!(m.author.as_deref(), Some("Priya Raman"));
    assert_eq!(m.rating, Some(2));
    assert_eq!(
        m.text,
        "Widget stopped updating after the last update 😕 Please fix!"
    );
    assert_eq!(m.engagement.likes, 14);
    assert_eq!(m.published_at, t("2026-11-03T09:00:00Z"));
    assert_eq!(
        m.owner_reply.as_deref(),
        Some("Hi Priya, sorry about that! Version 4.12.1 fixes the widget & sync — please update.")
    );
    assert_eq!(m.owner_reply_at, Some(t("2026-11-03T12:30:00Z")));
    assert_eq!(m.language.as_deref(), Some("en"));
    assert_eq!(m.extra.as_ref().unwrap()["app_version"], "4.12.0");
    assert!(m
        .url
        .as_deref()
        .unwrap()
        .contains("id=com.example.notes&reviewId=gp%3AAOqpTOGx1"));
    let lea = by_id(&f, "gp:AOqpTOCold2old2old2old2old2old2old2old2");
    assert_eq!(lea.rating, Some(1));
    assert!(lea
        .owner_reply
        .as_deref()
        .unwrap()
        .starts_with("Léa, we are so sorry"));
    assert_eq!(
        by_id(&f, "gp:AOqpTOFk9zZ8yY7xX6wW5vV4uU3tT2sS1rR0qQ").owner_reply,
        None
    );

    let seen = srv.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.method == "POST"));
    assert_eq!(seen[0].param("hl").as_deref(), Some("en"));
    assert_eq!(seen[0].param("gl").as_deref(), Some("us"));
    let first: Value = serde_json::from_str(&freq(&seen[0])).unwrap();
    assert_eq!(first[0][0][0], "UsvDTd");
    let args: Value = serde_json::from_str(first[0][0][1].as_str().unwrap()).unwrap();
    assert_eq!(args[2][1], 2, "sorted newest first");
    assert_eq!(args[2][2][2], Value::Null, "no token on the first page");
    assert_eq!(args[3][0], "com.example.notes");
    assert!(
        freq(&seen[1]).contains("CpEBCo4BKmIKOAoSCgNhcHAS"),
        "the token of page 1"
    );
    assert_eq!(cursor_json(&f)["at"], "2026-11-03T09:00:00Z");
}

#[tokio::test]
async fn googleplay_second_run_stops_at_known_reviews() {
    let srv = Server::start().await;
    srv.on(PLAY_PATH, Reply::fixture("googleplay/page1.txt"));
    srv.then(Reply::fixture("googleplay/page2.txt"));
    srv.then(Reply::fixture("googleplay/page1_later.txt"));
    let p = play_params(&srv);
    let first = fetch("googleplay", &p, &ctx(), None).await.unwrap();
    let second = fetch("googleplay", &p, &ctx(), first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&second), ["gp:AOqpTOBnew0new0new0new0new0new0new0new0"]);
    assert_eq!(
        srv.seen().len(),
        3,
        "known reviews on the first page end the walk"
    );
}

/// The token `googleplay/page1.txt` gives for page 2.
const PLAY_PAGE2_TOKEN: &str = "CpEBCo4BKmIKOAoSCgNhcHAS";

#[tokio::test]
async fn googleplay_page_limit_goes_on_from_the_saved_token_next_run() {
    let srv = Server::start().await;
    srv.on_when(
        |s| s.path == PLAY_PATH && freq(s).contains(PLAY_PAGE2_TOKEN),
        Reply::fixture("googleplay/page2.txt"),
    );
    srv.on(PLAY_PATH, Reply::fixture("googleplay/page1.txt"));
    let mut p = play_params(&srv);
    p.insert("max_pages".into(), 1.into());

    let first = fetch("googleplay", &p, &ctx(), None).await.unwrap();
    assert_eq!(first.mentions.len(), 2);
    assert!(
        first.note.as_deref().unwrap().contains("max_pages = 1"),
        "{:?}",
        first.note
    );
    assert_eq!(first.partial, None);
    let second = fetch("googleplay", &p, &ctx(), first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        ids(&second),
        [
            "gp:AOqpTODold1old1old1old1old1old1old1old1",
            "gp:AOqpTOCold2old2old2old2old2old2old2old2"
        ]
    );
    assert!(freq(&srv.seen()[1]).contains(PLAY_PAGE2_TOKEN));
    assert_eq!(
        cursor_json(&second),
        serde_json::json!({"at": "2026-11-03T09:00:00Z", "ids": ["gp:AOqpTOGx1aA2bB3cC4dD5eE6fF7gG8hH9iI0jJ"]})
    );
}

#[tokio::test]
async fn googleplay_throttled_after_page_1_keeps_what_was_read_and_goes_on_next_run() {
    let srv = Server::start().await;
    srv.on_when(
        |s| s.path == PLAY_PATH && freq(s).contains(PLAY_PAGE2_TOKEN),
        Reply::fixture("googleplay/throttled.txt"),
    );
    srv.then(Reply::fixture("googleplay/page2.txt"));
    srv.on(PLAY_PATH, Reply::fixture("googleplay/page1.txt"));
    let text = format!(
        r#"
[http]
first_run_lookback_days = 3650

[[watch]]
name = "Example Notes"

  [[watch.source]]
  name = "play"
  kind = "googleplay"
  params = {{ app_id = "com.example.notes", enabled_unofficial = true, base_url = "{}", min_interval_ms = 0 }}
"#,
        srv.base
    );
    let db = testutil::sqlite().await.unwrap();
    let pipeline = pipeline_for(&text, &db).await;
    let source = source_named(&db, "play").await;

    let first = pipeline.fetch_source(&source).await.unwrap();
    assert_eq!(first.result.unwrap().new, 2, "page 1 is kept");
    let run = &db.store.fetch_runs(source.id, 1).await.unwrap()[0];
    assert_eq!(run.status, "partial");
    assert_eq!(run.error_kind.as_deref(), Some("rate_limited"));
    let note = run.error.as_deref().unwrap();
    assert!(
        note.contains("stopped at page 2") && note.contains("PlayGatewayError"),
        "{note}"
    );

    let source = db.store.source(source.id).await.unwrap().unwrap();
    let second = pipeline.fetch_source(&source).await.unwrap();
    assert_eq!(second.result.unwrap().new, 2, "page 2, from its token");
    assert_eq!(db.store.count_mentions(None).await.unwrap(), 4);
    assert_eq!(
        db.store.fetch_runs(source.id, 1).await.unwrap()[0].status,
        "ok"
    );
    let tokens: Vec<bool> = srv
        .hits(PLAY_PATH)
        .iter()
        .map(|s| freq(s).contains(PLAY_PAGE2_TOKEN))
        .collect();
    assert_eq!(
        tokens,
        [false, true, true],
        "the second run starts at page 2"
    );
}

#[tokio::test]
async fn googleplay_429_after_page_1_keeps_what_was_read_and_passes_on_its_retry_after() {
    let srv = Server::start().await;
    srv.on_when(
        |s| s.path == PLAY_PATH && freq(s).contains(PLAY_PAGE2_TOKEN),
        Reply::status(429, "Too Many Requests").header("retry-after", "3600"),
    );
    srv.on(PLAY_PATH, Reply::fixture("googleplay/page1.txt"));
    let mut c = ctx();
    c.first_run_since = t("2000-01-01T00:00:00Z");
    let f = fetch("googleplay", &play_params(&srv), &c, None)
        .await
        .unwrap();
    assert_eq!(f.mentions.len(), 2, "page 1 is kept");
    assert_eq!(f.partial, Some(FetchErrorKind::RateLimited));
    assert_eq!(f.retry_after, Some(Duration::from_secs(3600)));
    assert_eq!(srv.hits(PLAY_PATH).len(), 2, "a long wait is not sat out");
}

#[tokio::test]
async fn googleplay_throttling_answer_is_rate_limited() {
    let srv = Server::start().await;
    srv.on(PLAY_PATH, Reply::fixture("googleplay/throttled.txt"));
    let e = fetch("googleplay", &play_params(&srv), &ctx(), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::RateLimited);
    assert!(e.message.contains("PlayGatewayError"), "{}", e.message);
    assert_eq!(srv.seen().len(), 1);
}

#[tokio::test]
async fn googleplay_chunked_answer_and_unexpected_page() {
    let srv = Server::start().await;
    srv.on(PLAY_PATH, Reply::fixture("googleplay/chunked.txt"));
    let f = fetch("googleplay", &play_params(&srv), &ctx(), None)
        .await
        .unwrap();
    assert_eq!(ids(&f), ["gp:AOqpTOBnew0new0new0new0new0new0new0new0"]);
    assert_eq!(srv.seen().len(), 1, "no token, no second page");

    let html = Server::start().await;
    html.on(PLAY_PATH, Reply::fixture("googleplay/no_guard.txt"));
    let e = fetch("googleplay", &play_params(&html), &ctx(), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Malformed);
    assert!(e.message.contains(")]}'"), "{}", e.message);
}

// ---------------------------------------------------------------- feed

fn feed_params(url: &str, extra: &str) -> toml::Table {
    params(&format!("url = \"{url}\"\n{extra}"))
}

#[tokio::test]
async fn feed_google_alerts_unwraps_links_strips_tags_and_filters_keywords() {
    let srv = Server::start().await;
    srv.on(
        "/alerts/feeds/1/2",
        Reply::fixture("feed/google_alerts.xml"),
    );
    let url = srv.url("/alerts/feeds/1/2");
    let mut c = ctx();
    c.keywords = vec!["Example Notes".into()];
    let f = fetch("feed", &feed_params(&url, ""), &c, None)
        .await
        .unwrap();

    assert_eq!(
        ids(&f),
        [
            "tag:google.com,2013:googlealerts/feed:10462049291727298467",
            "tag:google.com,2013:googlealerts/feed:5512340987123400011"
        ]
    );
    let m = &f.mentions[0];
    assert_eq!(
        m.title.as_deref(),
        Some("Example Notes review: the best note app of 2026?")
    );
    assert_eq!(
        m.text,
        "We spent two weeks with Example Notes 5.0 and its new offline mode & widgets ..."
    );
    assert_eq!(
        m.url.as_deref(),
        Some("https://www.techblog.example/reviews/example-notes-2026?ref=rss")
    );
    assert_eq!(m.author, None, "Google Alerts leaves the author empty");
    assert_eq!(m.published_at, t("2026-11-03T11:05:00Z"));
    assert!(f.mentions[1].text.contains("without errors 👍"));

    // Without keywords, or with filtering off, the unrelated item is kept.
    let all = fetch("feed", &feed_params(&url, ""), &ctx(), None)
        .await
        .unwrap();
    assert_eq!(all.mentions.len(), 3);
    let unfiltered = fetch(
        "feed",
        &feed_params(&url, "filter_keywords = false"),
        &c,
        None,
    )
    .await
    .unwrap();
    assert_eq!(unfiltered.mentions.len(), 3);
}

#[tokio::test]
async fn feed_rss_conditional_requests_and_second_run() {
    let srv = Server::start().await;
    srv.on(
        "/reviews/feed.xml",
        Reply::fixture("feed/reviews_v1.xml")
            .header("etag", "\"v1\"")
            .header("content-type", "application/rss+xml"),
    );
    srv.then(Reply::status(304, ""));
    srv.then(Reply::fixture("feed/reviews_v2.xml").header("etag", "\"v2\""));
    let p = feed_params(&srv.url("/reviews/feed.xml"), "");

    let first = fetch("feed", &p, &ctx(), None).await.unwrap();
    assert_eq!(ids(&first), ["review-9001", "review-9000", "about-reviews"]);
    assert_eq!(first.skipped, 1, "the item with neither title nor text");
    let m = by_id(&first, "review-9001");
    assert_eq!(m.title.as_deref(), Some("Great for meetings ⭐⭐⭐⭐⭐"));
    assert_eq!(
        m.text,
        "I take all my meeting notes here. The templates save me 10 minutes a day!\nWould love a Linux app."
    );
    assert_eq!(m.author.as_deref(), Some("Olivia P."));
    assert_eq!(
        m.url.as_deref(),
        Some("https://examplenotes.app/reviews/9001")
    );
    assert_eq!(m.language.as_deref(), Some("en-us"));
    assert_eq!(m.published_at, t("2026-11-03T10:15:00Z"));
    assert_eq!(
        by_id(&first, "review-9000").text,
        "Two devices edited the same note & one version vanished. Support helped, but still."
    );
    let undated = by_id(&first, "about-reviews");
    assert_eq!(
        undated.published_at,
        ctx().now,
        "an undated item is dated when first seen"
    );
    assert_eq!(cursor_json(&first)["etag"], "\"v1\"");

    let unchanged = fetch("feed", &p, &ctx(), first.cursor.as_deref())
        .await
        .unwrap();
    assert!(unchanged.mentions.is_empty());
    assert_eq!(unchanged.cursor, None, "a 304 keeps the previous cursor");
    assert_eq!(srv.seen()[1].header("if-none-match"), Some("\"v1\""));

    let second = fetch("feed", &p, &ctx(), first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        ids(&second),
        ["review-9002"],
        "neither dated nor undated items come back"
    );
    assert_eq!(second.skipped, 0, "the item without text was counted once");
    assert_eq!(
        second.mentions[0].text,
        "Dark mode landed in 4.12.1 — my eyes thank you."
    );
    assert_eq!(cursor_json(&second)["etag"], "\"v2\"");
}

// Google News search items, by the article dates the feed carries (now is 00:00).
const NEWS_A: &str = "CBMihAFBVV95cUxNQ2x0d3VfRmZ4b0VkT0JtN2RRcnRPa1J4dF9xQ1p6V0V2b2d1T1FmN3lYb3JxRWZKNnBGd0ZkTjRkV1hNa3RyZmI2aE5oM2x6d2xWY3ZyYVlFbzJpN3R3bUF3ZXZkZ0lWRUhIa2pLN2pUdTE0Q1hQWmVkbmJk"; // 23:00
const NEWS_B: &str = "CBMidkFVX3lxTE9zWjlnR3RfcEJ2a2lHd2xLb1JXbmZ4a3FjQkw3a0N2b2ZkVU9yZ0ZpbWVZSnZzSXNXWlR5V0RvZHhyR1lOQnV6dm9sQ1AzaGd6RjBqbk1oZ2x0dE1Yb3RqSmRwTTVSQ1dJVUtYZVNQX1JwdkE"; // 21:00
const NEWS_C: &str = "CBMigAFBVV95cUxQcGVxN0JWd0RaU2xjdzRjZ2lEU2ZhVnBfbm1qT2p4Y3pLb05HX1JmR0hfNm1pOXJfT0pQZ2xzc3RJcnZ6cUh6clF0U3N5X3dNNk1ZYm9pRldDT0hFNHl3Q3NwSGZqMU9xN2hzYmZ1TmRuX2lCYmg"; // 22:00
const NEWS_FUTURE: &str = "CBMiXEFVX3lxTE5oY1dLRnN3X2JZQmV6N2ZkR3JwY0RkaU5VRm5oTXNYYV9RbUhZbjBxVEVTNFZ0RzNZR1FiYUtRdmZxcU1JbmZQVWV5WnpQWkFfR0FQT2ZoZ2hyRmQ0"; // 1 Dec

#[tokio::test]
async fn feed_item_dated_before_ones_already_seen_still_comes() {
    let srv = Server::start().await;
    srv.on("/rss/search", Reply::fixture("feed/news_search_v1.xml"));
    srv.then(Reply::fixture("feed/news_search_v2.xml"));
    let p = feed_params(&srv.url("/rss/search?q=%22Example+Notes%22"), "");

    let first = fetch("feed", &p, &ctx(), None).await.unwrap();
    assert_eq!(ids(&first), [NEWS_A, NEWS_B]);
    // Google News lists the 22:00 article after the 23:00 one had been fetched.
    let second = fetch("feed", &p, &ctx(), first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&second), [NEWS_C]);
    assert_eq!(second.skipped, 0);
    let third = fetch("feed", &p, &ctx(), second.cursor.as_deref())
        .await
        .unwrap();
    assert!(third.mentions.is_empty(), "{:?}", ids(&third));
}

#[tokio::test]
async fn feed_items_with_only_a_description_are_told_apart_by_it() {
    let srv = Server::start().await;
    srv.on("/alerts", Reply::fixture("feed/bare_descriptions.xml"));
    let p = feed_params(&srv.url("/alerts"), "");
    let mut c = ctx();
    c.first_run_since = t("2026-11-04T00:00:00Z");

    let first = fetch("feed", &p, &c, None).await.unwrap();
    assert_eq!(first.mentions.len(), 3, "{:?}", ids(&first));
    let mut unique = ids(&first);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "{unique:?}");
    // The same items again are known by their text.
    let second = fetch("feed", &p, &c, first.cursor.as_deref())
        .await
        .unwrap();
    assert!(second.mentions.is_empty(), "{:?}", ids(&second));
}

#[tokio::test]
async fn feed_item_dated_in_the_future_holds_back_nothing() {
    let srv = Server::start().await;
    srv.on("/rss/search", Reply::fixture("feed/news_search_future.xml"));
    srv.then(Reply::fixture("feed/news_search_v2.xml"));
    let p = feed_params(&srv.url("/rss/search"), "");

    let first = fetch("feed", &p, &ctx(), None).await.unwrap();
    assert_eq!(ids(&first), [NEWS_FUTURE, NEWS_B]);
    assert_eq!(
        by_id(&first, NEWS_FUTURE).published_at,
        ctx().now,
        "a date in the future counts as now"
    );
    let second = fetch("feed", &p, &ctx(), first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        ids(&second),
        [NEWS_A, NEWS_C],
        "articles dated before the future one still come"
    );
    assert_eq!(second.skipped, 0);
}

#[tokio::test]
async fn feed_cursor_from_before_ids_were_kept_is_read() {
    let srv = Server::start().await;
    srv.on("/rss/search", Reply::fixture("feed/news_search_v2.xml"));
    let p = feed_params(&srv.url("/rss/search"), "");
    // What the previous version saved after news_search_v1.xml: the newest date and id.
    let old = format!(r#"{{"at":"2026-11-04T23:00:00Z","ids":["{NEWS_A}"],"etag":"\"v1\""}}"#);
    let mut c = ctx();
    c.first_run_since = t("2026-11-04T21:30:00Z");

    let f = fetch("feed", &p, &c, Some(&old)).await.unwrap();
    assert_eq!(srv.seen()[0].header("if-none-match"), Some("\"v1\""));
    // The 22:00 article the old cursor would have dropped comes; the 23:00 one comes
    // again (the store keeps it once); the 21:00 one is older than both the old cursor
    // and the look-back, so it was passed on back then.
    assert_eq!(ids(&f), [NEWS_A, NEWS_C]);
    let cursor = cursor_json(&f);
    assert!(
        cursor.get("at").is_none() && cursor.get("ids").is_none(),
        "{cursor}"
    );
    assert_eq!(cursor["seen"].as_object().map(|s| s.len()), Some(3));

    let again = fetch("feed", &p, &c, f.cursor.as_deref()).await.unwrap();
    assert!(again.mentions.is_empty());
}

#[tokio::test]
async fn feed_youtube_and_reddit_shapes() {
    let srv = Server::start().await;
    srv.on("/feeds/videos.xml", Reply::fixture("feed/youtube.xml"));
    srv.on("/search.rss", Reply::fixture("feed/reddit_search.xml"));
    let yt = fetch(
        "feed",
        &feed_params(&srv.url("/feeds/videos.xml?channel_id=UCx"), ""),
        &ctx(),
        None,
    )
    .await
    .unwrap();
    let v = by_id(&yt, "yt:video:dQw4w9WgXcQ");
    assert_eq!(v.title.as_deref(), Some("What's new in Example Notes 5.0"));
    assert_eq!(
        v.text,
        "Offline mode, widgets and a faster search. Timestamps:\n00:00 Intro\n01:12 Offline mode ✈️"
    );
    assert_eq!(
        v.url.as_deref(),
        Some("https://www.youtube.com/watch?v=dQw4w9WgXcQ")
    );
    assert_eq!(v.published_at, t("2026-11-01T15:00:07Z"));

    let mut c = ctx();
    c.keywords = vec!["example notes".into()];
    let rd = fetch(
        "feed",
        &feed_params(&srv.url("/search.rss?q=%22example+notes%22"), ""),
        &c,
        None,
    )
    .await
    .unwrap();
    assert_eq!(ids(&rd), ["t3_1gq7x2k", "t3_1gq5abc"]);
    let post = &rd.mentions[0];
    assert_eq!(post.author.as_deref(), Some("/u/quietbyte"));
    assert!(
        post.text.starts_with(
            "Has anyone moved from Notion to Example Notes? I'm worried about export 😬"
        ),
        "{}",
        post.text
    );
    assert_eq!(
        post.extra.as_ref().unwrap()["categories"][0],
        "productivity"
    );
    assert_eq!(
        srv.hits("/search.rss")[0].param("q").as_deref(),
        Some("\"example notes\"")
    );
}

#[tokio::test]
async fn feed_empty_broken_and_language_filter() {
    let srv = Server::start().await;
    srv.on("/empty.xml", Reply::fixture("feed/empty.xml"));
    srv.on("/broken.xml", Reply::fixture("feed/broken.xml"));
    srv.on("/de.xml", Reply::fixture("feed/german.xml"));
    let f = fetch(
        "feed",
        &feed_params(&srv.url("/empty.xml"), ""),
        &ctx(),
        None,
    )
    .await
    .unwrap();
    assert!(f.mentions.is_empty() && f.skipped == 0);

    let e = fetch(
        "feed",
        &feed_params(&srv.url("/broken.xml"), ""),
        &ctx(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Malformed);
    assert!(
        e.message.contains("not a readable RSS or Atom feed"),
        "{}",
        e.message
    );

    let mut c = ctx();
    c.languages = vec!["en".into()];
    let none = fetch("feed", &feed_params(&srv.url("/de.xml"), ""), &c, None)
        .await
        .unwrap();
    assert!(none.mentions.is_empty());
    c.languages = vec!["de".into()];
    let de = fetch("feed", &feed_params(&srv.url("/de.xml"), ""), &c, None)
        .await
        .unwrap();
    assert_eq!(de.mentions.len(), 1);
    // The feed parser lower-cases language tags.
    assert_eq!(de.mentions[0].language.as_deref(), Some("de-de"));
}

// ---------------------------------------------------------------- mastodon

const TAG_PATH: &str = "/api/v1/timelines/tag/ExampleNotes";

fn link(srv: &Server, rels: &[(&str, &str)]) -> String {
    rels.iter()
        .map(|(rel, q)| format!("<{}{TAG_PATH}?{q}>; rel=\"{rel}\"", srv.base))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mastodon_params(srv: &Server, extra: &str) -> toml::Table {
    params(&format!(
        "base_url = \"{}\"\ntag = \"#ExampleNotes\"\n{extra}",
        srv.base
    ))
}

fn query_has(path: &'static str, needle: &'static str) -> impl Fn(&Seen) -> bool + Send + Sync {
    move |s: &Seen| s.path == path && s.query.contains(needle)
}

#[tokio::test]
async fn mastodon_first_run_walks_older_through_link_next() {
    let srv = Server::start().await;
    srv.on_when(
        query_has(TAG_PATH, "max_id=113456600000000000"),
        Reply::fixture("mastodon/tag_page2.json").header(
            "link",
            &link(
                &srv,
                &[
                    ("next", "limit=3&max_id=113456300000000000"),
                    ("prev", "limit=3&min_id=113456500000000000"),
                ],
            ),
        ),
    );
    srv.on_when(
        query_has(TAG_PATH, "max_id=113456300000000000"),
        Reply::fixture("mastodon/tag_page3.json"),
    );
    srv.on(
        TAG_PATH,
        Reply::fixture("mastodon/tag_page1.json")
            .header("x-ratelimit-limit", "300")
            .header("x-ratelimit-remaining", "299")
            .header(
                "link",
                &link(
                    &srv,
                    &[
                        ("next", "limit=3&max_id=113456600000000000"),
                        ("prev", "limit=3&min_id=113456789012345678"),
                    ],
                ),
            ),
    );
    let f = fetch(
        "mastodon",
        &mastodon_params(&srv, "page_size = 3"),
        &ctx(),
        None,
    )
    .await
    .unwrap();

    assert_eq!(
        ids(&f),
        [
            "113456789012345678",
            "113456700000000000",
            "113456600000000000",
            "113456500000000000",
            "113456300000000000"
        ]
    );
    assert_eq!(f.skipped, 1, "the status without created_at");
    let m = by_id(&f, "113456789012345678");
    assert_eq!(
        m.text,
        "Tried #ExampleNotes today: offline mode works on the train 🚆 & sync caught up in seconds.\nOnly gripe: no dark mode."
    );
    assert_eq!(m.author.as_deref(), Some("ana@fosstodon.org"));
    assert_eq!(
        m.url.as_deref(),
        Some("https://fosstodon.org/@ana/113456789012345678")
    );
    assert_eq!(m.language.as_deref(), Some("en"));
    assert_eq!(
        (
            m.engagement.likes,
            m.engagement.replies,
            m.engagement.reposts
        ),
        (19, 2, 5)
    );
    assert_eq!(m.published_at, t("2026-11-03T10:21:09Z"));
    assert_eq!(
        by_id(&f, "113456600000000000").title.as_deref(),
        Some("pricing rant")
    );
    assert!(by_id(&f, "113456500000000000")
        .text
        .starts_with("Anyone know if @examplenotes has an API?"));
    assert_eq!(cursor_json(&f)["newest_id"], "113456789012345678");

    let seen = srv.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].param("limit").as_deref(), Some("3"));
    assert_eq!(seen[0].param("min_id"), None);
    assert_eq!(
        seen[1].param("max_id").as_deref(),
        Some("113456600000000000")
    );
}

#[tokio::test]
async fn mastodon_second_run_walks_newer_from_min_id() {
    let srv = Server::start().await;
    srv.on_when(
        query_has(TAG_PATH, "min_id=113456789012345678"),
        Reply::fixture("mastodon/tag_newer_a.json").header(
            "link",
            &link(
                &srv,
                &[
                    ("next", "limit=2&max_id=113456800000000000"),
                    ("prev", "limit=2&min_id=113456900000000000"),
                ],
            ),
        ),
    );
    srv.on_when(
        query_has(TAG_PATH, "min_id=113456900000000000"),
        Reply::fixture("mastodon/tag_newer_b.json"),
    );
    let cursor = r#"{"newest_id":"113456789012345678"}"#;
    let f = fetch(
        "mastodon",
        &mastodon_params(&srv, "page_size = 2"),
        &ctx(),
        Some(cursor),
    )
    .await
    .unwrap();
    assert_eq!(
        ids(&f),
        [
            "113456900000000000",
            "113456800000000000",
            "113457000000000000"
        ]
    );
    assert_eq!(
        by_id(&f, "113456800000000000").text,
        "#ExampleNotes の新しいテーマ、いいね！"
    );
    assert_eq!(cursor_json(&f)["newest_id"], "113457000000000000");
    assert_eq!(srv.seen().len(), 2, "the short second page is the last");

    // Nothing newer: an empty page keeps the cursor where it was.
    let quiet = Server::start().await;
    quiet.on(TAG_PATH, Reply::fixture("mastodon/tag_page3.json"));
    let f = fetch(
        "mastodon",
        &mastodon_params(&quiet, ""),
        &ctx(),
        Some(cursor),
    )
    .await
    .unwrap();
    assert!(f.mentions.is_empty());
    assert_eq!(cursor_json(&f)["newest_id"], "113456789012345678");
}

#[tokio::test]
async fn mastodon_cursor_moves_past_a_newest_status_without_text() {
    let srv = Server::start().await;
    // Newest first, as the API answers: a captionless photo from Pixelfed, then a post.
    srv.on_when(
        query_has(TAG_PATH, "min_id=113457000000000000"),
        Reply::fixture("mastodon/tag_newer_media.json"),
    );
    // Asked from the post, the instance would list the photo again.
    let both: Vec<Value> =
        serde_json::from_slice(&fixture("mastodon/tag_newer_media.json")).unwrap();
    srv.on_when(
        query_has(TAG_PATH, "min_id=113457050000000000"),
        Reply::ok(serde_json::to_vec(&both[..1]).unwrap()),
    );
    srv.on_when(
        query_has(TAG_PATH, "min_id=113457100000000000"),
        Reply::ok("[]"),
    );
    let p = mastodon_params(&srv, "");
    let f = fetch(
        "mastodon",
        &p,
        &ctx(),
        Some(r#"{"newest_id":"113457000000000000"}"#),
    )
    .await
    .unwrap();
    assert_eq!(ids(&f), ["113457050000000000"]);
    assert_eq!(f.skipped, 1, "{:?}", f.note);
    assert_eq!(cursor_json(&f)["newest_id"], "113457100000000000");

    let next = fetch("mastodon", &p, &ctx(), f.cursor.as_deref())
        .await
        .unwrap();
    assert!(next.mentions.is_empty());
    assert_eq!(
        (next.skipped, next.note.as_deref()),
        (0, None),
        "the photo is not read and counted again"
    );
}

#[tokio::test]
async fn mastodon_stops_paging_when_the_rate_limit_is_spent() {
    let srv = Server::start().await;
    // The older pages, asked for only by the runs after the first.
    srv.on_when(
        query_has(TAG_PATH, "max_id=113456600000000000"),
        Reply::fixture("mastodon/tag_page2.json").header(
            "link",
            &link(&srv, &[("next", "limit=3&max_id=113456300000000000")]),
        ),
    );
    srv.on_when(
        query_has(TAG_PATH, "max_id=113456300000000000"),
        Reply::fixture("mastodon/tag_page3.json"),
    );
    // The limit resets in ten minutes.
    let reset = (chrono::Utc::now() + chrono::Duration::minutes(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    srv.on(
        TAG_PATH,
        Reply::fixture("mastodon/tag_page1.json")
            .header("x-ratelimit-limit", "300")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", &reset)
            .header(
                "link",
                &link(&srv, &[("next", "limit=3&max_id=113456600000000000")]),
            ),
    );
    let mut c = ctx();
    c.languages = vec!["en".into()];
    let f = fetch(
        "mastodon",
        &mastodon_params(&srv, "page_size = 3"),
        &c,
        None,
    )
    .await
    .unwrap();
    assert_eq!(srv.seen().len(), 1, "no request after Remaining: 0");
    assert_eq!(
        ids(&f),
        ["113456789012345678", "113456600000000000"],
        "the German status is filtered"
    );
    let note = f.note.clone().unwrap();
    assert!(
        note.contains("rate limit reached after page 1") && note.contains(&reset),
        "{note}"
    );
    // The source's next run waits for the reset.
    let wait = f.retry_after.expect("the wait until the reset").as_secs();
    assert!((590..=600).contains(&wait), "{wait}");
    // The first run walks back from the newest status: the cursor keeps the gap below
    // the oldest status read, and the next runs read it before anything newer.
    assert!(note.contains("the next run goes on"), "{note}");
    assert_eq!(f.partial, None, "nothing failed; the rest comes next run");
    let cursor = cursor_json(&f);
    assert_eq!(cursor["newest_id"], "113456789012345678");
    assert_eq!(cursor["gap"]["resume"], "113456600000000000");

    // Read one page a run: the page limit cuts the gap again, lower down, until it is read.
    let p = mastodon_params(&srv, "page_size = 3\nmax_pages = 1");
    let second = fetch("mastodon", &p, &c, f.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&second), ["113456500000000000", "113456300000000000"]);
    assert!(
        second.note.as_deref().unwrap().contains("max_pages = 1"),
        "{:?}",
        second.note
    );
    let cursor = cursor_json(&second);
    assert_eq!(cursor["newest_id"], "113456789012345678");
    assert_eq!(cursor["gap"]["resume"], "113456300000000000");
    let third = fetch("mastodon", &p, &c, second.cursor.as_deref())
        .await
        .unwrap();
    assert!(third.mentions.is_empty());
    assert_eq!(
        cursor_json(&third),
        serde_json::json!({"newest_id": "113456789012345678"})
    );
    assert_eq!(srv.seen().len(), 3);
}

#[tokio::test]
async fn mastodon_first_run_cut_by_a_429_reads_the_rest_of_the_look_back_next() {
    let srv = Server::start().await;
    // Page 2 of the walk back answers 429 with a wait too long to sit out, then (next
    // run) the page itself.
    srv.on_when(
        query_has(TAG_PATH, "max_id=113456600000000000"),
        Reply::status(429, fixture("mastodon/rate_limited.json")).header("retry-after", "300"),
    );
    srv.then(Reply::fixture("mastodon/tag_page2.json").header(
        "link",
        &link(&srv, &[("next", "limit=3&max_id=113456300000000000")]),
    ));
    srv.on_when(
        query_has(TAG_PATH, "max_id=113456300000000000"),
        Reply::fixture("mastodon/tag_page3.json"),
    );
    srv.on_when(
        query_has(TAG_PATH, "min_id=113456789012345678"),
        Reply::fixture("mastodon/tag_newer_b.json").header(
            "link",
            &link(&srv, &[("prev", "limit=1&min_id=113457000000000000")]),
        ),
    );
    srv.on_when(
        query_has(TAG_PATH, "min_id=113457000000000000"),
        Reply::status(429, fixture("mastodon/rate_limited.json")).header("retry-after", "300"),
    );
    srv.on(
        TAG_PATH,
        Reply::fixture("mastodon/tag_page1.json").header(
            "link",
            &link(&srv, &[("next", "limit=3&max_id=113456600000000000")]),
        ),
    );
    let p = mastodon_params(&srv, "page_size = 3");

    let first = fetch("mastodon", &p, &ctx(), None).await.unwrap();
    assert_eq!(
        ids(&first),
        [
            "113456789012345678",
            "113456700000000000",
            "113456600000000000"
        ],
        "page 1 is kept"
    );
    assert_eq!(first.partial, Some(FetchErrorKind::RateLimited));
    assert_eq!(
        first.retry_after,
        Some(Duration::from_secs(300)),
        "the 429's Retry-After goes to the scheduler"
    );
    let note = first.note.clone().unwrap();
    assert!(
        note.contains("page 2") && note.contains("next run"),
        "{note}"
    );
    let cursor = cursor_json(&first);
    assert_eq!(cursor["newest_id"], "113456789012345678");
    assert_eq!(cursor["gap"]["resume"], "113456600000000000");

    // The next run reads what the first one missed, older than the oldest status read,
    // before anything newer.
    let second = fetch("mastodon", &p, &ctx(), first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&second), ["113456500000000000", "113456300000000000"]);
    assert_eq!(second.partial, None);
    assert_eq!(
        cursor_json(&second),
        serde_json::json!({"newest_id": "113456789012345678"}),
        "the gap is read; the newest status read stays the cursor"
    );

    // Forward, one status a page, a 429 on page 2 keeps page 1 too.
    let p = mastodon_params(&srv, "page_size = 1");
    let third = fetch("mastodon", &p, &ctx(), second.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&third), ["113457000000000000"]);
    assert_eq!(third.partial, Some(FetchErrorKind::RateLimited));
    assert_eq!(
        cursor_json(&third),
        serde_json::json!({"newest_id": "113457000000000000"}),
        "forward, the newest status read is where the next run goes on"
    );
    let asked: Vec<(Option<String>, Option<String>)> = srv
        .hits(TAG_PATH)
        .iter()
        .map(|s| (s.param("max_id"), s.param("min_id")))
        .collect();
    let id = |s: &str| Some(s.to_string());
    assert_eq!(
        asked,
        [
            (None, None),
            (id("113456600000000000"), None),
            (id("113456600000000000"), None),
            (id("113456300000000000"), None),
            (None, id("113456789012345678")),
            (None, id("113457000000000000")),
        ]
    );
}

#[tokio::test]
async fn mastodon_tag_from_keywords_429_and_no_tag() {
    let srv = Server::start().await;
    srv.on(
        TAG_PATH,
        Reply::status(429, fixture("mastodon/rate_limited.json")).header("retry-after", "300"),
    );
    let p = params(&format!("base_url = \"{}\"", srv.base));
    let mut c = ctx();
    c.keywords = vec!["Example Notes".into()];
    let e = fetch("mastodon", &p, &c, None).await.unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::RateLimited);
    assert_eq!(srv.hits(TAG_PATH).len(), 1, "the tag came from the keyword");

    let e = fetch("mastodon", &p, &ctx(), None).await.unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Config);
    assert!(e.message.contains("needs `tag`"));
}

// ---------------------------------------------------------------- bluesky

const CREATE: &str = "/xrpc/com.atproto.server.createSession";
const REFRESH: &str = "/xrpc/com.atproto.server.refreshSession";
const SEARCH: &str = "/xrpc/app.bsky.feed.searchPosts";

fn bearer(path: &'static str, token: &'static str) -> impl Fn(&Seen) -> bool + Send + Sync {
    move |s: &Seen| s.path == path && s.header("authorization") == Some(&format!("Bearer {token}"))
}

fn bluesky_params(srv: &Server, env: &str) -> toml::Table {
    std::env::set_var(env, "app-pass-1234-abcd");
    params(&format!(
        "base_url = \"{}\"\nhandle = \"@zmot-watcher.bsky.social\"\npassword_env = \"{env}\"\nq = \"Example Notes\"",
        srv.base
    ))
}

#[tokio::test]
async fn bluesky_signs_in_once_pages_and_then_brings_only_new_posts() {
    let srv = Server::start().await;
    srv.on(CREATE, Reply::fixture("bluesky/create_session.json"));
    srv.on_when(
        query_has(SEARCH, "cursor=3"),
        Reply::fixture("bluesky/search_page2.json"),
    );
    srv.on(SEARCH, Reply::fixture("bluesky/search_page1.json"));
    srv.then(Reply::fixture("bluesky/search_later.json"));
    let p = bluesky_params(&srv, "ZMOT_TEST_BSKY_PW_1");

    let first = fetch("bluesky", &p, &ctx(), None).await.unwrap();
    assert_eq!(
        ids(&first),
        [
            "at://did:plc:jane0000000000000000000/app.bsky.feed.post/3lb2xyzabc22a",
            "at://did:plc:kai00000000000000000000/app.bsky.feed.post/3lb2xyzabc11b",
            "at://did:plc:mia00000000000000000000/app.bsky.feed.post/3lb2xyzaaa99d"
        ]
    );
    assert_eq!(first.skipped, 1, "the post without text");
    let m = &first.mentions[0];
    assert_eq!(
        m.url.as_deref(),
        Some("https://bsky.app/profile/jane.bsky.social/post/3lb2xyzabc22a")
    );
    assert_eq!(m.author.as_deref(), Some("jane.bsky.social"));
    assert_eq!(
        m.text,
        "Example Notes just ate my grocery list again 🙃 anyone else?"
    );
    assert_eq!(
        (
            m.engagement.likes,
            m.engagement.replies,
            m.engagement.reposts
        ),
        (7, 3, 2)
    );
    assert_eq!(m.language.as_deref(), Some("en"));
    assert_eq!(m.published_at, t("2026-11-03T09:12:44.120Z"));
    assert_eq!(m.extra.as_ref().unwrap()["author_name"], "Jane 🌿");

    let second = fetch("bluesky", &p, &ctx(), first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        ids(&second),
        ["at://did:plc:ned00000000000000000000/app.bsky.feed.post/3lb3newpost1e"]
    );

    let creates = srv.hits(CREATE);
    assert_eq!(creates.len(), 1, "one sign-in for both fetches");
    let body: Value = serde_json::from_str(&creates[0].body).unwrap();
    assert_eq!(body["identifier"], "zmot-watcher.bsky.social");
    assert_eq!(body["password"], "app-pass-1234-abcd");
    let searches = srv.hits(SEARCH);
    assert_eq!(searches.len(), 3);
    assert!(searches
        .iter()
        .all(|s| s.header("authorization") == Some("Bearer access-1")));
    assert_eq!(searches[0].param("q").as_deref(), Some("Example Notes"));
    assert_eq!(searches[0].param("sort").as_deref(), Some("latest"));
    assert_eq!(
        searches[0].param("since").as_deref(),
        Some("2026-01-01T00:00:00.000Z")
    );
    assert_eq!(
        searches[2].param("since").as_deref(),
        Some("2026-11-03T09:12:45.301Z"),
        "the watermark"
    );
}

#[tokio::test]
async fn bluesky_page_limit_reads_the_rest_until_the_oldest_post_read_next_run() {
    let srv = Server::start().await;
    srv.on(CREATE, Reply::fixture("bluesky/create_session.json"));
    srv.on_when(
        query_has(SEARCH, "until="),
        Reply::fixture("bluesky/search_page2.json"),
    );
    srv.on(SEARCH, Reply::fixture("bluesky/search_page1.json"));
    let mut p = bluesky_params(&srv, "ZMOT_TEST_BSKY_PW_4");
    p.insert("max_pages".into(), 1.into());

    let first = fetch("bluesky", &p, &ctx(), None).await.unwrap();
    assert_eq!(first.mentions.len(), 2);
    assert!(first.note.as_deref().unwrap().contains("max_pages = 1"));
    let second = fetch("bluesky", &p, &ctx(), first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        ids(&second),
        ["at://did:plc:mia00000000000000000000/app.bsky.feed.post/3lb2xyzaaa99d"]
    );
    let searches = srv.hits(SEARCH);
    assert_eq!(
        searches[1].param("until").as_deref(),
        Some("2026-11-02T20:00:00.501Z"),
        "just after the oldest post read (the one without text, skipped, counts)"
    );
    assert_eq!(
        searches[1].param("since").as_deref(),
        Some("2026-01-01T00:00:00.000Z"),
        "the first run's look-back is still the lower end"
    );
    assert_eq!(cursor_json(&second)["at"], "2026-11-03T09:12:45.301Z");
    assert_eq!(cursor_json(&second).get("gap"), None);
}

/// A fake `searchPosts` over a fixture of posts sorted newest first (such as
/// `bluesky/busy_day.json`): the posts whose text holds `q` (any case), indexed at or
/// after `since` and before `until`, paged by `limit` with the offset as the cursor, like
/// the real one.
fn fake_bluesky_search(srv: &Server, posts_fixture: &str) {
    let all: Value = serde_json::from_slice(&fixture(posts_fixture)).unwrap();
    srv.on_request(SEARCH, move |s| {
        let q = s.param("q").unwrap().to_lowercase();
        let since = s.param("since").map(|v| t(&v));
        let until = s.param("until").map(|v| t(&v));
        let posts: Vec<&Value> = all["posts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                let at = t(p["indexedAt"].as_str().unwrap());
                let text = p["record"]["text"].as_str().unwrap().to_lowercase();
                text.contains(&q)
                    && since.is_none_or(|since| at >= since)
                    && until.is_none_or(|until| at < until)
            })
            .collect();
        let limit: usize = s.param("limit").unwrap().parse().unwrap();
        let offset: usize = s.param("cursor").map_or(0, |c| c.parse().unwrap());
        let on_page: Vec<&Value> = posts.iter().skip(offset).take(limit).copied().collect();
        let mut body = serde_json::json!({ "posts": on_page });
        if offset + limit < posts.len() {
            body["cursor"] = (offset + limit).to_string().into();
        }
        Reply::ok(serde_json::to_vec(&body).unwrap())
    });
}

#[tokio::test]
async fn bluesky_busy_keyword_cut_by_the_page_limit_is_read_though_a_quiet_one_reads_further_back()
{
    let srv = Server::start().await;
    srv.on(CREATE, Reply::fixture("bluesky/create_session.json"));
    // "Example Notes" matches all six posts, five of them on 4 November; "Obsidian"
    // only the oldest, of 2 November, far below what the busy keyword reads.
    fake_bluesky_search(&srv, "bluesky/busy_day.json");
    let mut p = bluesky_params(&srv, "ZMOT_TEST_BSKY_PW_5");
    p.remove("q");
    p.insert("page_size".into(), 2.into());
    p.insert("max_pages".into(), 1.into());
    let mut c = ctx();
    c.keywords = vec!["Example Notes".into(), "Obsidian".into()];

    let mut fetched = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut runs = 0;
    loop {
        let f = fetch("bluesky", &p, &c, cursor.as_deref()).await.unwrap();
        fetched.extend(ids(&f).into_iter().map(str::to_string));
        cursor = f.cursor;
        runs += 1;
        if !cursor.as_deref().unwrap().contains("gap") || runs == 10 {
            break;
        }
    }
    assert_eq!(
        fetched.len(),
        6,
        "every post of the busy keyword, over {runs} runs: {fetched:?}"
    );
    let first_until = srv.hits(SEARCH).iter().find_map(|s| s.param("until"));
    assert_eq!(
        first_until.as_deref(),
        Some("2026-11-04T16:00:00.201Z"),
        "the gap reaches down to the oldest post the cut query read, not the quiet one's"
    );
    assert_eq!(
        serde_json::from_str::<Value>(cursor.as_deref().unwrap()).unwrap()["at"],
        "2026-11-04T18:00:00.100Z"
    );
    let quiet_searches = |srv: &Server| -> Vec<Seen> {
        srv.hits(SEARCH)
            .into_iter()
            .filter(|s| s.param("q").as_deref() == Some("Obsidian"))
            .collect()
    };
    assert_eq!(
        quiet_searches(&srv).len(),
        1,
        "the quiet keyword read down to the watermark in the first run; the runs reading \
         the busy one's gap do not search it again"
    );
    // Once the gap is read, every keyword searches above the new watermark again.
    fetch("bluesky", &p, &c, cursor.as_deref()).await.unwrap();
    let quiet = quiet_searches(&srv);
    assert_eq!(quiet.len(), 2);
    assert_eq!(
        (quiet[1].param("since").as_deref(), quiet[1].param("until")),
        (Some("2026-11-04T18:00:00.100Z"), None)
    );
}

#[tokio::test]
async fn bluesky_a_keyword_added_later_reads_its_own_look_back_once() {
    let srv = Server::start().await;
    srv.on(CREATE, Reply::fixture("bluesky/create_session.json"));
    // "Example Notes" has two posts on 4 November; "Inkpad", added after the first run,
    // three from 1 to 3 November (within the week's look-back) and one of 20 October.
    fake_bluesky_search(&srv, "bluesky/added_keyword.json");
    let mut p = bluesky_params(&srv, "ZMOT_TEST_BSKY_PW_7");
    p.remove("q");
    p.insert("page_size".into(), 2.into());
    p.insert("max_pages".into(), 1.into());
    let mut c = ctx();
    c.first_run_since = t("2026-10-29T00:00:00Z");
    c.keywords = vec!["Example Notes".into()];

    let first = fetch("bluesky", &p, &c, None).await.unwrap();
    assert_eq!(first.mentions.len(), 2);
    assert_eq!(cursor_json(&first)["at"], "2026-11-04T18:00:00.100Z");
    let searched_before = srv.hits(SEARCH).len();

    c.keywords.push("Inkpad".into());
    let mut cursor = first.cursor;
    let mut fetched = Vec::new();
    let mut runs = 0;
    loop {
        let f = fetch("bluesky", &p, &c, cursor.as_deref()).await.unwrap();
        fetched.extend(ids(&f).into_iter().map(str::to_string));
        cursor = f.cursor;
        runs += 1;
        let json: Value = serde_json::from_str(cursor.as_deref().unwrap()).unwrap();
        if json.get("added").is_none() || runs == 10 {
            break;
        }
    }
    assert!(runs < 10, "the added keyword never joined the others");
    let mut sorted = fetched.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "at://did:plc:rui000000000000000000000/app.bsky.feed.post/3lb3added0003",
            "at://did:plc:sam000000000000000000000/app.bsky.feed.post/3lb2added0002",
            "at://did:plc:tove00000000000000000000/app.bsky.feed.post/3lb1added0001",
        ],
        "the new keyword's posts within the look-back, each once, over {runs} runs"
    );
    for s in &srv.hits(SEARCH)[searched_before..] {
        let since = s.param("since").unwrap();
        if s.param("q").as_deref() == Some("Example Notes") {
            assert_eq!(
                (since.as_str(), s.param("until")),
                ("2026-11-04T18:00:00.100Z", None),
                "the keyword searched before is not searched further back"
            );
        } else {
            assert!(t(&since) >= c.first_run_since, "{since}");
        }
    }
    let inkpad = srv
        .hits(SEARCH)
        .into_iter()
        .find(|s| s.param("q").as_deref() == Some("Inkpad"))
        .unwrap();
    assert_eq!(
        inkpad.param("since").as_deref(),
        Some("2026-10-29T00:00:00.000Z"),
        "the new keyword's first walk reaches down to the look-back"
    );
    let last: Value = serde_json::from_str(cursor.as_deref().unwrap()).unwrap();
    assert_eq!(last["at"], "2026-11-04T18:00:00.100Z");
    assert_eq!(
        last["queries"],
        serde_json::json!(["Example Notes", "Inkpad"])
    );
    assert_eq!(last.get("gap"), None);
}

#[tokio::test]
async fn bluesky_a_cut_page_of_unreadable_posts_still_moves_the_gap_on() {
    let srv = Server::start().await;
    srv.on(CREATE, Reply::fixture("bluesky/create_session.json"));
    // The busy day under two newer posts without an author (skipped as malformed): with
    // two posts a page and one page a run, the first page holds nothing but them.
    fake_bluesky_search(&srv, "bluesky/busy_day_unreadable.json");
    let mut p = bluesky_params(&srv, "ZMOT_TEST_BSKY_PW_6");
    p.insert("page_size".into(), 2.into());
    p.insert("max_pages".into(), 1.into());

    let mut fetched = Vec::new();
    let mut skipped = 0;
    let mut cursor: Option<String> = None;
    let mut runs = 0;
    while runs < 10 {
        let f = fetch("bluesky", &p, &ctx(), cursor.as_deref())
            .await
            .unwrap();
        fetched.extend(ids(&f).into_iter().map(str::to_string));
        skipped += f.skipped;
        cursor = f.cursor;
        runs += 1;
        if !cursor.as_deref().unwrap().contains("gap") {
            break;
        }
    }
    assert!(runs < 10, "the gap never closed");
    fetched.sort();
    assert_eq!(
        fetched.len(),
        6,
        "every readable post, over {runs} runs: {fetched:?}"
    );
    assert_eq!(
        skipped, 2,
        "each unreadable post counted once, not once a run"
    );
    assert_eq!(
        serde_json::from_str::<Value>(cursor.as_deref().unwrap()).unwrap()["at"],
        "2026-11-04T19:30:00.700Z",
        "the newest post read, readable or not, is the watermark"
    );
    let first_until = srv.hits(SEARCH).iter().find_map(|s| s.param("until"));
    assert_eq!(
        first_until.as_deref(),
        Some("2026-11-04T19:00:00.601Z"),
        "the gap reaches down to the oldest unreadable post on the cut page"
    );
}

#[tokio::test]
async fn bluesky_refreshes_an_expired_token_and_signs_in_again_only_when_refresh_fails() {
    let srv = Server::start().await;
    srv.on(CREATE, Reply::fixture("bluesky/create_session.json"));
    srv.then(Reply::ok(r#"{"did":"did:plc:zmotwatcher000000000000","handle":"zmot-watcher.bsky.social","accessJwt":"access-3","refreshJwt":"refresh-3"}"#));
    srv.on_when(
        bearer(REFRESH, "refresh-1"),
        Reply::fixture("bluesky/refresh_session.json"),
    );
    srv.on(REFRESH, Reply::status(400, fixture("bluesky/expired.json")));
    srv.on_when(
        bearer(SEARCH, "access-1"),
        Reply::status(400, fixture("bluesky/expired.json")),
    );
    srv.on_when(
        bearer(SEARCH, "access-2"),
        Reply::fixture("bluesky/search_page2.json"),
    );
    srv.then(Reply::status(400, fixture("bluesky/expired.json")));
    srv.on_when(
        bearer(SEARCH, "access-3"),
        Reply::fixture("bluesky/search_page2.json"),
    );
    let p = bluesky_params(&srv, "ZMOT_TEST_BSKY_PW_2");

    let f = fetch("bluesky", &p, &ctx(), None).await.unwrap();
    assert_eq!(f.mentions.len(), 1);
    assert_eq!(srv.hits(CREATE).len(), 1);
    let refreshes = srv.hits(REFRESH);
    assert_eq!(refreshes.len(), 1);
    assert_eq!(
        refreshes[0].header("authorization"),
        Some("Bearer refresh-1")
    );

    // access-2 expires too and refresh-2 is refused: only then sign in again.
    let f = fetch("bluesky", &p, &ctx(), None).await.unwrap();
    assert_eq!(f.mentions.len(), 1);
    assert_eq!(srv.hits(REFRESH).len(), 2);
    assert_eq!(srv.hits(CREATE).len(), 2);
    let tokens: Vec<String> = srv
        .hits(SEARCH)
        .iter()
        .map(|s| s.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(
        tokens,
        [
            "Bearer access-1",
            "Bearer access-2",
            "Bearer access-2",
            "Bearer access-3"
        ]
    );
}

#[tokio::test]
async fn bluesky_credentials_problems_are_config_errors() {
    let srv = Server::start().await;
    srv.on(
        CREATE,
        Reply::status(401, fixture("bluesky/bad_password.json")),
    );
    let p = bluesky_params(&srv, "ZMOT_TEST_BSKY_PW_3");
    let e = fetch("bluesky", &p, &ctx(), None).await.unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Config);
    assert!(
        e.message.contains("AuthenticationRequired") && e.message.contains("ZMOT_TEST_BSKY_PW_3"),
        "{}",
        e.message
    );
    assert!(
        !e.message.contains("app-pass-1234"),
        "the password never appears in errors"
    );

    let missing = params(&format!(
        "base_url = \"{}\"\nhandle = \"x.bsky.social\"\npassword_env = \"ZMOT_TEST_BSKY_UNSET\"\nq = \"x\"",
        srv.base
    ));
    let e = fetch("bluesky", &missing, &ctx(), None).await.unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Config);
    assert!(e.message.contains("ZMOT_TEST_BSKY_UNSET"), "{}", e.message);
    assert_eq!(srv.hits(CREATE).len(), 1, "no sign-in without a password");
}

// ---------------------------------------------------------------- hackernews

const HN_PATH: &str = "/api/v1/search_by_date";

fn hn_params(srv: &Server, extra: &str) -> toml::Table {
    params(&format!(
        "base_url = \"{}/api/v1\"\npage_size = 3\n{extra}",
        srv.base
    ))
}

#[tokio::test]
async fn hackernews_pages_stories_and_comments_then_only_new() {
    let srv = Server::start().await;
    srv.on_when(
        query_has(HN_PATH, "page=1"),
        Reply::fixture("hackernews/page1.json"),
    );
    srv.on_when(
        query_has(HN_PATH, "created_at_i%3E%3D1793714711"),
        Reply::fixture("hackernews/later.json"),
    );
    srv.on(HN_PATH, Reply::fixture("hackernews/page0.json"));
    let p = hn_params(&srv, "query = \"example notes\"");
    let f = fetch("hackernews", &p, &ctx(), None).await.unwrap();

    assert_eq!(ids(&f), ["41234999", "41234567", "41200000"]);
    assert_eq!(
        f.skipped, 2,
        "a comment without text and a hit without created_at_i"
    );
    let c = by_id(&f, "41234999");
    assert_eq!(
        c.text,
        "I've used Example Notes for a year.\nThe sync is great, the search less so. Export to Markdown works."
    );
    assert_eq!(c.title, None);
    assert_eq!(
        c.url.as_deref(),
        Some("https://news.ycombinator.com/item?id=41234999")
    );
    assert_eq!(c.author.as_deref(), Some("pg_fan"));
    assert_eq!(c.published_at, t("2026-11-03T14:05:11Z"));
    assert_eq!(
        c.extra.as_ref().unwrap()["story_title"],
        "Show HN: Example Notes 5.0 – offline-first notes"
    );
    let s = by_id(&f, "41234567");
    assert_eq!(
        s.title.as_deref(),
        Some("Show HN: Example Notes 5.0 – offline-first notes")
    );
    assert_eq!((s.engagement.likes, s.engagement.replies), (118, 42));
    assert_eq!(
        s.extra.as_ref().unwrap()["link"],
        "https://examplenotes.app/blog/5-0"
    );
    assert_eq!(
        by_id(&f, "41200000").text,
        "Evernote, Obsidian, Example Notes/whatever? Curious what HN uses in 2026 🤔"
    );

    let seen = srv.seen();
    assert_eq!(seen.len(), 2, "nbPages = 2");
    assert_eq!(seen[0].param("query").as_deref(), Some("example notes"));
    assert_eq!(seen[0].param("tags").as_deref(), Some("(story,comment)"));
    assert_eq!(
        seen[0].param("numericFilters").as_deref(),
        Some("created_at_i>=1767225600")
    );
    assert_eq!(seen[0].param("hitsPerPage").as_deref(), Some("3"));
    assert_eq!(cursor_json(&f)["ids"], serde_json::json!(["41234999"]));

    let second = fetch("hackernews", &p, &ctx(), f.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        ids(&second),
        ["41240000", "41239999"],
        "the same-second comment is new, the known one is not"
    );
    assert_eq!(
        srv.seen()[2].param("numericFilters").as_deref(),
        Some("created_at_i>=1793714711")
    );
    assert_eq!(cursor_json(&second)["at"], "2026-11-03T15:28:31Z");
}

/// A fake Algolia `search_by_date` over a fixture of hits sorted newest first (such as
/// `hackernews/busy_day.json`): the hits created by `clock` whose title, text or story
/// title holds the `query` (any case), filtered by `numericFilters` (`>=` and `<=` on
/// `created_at_i`) and paged newest first like the real one.
fn fake_algolia(srv: &Server, clock: Arc<AtomicI64>, hits_fixture: &str) {
    let all: Value = serde_json::from_slice(&fixture(hits_fixture)).unwrap();
    srv.on_request(HN_PATH, move |s| {
        let filters = s.param("numericFilters").unwrap_or_default();
        let query = s.param("query").unwrap_or_default().to_lowercase();
        let now = clock.load(Ordering::SeqCst);
        let hits: Vec<&Value> = all["hits"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| {
                let at = h["created_at_i"].as_i64().unwrap();
                let text = ["title", "comment_text", "story_title"]
                    .iter()
                    .filter_map(|k| h[*k].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase();
                at <= now
                    && text.contains(&query)
                    && filters.split(',').all(|f| {
                        if let Some(v) = f.strip_prefix("created_at_i>=") {
                            at >= v.parse::<i64>().unwrap()
                        } else if let Some(v) = f.strip_prefix("created_at_i<=") {
                            at <= v.parse::<i64>().unwrap()
                        } else {
                            panic!("unexpected filter {f}")
                        }
                    })
            })
            .collect();
        let per_page: usize = s.param("hitsPerPage").unwrap().parse().unwrap();
        let page: usize = s.param("page").unwrap().parse().unwrap();
        let on_page: Vec<&Value> = hits
            .iter()
            .skip(page * per_page)
            .take(per_page)
            .copied()
            .collect();
        Reply::ok(
            serde_json::to_vec(&serde_json::json!({
                "hits": on_page,
                "nbHits": hits.len(),
                "page": page,
                "nbPages": hits.len().div_ceil(per_page),
                "hitsPerPage": per_page,
            }))
            .unwrap(),
        )
    });
}

#[tokio::test]
async fn hackernews_busy_day_beyond_the_page_limit_is_read_over_several_runs() {
    let srv = Server::start().await;
    // Two hits on 2 November, then five on 4 November (an outage day).
    let clock = Arc::new(AtomicI64::new(t("2026-11-03T00:00:00Z").timestamp()));
    fake_algolia(&srv, clock.clone(), "hackernews/busy_day.json");
    let text = format!(
        r#"
[http]
first_run_lookback_days = 3650

[[watch]]
name = "Example Notes"

  [[watch.source]]
  name = "hn"
  kind = "hackernews"
  params = {{ base_url = "{}/api/v1", query = "example notes", page_size = 2, max_pages = 1, min_interval_ms = 0 }}
"#,
        srv.base
    );
    let db = testutil::sqlite().await.unwrap();
    let pipeline = pipeline_for(&text, &db).await;
    let hn = source_named(&db, "hn").await;

    let first = pipeline.fetch_source(&hn).await.unwrap();
    assert_eq!(first.result.unwrap().new, 2);
    let cursor = db
        .store
        .source(hn.id)
        .await
        .unwrap()
        .unwrap()
        .cursor
        .unwrap();
    assert!(
        !cursor.contains("gap"),
        "a complete walk saves a bare watermark: {cursor}"
    );

    clock.store(t("2026-11-05T00:00:00Z").timestamp(), Ordering::SeqCst);
    let mut news = Vec::new();
    for _ in 0..8 {
        let source = db.store.source(hn.id).await.unwrap().unwrap();
        let report = pipeline.fetch_source(&source).await.unwrap();
        news.push(report.result.unwrap().new);
        let cursor = db
            .store
            .source(hn.id)
            .await
            .unwrap()
            .unwrap()
            .cursor
            .unwrap();
        let run = &db.store.fetch_runs(hn.id, 1).await.unwrap()[0];
        assert_eq!(run.status, "ok", "nothing is lost, so no run is partial");
        if cursor.contains("gap") {
            let note = run.error.as_deref().unwrap_or_default();
            assert!(note.contains("max_pages = 1"), "{note}");
        } else {
            break;
        }
    }
    assert_eq!(
        news.iter().sum::<u64>(),
        5,
        "every newer hit, over several runs: {news:?}"
    );
    assert_eq!(news[0], 2, "the newest page first");
    assert_eq!(db.store.count_mentions(None).await.unwrap(), 7);
    let cursor = db
        .store
        .source(hn.id)
        .await
        .unwrap()
        .unwrap()
        .cursor
        .unwrap();
    let cursor: Value = serde_json::from_str(&cursor).unwrap();
    assert_eq!(
        cursor,
        serde_json::json!({"at": "2026-11-04T18:42:07Z", "ids": ["41262010"], "queries": ["example notes"]}),
        "once the gap is read, the newest hit is the watermark"
    );
    let gap_queries: Vec<String> = srv
        .hits(HN_PATH)
        .iter()
        .filter_map(|s| s.param("numericFilters"))
        .filter(|f| f.contains("<="))
        .collect();
    assert_eq!(
        gap_queries.first().map(String::as_str),
        Some("created_at_i>=1793653780,created_at_i<=1793812533"),
        "the gap: after the old watermark, up to the oldest hit read"
    );

    let source = db.store.source(hn.id).await.unwrap().unwrap();
    let report = pipeline.fetch_source(&source).await.unwrap();
    assert_eq!(report.result.unwrap().new, 0);
}

#[tokio::test]
async fn hackernews_busy_keyword_cut_by_the_page_limit_is_read_though_a_quiet_one_reads_further_back(
) {
    let srv = Server::start().await;
    // "example notes" matches all seven hits, five of them on 4 November; "obsidian"
    // only the Ask HN story of 2 November, far below what the busy keyword reads.
    let clock = Arc::new(AtomicI64::new(t("2026-11-05T00:00:00Z").timestamp()));
    fake_algolia(&srv, clock, "hackernews/busy_day.json");
    let text = format!(
        r#"
[http]
first_run_lookback_days = 3650

[[watch]]
name = "Example Notes"
keywords = ["example notes", "obsidian"]

  [[watch.source]]
  name = "hn"
  kind = "hackernews"
  params = {{ base_url = "{}/api/v1", page_size = 2, max_pages = 1, min_interval_ms = 0 }}
"#,
        srv.base
    );
    let db = testutil::sqlite().await.unwrap();
    let pipeline = pipeline_for(&text, &db).await;
    let hn = source_named(&db, "hn").await;

    let mut runs = 0;
    loop {
        let source = db.store.source(hn.id).await.unwrap().unwrap();
        pipeline
            .fetch_source(&source)
            .await
            .unwrap()
            .result
            .unwrap();
        runs += 1;
        let cursor = db.store.source(hn.id).await.unwrap().unwrap().cursor;
        if !cursor.unwrap_or_default().contains("gap") || runs == 10 {
            break;
        }
    }
    assert_eq!(
        db.store.count_mentions(None).await.unwrap(),
        7,
        "every hit of the busy keyword, over {runs} runs"
    );
    assert!(runs < 10, "the gap never closed");
    let first_gap = srv
        .hits(HN_PATH)
        .iter()
        .filter_map(|s| s.param("numericFilters"))
        .find(|f| f.contains("<="))
        .unwrap();
    assert!(
        first_gap.ends_with(",created_at_i<=1793812533"),
        "the gap reaches down to the oldest hit the cut query read, not the quiet one's: \
         {first_gap}"
    );
    let quiet_searches = |srv: &Server| -> Vec<String> {
        srv.hits(HN_PATH)
            .iter()
            .filter(|s| s.param("query").as_deref() == Some("obsidian"))
            .filter_map(|s| s.param("numericFilters"))
            .collect()
    };
    assert_eq!(
        quiet_searches(&srv).len(),
        1,
        "the quiet keyword read down to the watermark in the first run; the runs reading \
         the busy one's gap do not search it again"
    );
    // Once the gap is read, every keyword searches above the new watermark again.
    let source = db.store.source(hn.id).await.unwrap().unwrap();
    let report = pipeline.fetch_source(&source).await.unwrap();
    assert_eq!(report.result.unwrap().new, 0);
    assert_eq!(
        quiet_searches(&srv)[1..],
        ["created_at_i>=1793817727"],
        "above the newest hit read"
    );
}

#[tokio::test]
async fn hackernews_a_cut_page_of_unreadable_hits_still_moves_the_gap_on() {
    let srv = Server::start().await;
    // The busy day of 4 November under two newer comments without text (skipped as
    // malformed): with two hits a page and one page a run, the first page read after
    // the watermark holds nothing but them.
    let clock = Arc::new(AtomicI64::new(t("2026-11-05T00:00:00Z").timestamp()));
    fake_algolia(&srv, clock, "hackernews/busy_day_unreadable.json");
    let mut p = hn_params(&srv, "query = \"example notes\"\nmax_pages = 1");
    p.insert("page_size".into(), 2.into());
    let mut cursor = Some(r#"{"at":"2026-11-02T21:09:40Z","ids":["41248811"]}"#.to_string());
    let mut fetched = Vec::new();
    let mut skipped = 0;
    let mut runs = 0;
    while runs < 10 {
        let f = fetch("hackernews", &p, &ctx(), cursor.as_deref())
            .await
            .unwrap();
        fetched.extend(ids(&f).into_iter().map(str::to_string));
        skipped += f.skipped;
        cursor = f.cursor;
        runs += 1;
        if !cursor.as_deref().unwrap().contains("gap") {
            break;
        }
    }
    fetched.sort();
    assert_eq!(
        fetched,
        ["41260988", "41261203", "41261540", "41261877", "41262010"],
        "every readable hit of the busy day, each once, over {runs} runs"
    );
    assert!(runs < 10, "the gap never closed");
    assert_eq!(
        skipped, 2,
        "each unreadable hit counted once, not once a run"
    );
    assert_eq!(
        serde_json::from_str::<Value>(cursor.as_deref().unwrap()).unwrap(),
        serde_json::json!({"at": "2026-11-04T19:30:00Z", "ids": ["41262400"], "queries": ["example notes"]}),
        "the newest hit read, readable or not, is the watermark"
    );
    let first_gap = srv
        .hits(HN_PATH)
        .iter()
        .filter_map(|s| s.param("numericFilters"))
        .find(|f| f.contains("<="));
    assert_eq!(
        first_gap.as_deref(),
        Some("created_at_i>=1793653780,created_at_i<=1793819100"),
        "the gap reaches down to the oldest unreadable hit on the cut page"
    );
}

/// The lower end of a `numericFilters` value (`created_at_i>=N[,...]`).
fn hn_since(filters: &str) -> i64 {
    filters
        .split(',')
        .find_map(|f| f.strip_prefix("created_at_i>="))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn hackernews_a_keyword_added_later_reads_its_own_look_back_once() {
    let srv = Server::start().await;
    // "example notes" has two hits on 4 November by the first run and one more after;
    // "inkpad", added after the first run, has one new hit and four older ones: three
    // within the week's look-back (1 to 3 November), one of 20 October before it.
    let clock = Arc::new(AtomicI64::new(t("2026-11-04T19:00:00Z").timestamp()));
    fake_algolia(&srv, clock.clone(), "hackernews/added_keyword.json");
    let mut p = hn_params(&srv, "max_pages = 1");
    p.insert("page_size".into(), 2.into());
    let mut c = ctx();
    c.first_run_since = t("2026-10-29T00:00:00Z");
    c.keywords = vec!["example notes".into()];

    let first = fetch("hackernews", &p, &c, None).await.unwrap();
    assert_eq!(ids(&first), ["41268000", "41267000"]);
    let watermark = t("2026-11-04T18:00:00Z").timestamp();
    assert_eq!(
        cursor_json(&first),
        serde_json::json!({"at": "2026-11-04T18:00:00Z", "ids": ["41268000"], "queries": ["example notes"]})
    );
    let searched_before = srv.hits(HN_PATH).len();

    clock.store(t("2026-11-05T00:00:00Z").timestamp(), Ordering::SeqCst);
    c.keywords.push("inkpad".into());
    let mut cursor = first.cursor;
    let mut fetched = Vec::new();
    let mut runs = 0;
    loop {
        let f = fetch("hackernews", &p, &c, cursor.as_deref())
            .await
            .unwrap();
        fetched.extend(ids(&f).into_iter().map(str::to_string));
        cursor = f.cursor;
        runs += 1;
        let json: Value = serde_json::from_str(cursor.as_deref().unwrap()).unwrap();
        if json.get("added").is_none() || runs == 10 {
            break;
        }
    }
    assert!(runs < 10, "the added keyword never joined the others");
    let mut sorted = fetched.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["41263000", "41264000", "41265000", "41270400", "41270500"],
        "the new keyword's hits within the look-back, each once (not the one of 20 \
         October), and the other's new one, over {runs} runs: {fetched:?}"
    );
    assert!(
        runs >= 3,
        "one page a run: the added keyword's walk was cut and went on ({runs} runs)"
    );
    for s in &srv.hits(HN_PATH)[searched_before..] {
        let filters = s.param("numericFilters").unwrap();
        if s.param("query").as_deref() == Some("example notes") {
            assert!(
                hn_since(&filters) >= watermark && !filters.contains("<="),
                "the keyword searched before is not searched further back: {filters}"
            );
        } else {
            assert!(
                hn_since(&filters) >= c.first_run_since.timestamp(),
                "{filters}"
            );
        }
    }
    let inkpad_since: Vec<i64> = srv
        .hits(HN_PATH)
        .iter()
        .filter(|s| s.param("query").as_deref() == Some("inkpad"))
        .map(|s| hn_since(&s.param("numericFilters").unwrap()))
        .collect();
    assert_eq!(
        inkpad_since[0],
        c.first_run_since.timestamp(),
        "the new keyword's first walk reaches down to the look-back"
    );
    assert_eq!(
        serde_json::from_str::<Value>(cursor.as_deref().unwrap()).unwrap(),
        serde_json::json!({
            "at": "2026-11-04T21:00:00Z",
            "ids": ["41270500"],
            "queries": ["example notes", "inkpad"]
        }),
        "once both have read up to the present, one watermark for both"
    );
    let again = fetch("hackernews", &p, &c, cursor.as_deref())
        .await
        .unwrap();
    assert!(again.mentions.is_empty(), "{:?}", ids(&again));

    // A keyword removed leaves nothing behind in the cursor.
    c.keywords = vec!["inkpad".into()];
    let f = fetch("hackernews", &p, &c, cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        cursor_json(&f),
        serde_json::json!({"at": "2026-11-04T21:00:00Z", "ids": ["41270500"], "queries": ["inkpad"]})
    );

    // A cursor written before the queries were kept covers the keywords configured now:
    // neither searches the look-back again.
    c.keywords = vec!["example notes".into(), "inkpad".into()];
    let before = srv.hits(HN_PATH).len();
    let old = r#"{"at":"2026-11-04T18:00:00Z","ids":["41268000"]}"#;
    let f = fetch("hackernews", &p, &c, Some(old)).await.unwrap();
    assert_eq!(ids(&f), ["41270500", "41270400"]);
    let filters: Vec<String> = srv.hits(HN_PATH)[before..]
        .iter()
        .filter_map(|s| s.param("numericFilters"))
        .collect();
    assert_eq!(
        filters,
        [
            format!("created_at_i>={watermark}"),
            format!("created_at_i>={watermark}")
        ]
    );
    assert_eq!(
        cursor_json(&f)["queries"],
        serde_json::json!(["example notes", "inkpad"])
    );
}

#[tokio::test]
async fn hackernews_queries_each_keyword_and_reports_bad_answers() {
    let srv = Server::start().await;
    srv.on(HN_PATH, Reply::fixture("hackernews/empty.json"));
    let mut c = ctx();
    c.keywords = vec!["example notes".into(), "examplenotes.app".into()];
    let f = fetch("hackernews", &hn_params(&srv, ""), &c, None)
        .await
        .unwrap();
    assert!(f.mentions.is_empty());
    let queries: Vec<String> = srv.seen().iter().filter_map(|s| s.param("query")).collect();
    assert_eq!(queries, ["example notes", "examplenotes.app"]);

    let e = fetch("hackernews", &hn_params(&srv, ""), &ctx(), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Config);

    let bad = Server::start().await;
    bad.on(
        HN_PATH,
        Reply::ok(r#"{"hits":[{"objectID":"1","created_at_i":17"#),
    );
    let e = fetch(
        "hackernews",
        &hn_params(&bad, "query = \"x\""),
        &ctx(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Malformed);
    let odd = Server::start().await;
    odd.on(HN_PATH, Reply::ok(r#"{"message":"index unavailable"}"#));
    let e = fetch(
        "hackernews",
        &hn_params(&odd, "query = \"x\""),
        &ctx(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Malformed);
    assert!(e.message.contains("no `hits` list"));
}

// ---------------------------------------------------------------- page

fn page_params(url: &str, extra: &str) -> toml::Table {
    params(&format!("url = \"{url}\"\n{extra}"))
}

#[tokio::test]
async fn page_json_ld_graph_reviews_aggregate_and_second_run() {
    let srv = Server::start().await;
    srv.on(
        "/robots.txt",
        Reply::ok("User-agent: *\nDisallow: /checkout\n"),
    );
    srv.on(
        "/apps/example-notes-pro",
        Reply::fixture("page/product_graph.html"),
    );
    srv.then(Reply::fixture("page/product_graph_later.html"));
    let p = page_params(&srv.url("/apps/example-notes-pro"), "");

    let f = fetch("page", &p, &ctx(), None).await.unwrap();
    assert_eq!(f.mentions.len(), 3);
    let anna = &f.mentions[0];
    assert_eq!(anna.author.as_deref(), Some("Anna K."));
    assert_eq!(anna.title.as_deref(), Some("Worth every cent 💯"));
    assert_eq!(
        anna.text,
        "Fast, clean & the handwriting search actually works."
    );
    assert_eq!(anna.rating, Some(5));
    assert_eq!(anna.published_at, t("2026-11-02T00:00:00Z"));
    assert!(
        anna.external_id.starts_with("h:") && anna.external_id.len() == 34,
        "{}",
        anna.external_id
    );
    let bjorn = &f.mentions[1];
    assert_eq!(
        (bjorn.author.as_deref(), bjorn.rating),
        (Some("Björn"), Some(3)),
        "6 of 10 is 3 stars"
    );
    assert_eq!(bjorn.published_at, t("2026-10-30T17:20:00Z"));
    let chidi = by_id(
        &f,
        "https://shop.example.com/apps/example-notes-pro#review-77",
    );
    assert_eq!(chidi.author.as_deref(), Some("Chidi O."));
    assert_eq!(
        chidi.rating,
        Some(5),
        "\"4,5\" with a decimal comma rounds to 5"
    );
    assert_eq!(
        chidi.url.as_deref(),
        Some("https://shop.example.com/apps/example-notes-pro#review-77")
    );
    let agg = f.aggregate.unwrap();
    assert_eq!((agg.rating, agg.count), (4.6, Some(1234)));

    let second = fetch("page", &p, &ctx(), f.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(second.mentions.len(), 1);
    assert_eq!(second.mentions[0].author.as_deref(), Some("Dana"));
    assert_eq!(second.mentions[0].rating, Some(2));
    let agg = second.aggregate.unwrap();
    assert_eq!((agg.rating, agg.count), (4.5, Some(1236)));
    let third = fetch("page", &p, &ctx(), second.cursor.as_deref())
        .await
        .unwrap();
    assert!(third.mentions.is_empty());
    assert!(
        third.aggregate.is_some(),
        "the aggregate is recorded on every fetch"
    );
    assert_eq!(srv.hits("/robots.txt").len(), 1, "robots.txt is cached");
}

#[tokio::test]
async fn page_json_ld_arrays_nested_items_and_a_skipped_review() {
    let srv = Server::start().await;
    srv.on("/r/esempio", Reply::fixture("page/array_nested.html"));
    let f = fetch(
        "page",
        &page_params(&srv.url("/r/esempio"), ""),
        &ctx(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(ids(&f)[0], "https://reviews.example.it/r/555");
    assert_eq!(f.mentions.len(), 2);
    let giulia = &f.mentions[0];
    assert_eq!(giulia.rating, Some(4), "8 of 10");
    assert_eq!(
        giulia.text,
        "Pasta fatta in casa, servizio un po' lento. 🍝"
    );
    let paolo = &f.mentions[1];
    assert_eq!(
        paolo.author.as_deref(),
        Some("Paolo"),
        "an untyped review under `reviews`"
    );
    assert_eq!(
        (paolo.text.as_str(), paolo.rating),
        ("Tiramisù migliore della città!", Some(5))
    );
    assert_eq!(f.skipped, 1, "Tom's review has no text");
    assert_eq!(
        f.note.as_deref(),
        Some("1 item(s) skipped: review without text")
    );
    let agg = f.aggregate.unwrap();
    assert_eq!(
        (agg.rating, agg.count),
        (4.2, Some(87)),
        "8.4 of 10 as 5 stars"
    );
}

#[tokio::test]
async fn page_microdata_reviews_and_aggregate() {
    let srv = Server::start().await;
    srv.on("/kettle", Reply::fixture("page/microdata.html"));
    let f = fetch("page", &page_params(&srv.url("/kettle"), ""), &ctx(), None)
        .await
        .unwrap();
    assert_eq!(f.mentions.len(), 2);
    let m = &f.mentions[0];
    assert_eq!(m.author.as_deref(), Some("Margaret H."));
    assert_eq!(m.title.as_deref(), Some("Boils fast, lid is loud"));
    assert_eq!(
        m.text,
        "Boils a full litre in under three minutes.\nThe lid clicks loudly – wakes the baby 👶."
    );
    assert_eq!(m.rating, Some(4));
    assert_eq!(m.published_at, t("2026-11-01T00:00:00Z"));
    let d = &f.mentions[1];
    assert_eq!((d.author.as_deref(), d.rating), (Some("Dev R."), Some(1)));
    assert_eq!(d.published_at, t("2026-10-27T09:00:00Z"));
    let agg = f.aggregate.unwrap();
    assert_eq!((agg.rating, agg.count), (4.3, Some(1024)));
}

#[tokio::test]
async fn page_microdata_permalinks_are_urls_and_shared_ones_do_not_merge_reviews() {
    let srv = Server::start().await;
    srv.on(
        "/kettle-k3",
        Reply::fixture("page/microdata_permalinks.html"),
    );
    let p = page_params(&srv.url("/kettle-k3"), "");
    let f = fetch("page", &p, &ctx(), None).await.unwrap();

    let authors: Vec<_> = f.mentions.iter().map(|m| m.author.as_deref()).collect();
    assert_eq!(
        authors,
        [
            Some("Priya S."),
            Some("Gareth"),
            Some("Marek W."),
            Some("Aoife"),
            Some("Tom B.")
        ],
        "{:?}",
        ids(&f)
    );
    // <a itemprop="url" href="/kettle-k3/reviews/8841">Permalink</a> is the link, resolved.
    let priya = &f.mentions[0];
    let permalink = srv.url("/kettle-k3/reviews/8841");
    assert_eq!(priya.external_id, permalink);
    assert_eq!(priya.url.as_deref(), Some(permalink.as_str()));
    assert_eq!(priya.rating, Some(5), "<data value=\"5\">★★★★★</data>");
    assert_eq!(priya.published_at, t("2026-11-03T00:00:00Z"));
    assert_eq!(
        f.mentions[1].external_id,
        "https://shop.example.co.uk/kettle-k3/reviews/8840"
    );
    // Two reviews linking to the same anchor, and one linking to the page itself: none
    // of those links tells a review apart, so each is known by its hash.
    for m in &f.mentions[2..] {
        assert!(
            m.external_id.starts_with("h:"),
            "{}: {}",
            m.text,
            m.external_id
        );
        assert_eq!(m.url.as_deref(), Some(srv.url("/kettle-k3").as_str()));
    }
    assert_ne!(f.mentions[2].external_id, f.mentions[3].external_id);
    let agg = f.aggregate.unwrap();
    assert_eq!((agg.rating, agg.count), (3.8, Some(212)));

    let again = fetch("page", &p, &ctx(), f.cursor.as_deref())
        .await
        .unwrap();
    assert!(again.mentions.is_empty(), "{:?}", ids(&again));

    // The old version gave every review here the id "Permalink" (and kept only the
    // first): an id the reviews share is not kept, even though the last run saw it.
    let after_upgrade = fetch("page", &p, &ctx(), Some(r#"{"seen":["Permalink"]}"#))
        .await
        .unwrap();
    let upgraded = ids(&after_upgrade);
    assert_eq!(upgraded, ids(&f), "the same distinct ids as a first run");
}

#[tokio::test]
async fn page_microdata_reviews_stored_under_their_old_ids_do_not_come_back_after_the_upgrade() {
    let srv = Server::start().await;
    srv.on(
        "/shop/kettle-k4",
        Reply::fixture("page/microdata_itemids.html"),
    );
    let p = page_params(&srv.url("/shop/kettle-k4"), "");
    // The cursor the version before URL-valued properties wrote for this page, without
    // the newest review: raw itemids, a <link> url (no text: the hashed id) and a link's
    // text.
    let old_cursor = r##"{"seen":["#review-13","#review-12","h:1b4b8a2b2538ce892e2a5e07efb21946","Read Dana's review"]}"##;

    let f = fetch("page", &p, &ctx(), Some(old_cursor)).await.unwrap();
    let page = srv.url("/shop/kettle-k4");
    assert_eq!(
        ids(&f),
        [format!("{page}#review-14").as_str()],
        "only the review the old version had not seen, under its new id"
    );
    let seen = &cursor_json(&f)["seen"];
    assert_eq!(
        seen,
        &serde_json::json!([
            format!("{page}#review-14"),
            "#review-13",
            "#review-12",
            "h:1b4b8a2b2538ce892e2a5e07efb21946",
            "Read Dana's review"
        ]),
        "the reviews stored before keep the ids they were stored under"
    );
    let again = fetch("page", &p, &ctx(), f.cursor.as_deref())
        .await
        .unwrap();
    assert!(again.mentions.is_empty(), "{:?}", ids(&again));

    let first = fetch("page", &p, &ctx(), None).await.unwrap();
    assert_eq!(
        ids(&first),
        [
            format!("{page}#review-14").as_str(),
            &format!("{page}#review-13"),
            &format!("{page}#review-12"),
            &srv.url("/shop/reviews/551"),
            &srv.url("/shop/reviews/550"),
        ],
        "without an old cursor, the new ids"
    );
}

#[tokio::test]
async fn page_an_old_id_stays_with_its_review_and_never_passes_to_a_later_one() {
    let srv = Server::start().await;
    srv.on(
        "/shop/kettle-k4",
        Reply::fixture("page/microdata_itemids.html"),
    );
    // Dana's review has left the page; a new one whose link the site's template labels
    // the same way has come.
    srv.then(Reply::fixture("page/microdata_itemids_v2.html"));
    let p = page_params(&srv.url("/shop/kettle-k4"), "");
    let old_cursor = r##"{"seen":["#review-13","#review-12","h:1b4b8a2b2538ce892e2a5e07efb21946","Read Dana's review"]}"##;
    let upgrade = fetch("page", &p, &ctx(), Some(old_cursor)).await.unwrap();
    assert_eq!(upgrade.mentions.len(), 1, "{:?}", ids(&upgrade));

    let next = fetch("page", &p, &ctx(), upgrade.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        ids(&next),
        [srv.url("/shop/reviews/552").as_str()],
        "the new review is new, under its own id"
    );
    let seen = &cursor_json(&next)["seen"];
    assert!(
        seen.as_array().unwrap().iter().any(|id| id == "#review-13"),
        "reviews stored under an old id keep it: {seen}"
    );
}

#[tokio::test]
async fn page_robots_group_for_zmot_with_an_empty_disallow_allows_everything() {
    let srv = Server::start().await;
    srv.on(
        "/robots.txt",
        Reply::ok("User-agent: zmot\nDisallow:\n\nUser-agent: *\nDisallow: /\n"),
    );
    srv.on("/kettle", Reply::fixture("page/microdata.html"));
    let f = fetch("page", &page_params(&srv.url("/kettle"), ""), &ctx(), None)
        .await
        .unwrap();
    assert_eq!(f.mentions.len(), 2);
}

#[tokio::test]
async fn page_selector_mode() {
    let srv = Server::start().await;
    srv.on(
        "/reviews/example-notes",
        Reply::fixture("page/selectors.html"),
    );
    srv.on("/kettle", Reply::fixture("page/microdata.html"));
    let sel = r#"review_selector = "article.review-card"
text_selector = ".body"
rating_selector = ".stars"
author_selector = ".consumer"
date_selector = "time"
title_selector = ".title""#;
    let p = page_params(&srv.url("/reviews/example-notes"), sel);
    let f = fetch("page", &p, &ctx(), None).await.unwrap();
    assert_eq!(f.mentions.len(), 3);
    assert_eq!(f.skipped, 1, "the card without a body");
    let h = by_id(&f, "tp-3001");
    assert_eq!(h.author.as_deref(), Some("Hélène D."));
    assert_eq!(h.rating, Some(5));
    assert_eq!(h.title.as_deref(), Some("Best support team 🙌"));
    assert_eq!(
        h.text,
        "Had a sync issue, they fixed it within an hour.\nThanks Marta!"
    );
    assert_eq!(h.published_at, t("2026-11-03T16:20:00Z"));
    let s = by_id(&f, "tp-3000");
    assert_eq!(s.rating, Some(2), "counted stars");
    assert_eq!(
        s.text,
        "The yearly plan now costs 39 €. Not worth it for me."
    );
    let mo = f
        .mentions
        .iter()
        .find(|m| m.author.as_deref() == Some("Mo"))
        .unwrap();
    assert_eq!(mo.rating, Some(4));
    assert_eq!(mo.published_at, t("2026-10-28T00:00:00Z"));
    assert!(mo.external_id.starts_with("h:"));
    assert_eq!(f.aggregate, None);

    let again = fetch("page", &p, &ctx(), f.cursor.as_deref())
        .await
        .unwrap();
    assert!(again.mentions.is_empty(), "{:?}", ids(&again));

    let e = fetch("page", &page_params(&srv.url("/kettle"), sel), &ctx(), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Malformed);
    assert!(e.message.contains("matched nothing"), "{}", e.message);
}

#[tokio::test]
async fn page_respects_robots_txt() {
    let srv = Server::start().await;
    srv.on("/robots.txt", Reply::ok("User-agent: *\nDisallow: /private/\n\nUser-agent: zmot\nDisallow: /private/\nAllow: /private/open$\n"));
    srv.on("/private/reviews", Reply::fixture("page/microdata.html"));
    srv.on("/private/open", Reply::fixture("page/microdata.html"));
    let e = fetch(
        "page",
        &page_params(&srv.url("/private/reviews"), ""),
        &ctx(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Blocked);
    assert!(e.message.contains("robots.txt"), "{}", e.message);
    assert!(
        srv.hits("/private/reviews").is_empty(),
        "the page itself was not requested"
    );
    let ok = fetch(
        "page",
        &page_params(&srv.url("/private/open"), ""),
        &ctx(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(ok.mentions.len(), 2);
    let ignored = fetch(
        "page",
        &page_params(&srv.url("/private/reviews"), "respect_robots = false"),
        &ctx(),
        None,
    )
    .await;
    assert_eq!(ignored.unwrap().mentions.len(), 2);
}

/// Fetches a page within a minute: a hang is a failure too.
async fn fetch_page_within(url: &str) -> Result<Fetched, FetchError> {
    let p = page_params(url, "");
    tokio::time::timeout(Duration::from_secs(60), fetch("page", &p, &ctx(), None))
        .await
        .expect("the fetch finished")
}

#[tokio::test]
async fn hostile_pages_give_errors_not_crashes_or_hangs() {
    let srv = Server::start().await;
    let deep = format!(
        "<html><head><script type=\"application/ld+json\">{}{}</script></head><body></body></html>",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    srv.on("/deep", Reply::ok(deep));
    srv.on(
        "/huge",
        Reply {
            status: 200,
            headers: vec![],
            body: Payload::Stream(50 * 1024 * 1024),
        },
    );
    let mut bad_utf8 = fixture("page/microdata.html");
    let at = bad_utf8.windows(5).position(|w| w == b"Water").unwrap();
    bad_utf8.splice(at..at, [0xff, 0xfe, 0xc3]);
    srv.on("/latin", Reply::ok(bad_utf8));
    srv.on(
        "/blocked",
        Reply::status(403, fixture("common/cloudflare_403.html")),
    );

    let e = fetch_page_within(&srv.url("/deep")).await.unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Malformed);
    assert!(e.message.contains("JSON-LD block 1"), "{}", e.message);

    let started = Instant::now();
    let e = fetch_page_within(&srv.url("/huge")).await.unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::TooLarge);
    assert!(
        e.message.contains("more than 10485760 bytes"),
        "{}",
        e.message
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    let f = fetch_page_within(&srv.url("/latin")).await.unwrap();
    assert_eq!(
        f.mentions.len(),
        2,
        "invalid bytes are replaced, the rest is read"
    );
    assert!(
        f.mentions[1].text.starts_with('\u{fffd}'),
        "{}",
        f.mentions[1].text
    );

    let e = fetch_page_within(&srv.url("/blocked")).await.unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Blocked);
}

// ---------------------------------------------------------------- end to end

#[tokio::test]
async fn pipeline_fetches_an_appstore_source_into_the_store_once() {
    let srv = Server::start().await;
    srv.on(&app_page(1), Reply::fixture("appstore/page1.json"));
    srv.on(&app_page(2), Reply::fixture("appstore/page2.json"));
    srv.on(&app_page(3), Reply::fixture("appstore/empty.json"));
    let text = format!(
        r#"
[http]
contact_url = "https://example.com/zmot-tests"
first_run_lookback_days = 3650

[[watch]]
name = "Example Notes"

  [[watch.source]]
  name = "app-store-us"
  kind = "appstore"
  params = {{ app_id = "1450000000", base_url = "{}", min_interval_ms = 0 }}
"#,
        srv.base
    );
    let cfg = config::parse(&text, "e2e.toml", &[]).unwrap();
    let db = testutil::sqlite().await.unwrap();
    db.store.sync_config(&cfg).await.unwrap();
    let pipeline = Pipeline::new(db.store.clone(), std::sync::Arc::new(cfg), None).unwrap();
    let source = db
        .store
        .sources(None)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.kind == "appstore")
        .unwrap();
    assert_eq!(source.cursor, None);

    let report = pipeline.fetch_source(&source).await.unwrap();
    let stats = report.result.unwrap();
    assert_eq!((stats.new, report.skipped), (5, 1));
    assert_eq!(db.store.count_mentions(None).await.unwrap(), 5);
    let ua = srv.seen()[0].header("user-agent").unwrap().to_string();
    assert!(ua.contains("+https://example.com/zmot-tests"), "{ua}");

    let source = db.store.source(source.id).await.unwrap().unwrap();
    assert!(source
        .cursor
        .as_deref()
        .unwrap()
        .contains("2026-11-03T15:14:51Z"));
    let report = pipeline.fetch_source(&source).await.unwrap();
    let stats = report.result.unwrap();
    assert_eq!((stats.new, stats.updated), (0, 0));
    assert_eq!(db.store.count_mentions(None).await.unwrap(), 5);
}

async fn pipeline_for(text: &str, db: &testutil::TestDb) -> Pipeline {
    let cfg = config::parse(text, "e2e.toml", &[]).unwrap();
    db.store.sync_config(&cfg).await.unwrap();
    Pipeline::new(db.store.clone(), std::sync::Arc::new(cfg), None).unwrap()
}

async fn source_named(db: &testutil::TestDb, name: &str) -> zmot::store::SourceRow {
    db.store
        .sources(None)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

#[tokio::test]
async fn a_nul_in_a_fetched_item_is_dropped_and_the_cursor_moves() {
    let srv = Server::start().await;
    srv.on(HN_PATH, Reply::fixture("hackernews/nul.json"));
    let text = format!(
        r#"
[http]
first_run_lookback_days = 3650

[[watch]]
name = "Example Notes"

  [[watch.source]]
  name = "hn"
  kind = "hackernews"
  params = {{ base_url = "{}/api/v1", query = "example notes", min_interval_ms = 0 }}
"#,
        srv.base
    );
    for db in testutil::all().await.unwrap() {
        let pipeline = pipeline_for(&text, &db).await;
        let source = source_named(&db, "hn").await;
        let report = pipeline.fetch_source(&source).await.unwrap();
        let stats = report
            .result
            .unwrap_or_else(|e| panic!("{}: {e}", db.label));
        assert_eq!(stats.new, 3, "{}", db.label);
        let source = db.store.source(source.id).await.unwrap().unwrap();
        assert!(source.cursor.is_some(), "{}", db.label);
        let found = db
            .store
            .find_mentions(&Default::default(), 0, 10)
            .await
            .unwrap();
        assert!(found
            .iter()
            .any(|m| m.mention.mention.text == "Example Notes 5.0.1 fixed the crash for me."));
    }
}

#[tokio::test]
async fn a_failing_private_feed_is_named_without_its_token() {
    let srv = Server::start().await;
    srv.on("/feed", Reply::status(500, "upstream down"));
    // A feed whose URL path is its key (as Google Alerts feeds are).
    let key_path = "/alerts/feeds/00641234567890123456/1234567890123456789";
    srv.on(key_path, Reply::status(403, "forbidden"));
    // A port nothing listens on, for the connection error (reqwest quotes the URL).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = format!(
        r#"
[[watch]]
name = "Example Notes"

  [[watch.source]]
  name = "private-feed"
  kind = "feed"
  params = {{ url = "{}/feed?token=SECRET123", retries = 0, min_interval_ms = 0 }}

  [[watch.source]]
  name = "gone-feed"
  kind = "feed"
  params = {{ url = "http://reader:hunter2@127.0.0.1:{closed_port}/feed?token=SECRET123&lang=en", retries = 0, min_interval_ms = 0 }}

  [[watch.source]]
  name = "alerts-feed"
  kind = "feed"
  params = {{ url = "{}{key_path}", retries = 0, min_interval_ms = 0 }}
"#,
        srv.base, srv.base
    );
    let db = testutil::sqlite().await.unwrap();
    let pipeline = pipeline_for(&text, &db).await;
    for (name, shown) in [
        ("private-feed", format!("{}/feed?token=***", srv.base)),
        (
            "gone-feed",
            format!("http://reader:***@127.0.0.1:{closed_port}/feed?token=***&lang=***"),
        ),
        ("alerts-feed", format!("{}/alerts/feeds/***/***", srv.base)),
    ] {
        let source = source_named(&db, name).await;
        let report = pipeline.fetch_source(&source).await.unwrap();
        let e = report.result.unwrap_err();
        let stored = db.store.fetch_runs(source.id, 1).await.unwrap()[0]
            .error
            .clone()
            .unwrap();
        for text in [&e.message, &stored] {
            assert!(text.contains(&shown), "{name}: {text}");
            assert!(
                !text.contains("SECRET123")
                    && !text.contains("hunter2")
                    && !text.contains("00641234567890123456")
                    && !text.contains("1234567890123456789"),
                "{name}: {text}"
            );
        }
    }
}

#[tokio::test]
async fn a_batch_the_store_refuses_closes_the_run_as_failed() {
    let srv = Server::start().await;
    srv.on(HN_PATH, Reply::fixture("hackernews/later.json"));
    let text = format!(
        r#"
[http]
first_run_lookback_days = 3650

[[watch]]
name = "Example Notes"

  [[watch.source]]
  name = "hn"
  kind = "hackernews"
  params = {{ base_url = "{}/api/v1", query = "example notes", min_interval_ms = 0 }}
"#,
        srv.base
    );
    let db = testutil::sqlite().await.unwrap();
    let pipeline = pipeline_for(&text, &db).await;
    let source = source_named(&db, "hn").await;
    // A store that refuses this batch (as PostgreSQL refused a U+0000 before).
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON mentions BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(db.store.pool())
    .await
    .unwrap();
    let report = pipeline.fetch_source(&source).await.unwrap();
    let e = report.result.unwrap_err();
    assert!(e.message.contains("refused"), "{}", e.message);
    let runs = db.store.fetch_runs(source.id, 5).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "failed");
    assert!(runs[0].finished_at.is_some());
    let source = db.store.source(source.id).await.unwrap().unwrap();
    assert_eq!(source.cursor, None, "the cursor stays put");
}

#[tokio::test]
async fn http_section_sets_the_body_cap_and_a_source_may_raise_it() {
    let srv = Server::start().await;
    let big = Reply {
        status: 200,
        headers: vec![],
        body: Payload::Stream(3 * 1024 * 1024),
    };
    srv.on("/big.xml", big);
    let text = format!(
        r#"
[http]
max_body_bytes = 1048576

[[watch]]
name = "Example Notes"

  [[watch.source]]
  name = "capped"
  kind = "feed"
  params = {{ url = "{base}/big.xml", min_interval_ms = 0 }}

  [[watch.source]]
  name = "raised"
  kind = "feed"
  params = {{ url = "{base}/big.xml", min_interval_ms = 0, max_body_bytes = 4194304 }}
"#,
        base = srv.base
    );
    let db = testutil::sqlite().await.unwrap();
    let pipeline = pipeline_for(&text, &db).await;
    let capped = source_named(&db, "capped").await;
    let e = pipeline
        .fetch_source(&capped)
        .await
        .unwrap()
        .result
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::TooLarge, "{}", e.message);
    assert!(
        e.message.contains("more than 1048576 bytes"),
        "{}",
        e.message
    );
    let runs = db.store.fetch_runs(capped.id, 1).await.unwrap();
    assert_eq!(runs[0].error_kind.as_deref(), Some("too_large"));
    // Read in full, then found not to be a feed.
    let raised = source_named(&db, "raised").await;
    let e = pipeline
        .fetch_source(&raised)
        .await
        .unwrap()
        .result
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Malformed, "{}", e.message);
}

#[tokio::test]
async fn http_section_per_host_rate_spaces_requests() {
    let srv = Server::start().await;
    srv.on("/feed.xml", Reply::fixture("feed/reviews_v1.xml"));
    let text = format!(
        r#"
[http]
per_host_rate = 0.5

[[watch]]
name = "Example Notes"

  [[watch.source]]
  name = "feed"
  kind = "feed"
  params = {{ url = "{}/feed.xml", filter_keywords = false }}
"#,
        srv.base
    );
    let db = testutil::sqlite().await.unwrap();
    let pipeline = pipeline_for(&text, &db).await;
    let source = source_named(&db, "feed").await;
    let started = Instant::now();
    for _ in 0..2 {
        let source = db.store.source(source.id).await.unwrap().unwrap();
        pipeline
            .fetch_source(&source)
            .await
            .unwrap()
            .result
            .unwrap();
    }
    // Two requests to one host at 0.5 per second: 2 s apart (the built-in default
    // would be 1 s).
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1950), "{took:?}");
    assert_eq!(srv.hits("/feed.xml").len(), 2);
}
