//! The dashboard and its API against a real server on 127.0.0.1, on SQLite (and
//! PostgreSQL when `ZMOT_TEST_DATABASE_URL` is set): figures on the pages, escaping of
//! hostile review text, filters and pagination, triage through the forms, JSON shapes,
//! access control and CSRF.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::Value;
use zmot::config::{self, Config};
use zmot::domain::{Engagement, Label, Mention, ScoredMention, Sentiment};
use zmot::store::{SourceRow, Store};
use zmot::testutil;
use zmot::web::{router, WebState};

const CONFIG: &str = r#"
[[watch]]
name = "Acme Kettle"
competitors = "kettles"
recipients = ["lead@acme.test"]

[[watch.source]]
name = "blog"
kind = "feed"
params = { url = "https://acme.test/feed.xml" }

[[watch]]
name = "Rival"
competitors = "kettles"
"#;

const HOSTILE: &str = "<script>alert(1)</script> it leaks";

fn config() -> Config {
    config::parse(CONFIG, "test.toml", &[]).unwrap()
}

fn scored(
    id: &str,
    text: &str,
    rating: u8,
    label: Label,
    at: DateTime<Utc>,
    reply: bool,
) -> ScoredMention {
    ScoredMention {
        mention: Mention {
            external_id: id.into(),
            url: Some(format!("https://reviews.test/{id}")),
            author: Some("Pat".into()),
            title: None,
            text: text.into(),
            rating: Some(rating),
            engagement: Engagement::default(),
            language: Some("en".into()),
            published_at: at,
            owner_reply: reply.then(|| "Sorry, we are on it".to_string()),
            owner_reply_at: reply.then(|| at + Duration::hours(2)),
            extra: None,
        },
        sentiment: Some(Sentiment {
            label,
            score: if label == Label::Negative { -0.8 } else { 0.8 },
            confidence: 0.9,
        }),
    }
}

/// Acme Kettle's store page: four good reviews then six bad ones (the buyer's view
/// averages (4 x 5 + 6 x 2) / 10 = 3.2), one of them hostile HTML, one answered.
async fn seed(store: &Store, c: &Config) -> SourceRow {
    store.sync_config(c).await.unwrap();
    let w = store.watch_by_name("Acme Kettle").await.unwrap().unwrap();
    let src = store.push_source(w.id, "store").await.unwrap();
    let now = Utc::now();
    let mut batch = Vec::new();
    for i in 0..4 {
        batch.push(scored(
            &format!("g{i}"),
            "Boils fast, lovely",
            5,
            Label::Positive,
            now - Duration::hours(100 - i),
            false,
        ));
    }
    for i in 0..6 {
        let text = if i == 0 {
            HOSTILE.to_string()
        } else {
            format!("Broke after a week, number {i}")
        };
        batch.push(scored(
            &format!("b{i}"),
            &text,
            2,
            Label::Negative,
            now - Duration::hours(50 - i),
            i == 1,
        ));
    }
    store
        .ingest(&src, &batch, Some(("test", "1")))
        .await
        .unwrap();
    src
}

struct Server {
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(store: Store, c: Config, token: Option<&str>, loopback: bool) -> Server {
        let state = WebState::with_access(store, Arc::new(c), token.map(String::from), loopback);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // As `zmot serve` does: handlers may see the client's address.
            let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// The same server, reached from another loopback address (127.0.0.2: another
    /// client as the server sees it).
    fn reached_from_another_client(&self) -> Server {
        Server {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
                .build()
                .unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    /// Posts a form as a browser on this page would (same Origin).
    async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("Origin", &self.base)
            .form(fields)
            .send()
            .await
            .unwrap()
    }
}

fn csrf_of(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token");
    let rest = &page[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn negative_ids(s: &Server) -> Vec<i64> {
    let (_, v) = s
        .json("/api/mentions?watch=Acme%20Kettle&sentiment=negative")
        .await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_the_figures_and_escape_review_text() {
    for db in testutil::all().await.unwrap() {
        let c = config();
        seed(&db.store, &c).await;
        let s = Server::start(db.store.clone(), c, None, true).await;

        let r = s.http.get(s.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", db.label);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        let page = r.text().await.unwrap();
        // Red: the buyer's view (3.2) is under 4.0 and 60 % of the last 7 days is negative.
        assert!(page.contains(r#"<article class="card red""#), "{page}");
        assert!(page.contains(r#"<b class="below">3.20★</b>"#), "{page}");
        assert!(page.contains("vs 4.3"), "{page}");
        // This ISO week and the last split the ten reviews by weekday; both are shown.
        assert!(page.contains(r#"figure negative-week"><b>"#), "{page}");
        assert!(page.contains("negative this week (last week "), "{page}");
        assert!(page.contains("Rival"));
        assert!(page.contains("blog") && page.contains("never"), "{page}");

        let (status, page) = s.get("/watch/Acme%20Kettle").await;
        assert_eq!(status, 200, "{}", db.label);
        assert!(page.contains("<svg"), "a chart");
        assert!(page.contains(r#"class="threshold""#) && page.contains(">4.3</text>"));
        assert!(page.contains("Broke after a week, number 3"));
        assert!(
            !page.contains("<script>alert(1)</script>"),
            "hostile text unescaped"
        );
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;"),
            "hostile text shown escaped"
        );
        // Six negatives, all open; one of six has an owner reply on a replying source.
        assert!(page.contains(r#"open-negative"><b>6</b>"#), "{page}");
        assert!(page.contains(r#"reply-share"><b>17%</b>"#), "{page}");
        assert!(page.contains("Competitors"));
        // Drivers of negativity (last 7 days vs the 28 before) and the buyer's view history.
        assert!(page.contains("What drives negativity"), "{page}");
        assert!(page.contains(r#"<table class="drivers small">"#), "{page}");
        assert!(page.contains("<b>broke</b>"), "{page}");
        assert!(
            page.contains(r#"class="chart buyer-view-history""#),
            "{page}"
        );
        // Links to originals only for http(s).
        assert!(page.contains(r#"href="https://reviews.test/b2""#));

        let (status, page) = s.get("/mentions?q=script").await;
        assert_eq!(status, 200);
        assert!(!page.contains("<script>alert(1)</script>"));
        assert!(page.contains("1–1 of 1 mentions"), "{page}");

        let (status, page) = s.get("/sources").await;
        assert_eq!(status, 200);
        assert!(page.contains("Fetch now") && page.contains("blog"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_watch_is_404_on_pages_and_api() {
    let db = testutil::sqlite().await.unwrap();
    let c = config();
    seed(&db.store, &c).await;
    let s = Server::start(db.store.clone(), c, None, true).await;
    assert_eq!(s.get("/watch/Nobody").await.0, 404);
    let (status, v) = s.json("/api/watches/Nobody/trends").await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "not_found");
    let (status, v) = s.json("/api/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(s.get("/no-such-page").await.0, 404);
    assert_eq!(s.get("/mentions/99999").await.0, 404);
}

/// Requests the handlers cannot even read (a parameter given twice, an alert id that is
/// not a number) are answered in the route's own dialect: JSON errors on the API, a page
/// on the dashboard, not axum's plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_parameters_get_the_apis_json_and_the_pages_html() {
    let db = testutil::sqlite().await.unwrap();
    let c = config();
    seed(&db.store, &c).await;
    let s = Server::start(db.store.clone(), c, None, true).await;
    for path in [
        "/api/mentions?watch=Acme+Kettle&watch=Rival",
        "/api/alerts?days=1&days=2",
        "/api/watches/Rival/trends?weeks=1&weeks=2",
        "/api/watches/Rival/triage?days=1&days=2",
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_request", "{path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("duplicate"),
            "{v}"
        );
    }
    for path in [
        "/mentions?watch=Acme+Kettle&watch=Rival",
        "/login?next=/&next=/x",
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(
            r.text().await.unwrap().contains(r#"class="error""#),
            "{path}"
        );
    }
    let (_, page) = s.get("/sources").await;
    let csrf = csrf_of(&page);
    for path in [
        "/alerts/abc/acknowledge",
        "/alerts/99999999999999999999/snooze",
        "/sources/x/fetch",
    ] {
        let r = s.post_form(path, &[("csrf", csrf.as_str())]).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mention_filters_and_pagination() {
    for db in testutil::all().await.unwrap() {
        let c = config();
        seed(&db.store, &c).await;
        let s = Server::start(db.store.clone(), c, None, true).await;
        let count = |page: &str| page.contains("of 6 mentions");

        let (_, page) = s
            .get("/mentions?watch=Acme+Kettle&sentiment=negative")
            .await;
        assert!(page.contains("1–6 of 6 mentions"), "{}: {page}", db.label);
        let (_, page) = s
            .get("/mentions?watch=Acme+Kettle&sentiment=negative&per_page=4&page=2")
            .await;
        assert!(page.contains("5–6 of 6 mentions") && count(&page), "{page}");
        assert!(page.contains(r#"rel="prev""#) && !page.contains(r#"rel="next""#));
        let (_, page) = s.get("/mentions?stars=5").await;
        assert!(page.contains("1–4 of 4 mentions"), "{page}");
        let (_, page) = s.get("/mentions?stars=1-2&q=NUMBER+3").await;
        assert!(page.contains("1–1 of 1 mentions"), "{page}");
        let (_, page) = s.get("/mentions?status=resolved").await;
        assert!(page.contains("0–0 of 0 mentions"), "{page}");
        let from = (Utc::now() - Duration::days(1)).date_naive();
        let (_, page) = s.get(&format!("/mentions?from={from}")).await;
        assert!(
            page.contains("of 0 mentions")
                || page.contains("of 6 mentions")
                || page.contains("mentions")
        );
        // Untouched GET-form fields are empty, not errors.
        let (status, _) = s
            .get("/mentions?watch=&source=&sentiment=&stars=&from=&to=&q=&status=")
            .await;
        assert_eq!(status, 200);
        let (status, page) = s.get("/mentions?stars=9").await;
        assert_eq!(status, 400, "{page}");

        // The API walks the same list with a cursor: every mention once.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/mentions?watch=Acme%20Kettle&limit=3&cursor={c}"),
                None => "/api/mentions?watch=Acme%20Kettle&limit=3".to_string(),
            };
            let (status, v) = s.json(&path).await;
            assert_eq!(status, 200, "{v}");
            let items = v["items"].as_array().unwrap();
            assert!(items.len() <= 3);
            seen.extend(items.iter().map(|m| m["id"].as_i64().unwrap()));
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((seen.len(), unique.len()), (10, 10), "{}", db.label);
        // The list's count stops at a cap when asked to.
        let all = zmot::store::MentionFilter::default();
        assert_eq!(db.store.count_found_mentions(&all).await.unwrap(), 10);
        assert_eq!(
            db.store
                .count_found_mentions_upto(&all, Some(3))
                .await
                .unwrap(),
            3
        );
        let (status, v) = s.json("/api/mentions?cursor=garbage").await;
        assert_eq!(status, 400);
        assert_eq!(v["error"]["code"], "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triage_through_the_page_changes_status_and_the_watch_page_shows_it() {
    for db in testutil::all().await.unwrap() {
        let c = config();
        seed(&db.store, &c).await;
        let s = Server::start(db.store.clone(), c, None, true).await;
        let ids = negative_ids(&s).await;
        assert_eq!(ids.len(), 6);
        let id = ids[0];
        let (_, page) = s.get("/watch/Acme%20Kettle").await;
        let csrf = csrf_of(&page);
        let path = format!("/mentions/{id}/triage");

        // Without the CSRF token, or from another site: refused, nothing changes.
        let r = s
            .post_form(&path, &[("status", "resolved"), ("csrf", "nope")])
            .await;
        assert_eq!(r.status(), 403);
        let r = s
            .http
            .post(s.url(&path))
            .header("Origin", "https://evil.test")
            .form(&[("status", "resolved"), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);

        let r = s
            .post_form(
                &path,
                &[
                    ("csrf", csrf.as_str()),
                    ("back", "/watch/Acme%20Kettle"),
                    ("status", "resolved"),
                    ("assignee", "sam@acme.test"),
                    ("note", "Replacement sent <b>today</b>"),
                    ("by", "Lee"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", db.label);
        assert_eq!(r.headers()["location"], "/watch/Acme%20Kettle");

        let (_, page) = s.get("/watch/Acme%20Kettle").await;
        assert!(page.contains(r#"open-negative"><b>5</b>"#), "{page}");
        assert!(page.contains("Recently handled"));
        assert!(page.contains(r#"triage-status">resolved</span>"#));
        assert!(page.contains("assigned to sam@acme.test"));
        assert!(page.contains("Replacement sent &lt;b&gt;today&lt;"));
        assert!(
            !page.contains(r#"first-action"><b>–</b>"#),
            "median time shown"
        );

        let (_, v) = s.json(&format!("/api/mentions/{id}")).await;
        assert_eq!(v["triage"]["status"], "resolved");
        assert_eq!(v["triage"]["assignee"], "sam@acme.test");
        assert_eq!(v["triage"]["updated_by"], "Lee");
        assert_eq!(v["triage_history"].as_array().unwrap().len(), 1);
        let (_, page) = s.get("/mentions?status=resolved").await;
        assert!(page.contains("1–1 of 1 mentions"), "{page}");
        let (_, page) = s.get("/mentions?status=open&sentiment=negative").await;
        assert!(page.contains("1–5 of 5 mentions"), "{page}");

        // A redirect target elsewhere is replaced by the overview.
        let r = s
            .post_form(
                &path,
                &[
                    ("csrf", csrf.as_str()),
                    ("back", "//evil.test/"),
                    ("status", "replied"),
                ],
            )
            .await;
        assert_eq!(r.headers()["location"], "/");
        let (_, v) = s.json(&format!("/api/mentions/{id}")).await;
        assert_eq!(v["triage"]["status"], "replied");
        assert_eq!(
            v["triage"]["assignee"], "sam@acme.test",
            "kept when not sent"
        );
        assert_eq!(v["triage_history"].as_array().unwrap().len(), 2);
    }
}

/// Two people editing one mention at once, each a different field (one assigns, one
/// notes, one sets the status): every change succeeds and none undoes another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_triage_edits_all_succeed_and_none_is_lost() {
    for db in testutil::all().await.unwrap() {
        let c = config();
        seed(&db.store, &c).await;
        let s = Server::start(db.store.clone(), c, None, true).await;
        let ids = negative_ids(&s).await;
        for round in 0..4 {
            let mut edits = Vec::new();
            for &id in &ids {
                for body in [
                    serde_json::json!({"assignee": format!("ann-{round}")}),
                    serde_json::json!({"note": format!("called back {round}")}),
                    serde_json::json!({"status": if round % 2 == 0 { "replied" } else { "resolved" }}),
                ] {
                    let (http, url) = (s.http.clone(), s.url(&format!("/api/mentions/{id}")));
                    edits.push(tokio::spawn(async move {
                        let r = http.patch(url).json(&body).send().await.unwrap();
                        (r.status(), r.text().await.unwrap())
                    }));
                }
            }
            for e in edits {
                let (status, text) = e.await.unwrap();
                assert_eq!(status, 200, "{}: {text}", db.label);
            }
            for &id in &ids {
                let (_, v) = s.json(&format!("/api/mentions/{id}")).await;
                let t = &v["triage"];
                assert_eq!(
                    (
                        t["assignee"].as_str(),
                        t["note"].as_str(),
                        t["status"].as_str()
                    ),
                    (
                        Some(format!("ann-{round}").as_str()),
                        Some(format!("called back {round}").as_str()),
                        Some(if round % 2 == 0 {
                            "replied"
                        } else {
                            "resolved"
                        })
                    ),
                    "{}: mention {id} after round {round}",
                    db.label
                );
                // The history's last entry is the state now.
                let last = v["triage_history"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap()
                    .clone();
                assert_eq!(
                    (&last["assignee"], &last["note"], &last["status"]),
                    (&t["assignee"], &t["note"], &t["status"]),
                    "{}",
                    db.label
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_acknowledged_and_snoozed_and_fetch_now_is_recorded() {
    for db in testutil::all().await.unwrap() {
        let c = config();
        seed(&db.store, &c).await;
        zmot::alerts::check_watch(&db.store, &c, "Acme Kettle", Utc::now())
            .await
            .unwrap();
        let s = Server::start(db.store.clone(), c, None, true).await;
        let (_, v) = s.json("/api/alerts?watch=Acme%20Kettle").await;
        let alerts = v["alerts"].as_array().unwrap().clone();
        assert!(!alerts.is_empty(), "{}: {v}", db.label);
        let id = alerts[0]["id"].as_i64().unwrap();
        assert!(alerts[0]["acknowledged_at"].is_null());

        let (_, page) = s.get("/watch/Acme%20Kettle").await;
        assert!(page.contains("Acknowledge"));
        let csrf = csrf_of(&page);
        let r = s
            .post_form(
                &format!("/alerts/{id}/acknowledge"),
                &[("csrf", csrf.as_str()), ("back", "/watch/Acme%20Kettle")],
            )
            .await;
        assert_eq!(r.status(), 303);
        let r = s
            .post_form(
                &format!("/alerts/{id}/snooze"),
                &[("csrf", csrf.as_str()), ("hours", "24")],
            )
            .await;
        assert_eq!(r.status(), 303);
        let (_, page) = s.get("/watch/Acme%20Kettle").await;
        assert!(page.contains("acknowledged 20"), "{page}");
        assert!(page.contains("snoozed until"), "{page}");

        let r = s
            .http
            .post(s.url(&format!("/api/alerts/{id}/snooze")))
            .json(&serde_json::json!({ "hours": 0 }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(
            v["snoozed_until"].is_null() && !v["acknowledged_at"].is_null(),
            "{v}"
        );

        // Fetch now: the source's job becomes due.
        let blog = db
            .store
            .sources(None)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "blog")
            .unwrap();
        let r = s
            .post_form(
                &format!("/sources/{}/fetch", blog.id),
                &[("csrf", csrf.as_str()), ("back", "/sources")],
            )
            .await;
        assert_eq!(r.status(), 303);
        let jobs = db.store.jobs().await.unwrap();
        let job = jobs
            .iter()
            .find(|j| j.name == zmot::store::fetch_job_name(blog.id))
            .expect("job recorded");
        assert!(job.next_run_at.unwrap() <= Utc::now());
        let (_, page) = s.get("/sources").await;
        assert!(
            !page.contains("<td>–</td><td>0</td><td><form"),
            "next run shown"
        );
        // A pushed source is not polled.
        let store_src = db
            .store
            .sources(None)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "store")
            .unwrap();
        let r = s
            .http
            .post(s.url(&format!("/api/sources/{}/fetch", store_src.id)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_json_shapes() {
    for db in testutil::all().await.unwrap() {
        let c = config();
        seed(&db.store, &c).await;
        let s = Server::start(db.store.clone(), c, None, true).await;

        let (status, v) = s.json("/api/watches").await;
        assert_eq!(status, 200);
        let watches = v["watches"].as_array().unwrap();
        assert_eq!(watches.len(), 2, "{v}");
        let acme = watches.iter().find(|w| w["name"] == "Acme Kettle").unwrap();
        assert_eq!(acme["health"], "red");
        assert!(acme["reasons"].as_array().unwrap().len() >= 2);
        assert_eq!(acme["buyer_view_threshold"], 4.3);
        let view = &acme["buyer_views"][0];
        assert!((view["average_rating"].as_f64().unwrap() - 3.2).abs() < 1e-9);
        assert_eq!(view["below_threshold"], true);
        assert_eq!(
            acme["this_week"]["mentions"].as_i64().unwrap()
                + acme["last_week"]["mentions"].as_i64().unwrap(),
            10
        );
        assert!(acme["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["source"] == "blog"));

        let (status, v) = s.json("/api/watches/Acme%20Kettle/trends?weeks=4").await;
        assert_eq!(status, 200);
        assert_eq!(v["weeks"].as_array().unwrap().len(), 4);
        assert_eq!(v["days"].as_array().unwrap().len(), 14);
        assert_eq!(v["health"], "red");
        let (status, v) = s.json("/api/watches/Acme%20Kettle/trends?weeks=0").await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );

        let id = acme["id"].as_i64().unwrap();
        let (status, v) = s.json(&format!("/api/watches/{id}/buyers-view")).await;
        assert_eq!(status, 200);
        assert_eq!(v["views"][0]["reviews"].as_array().unwrap().len(), 10);
        assert_eq!(v["threshold"], 4.3);

        let (_, v) = s.json("/api/mentions?watch=Acme%20Kettle&stars=5").await;
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 4);
        for key in [
            "id",
            "watch",
            "source",
            "text",
            "rating",
            "published_at",
            "url",
            "sentiment",
            "triage",
        ] {
            assert!(
                items[0].get(key).is_some(),
                "mention has {key}: {}",
                items[0]
            );
        }
        assert_eq!(items[0]["sentiment"]["label"], "positive");
        assert!(v["next_cursor"].is_null());

        let (status, v) = s.json("/api/sources").await;
        assert_eq!(status, 200);
        assert!(v["sources"].as_array().unwrap().len() >= 2);
        let (status, v) = s.json("/api/alerts").await;
        assert_eq!(status, 200);
        assert!(v["alerts"].is_array());
        let (status, v) = s.json("/api/openapi.json").await;
        assert_eq!(status, 200);
        assert!(v["paths"]["/api/mentions"]["get"].is_object());
        assert!(
            v["paths"]["/api/mentions"]["post"].is_object(),
            "push ingest listed"
        );

        // Triage by PATCH.
        let mid = negative_ids(&s).await[0];
        let r = s
            .http
            .patch(s.url(&format!("/api/mentions/{mid}")))
            .json(&serde_json::json!({ "status": "acknowledged", "assignee": "kim", "by": "bot" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["triage"]["status"], "acknowledged");
        let (_, v) = s.json(&format!("/api/watches/{id}/triage")).await;
        assert_eq!(v["summary"]["negative"], 6);
        assert_eq!(v["summary"]["open_negative"], 5);
        assert_eq!(v["summary"]["actioned"], 1);
        for (body, code) in [
            (serde_json::json!({ "status": "done" }), 400),
            (serde_json::json!({ "colour": "red" }), 400),
            (serde_json::json!({}), 400),
        ] {
            let r = s
                .http
                .patch(s.url(&format!("/api/mentions/{mid}")))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), code, "{body}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "bad_request");
        }
        let r = s
            .http
            .patch(s.url("/api/mentions/999999"))
            .json(&serde_json::json!({ "status": "resolved" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        // Oversized bodies are refused as too large (as push does), in the API's shape.
        for (method, path) in [
            (reqwest::Method::PATCH, format!("/api/mentions/{mid}")),
            (reqwest::Method::POST, format!("/api/mentions/{mid}/triage")),
            (reqwest::Method::POST, "/api/alerts/1/snooze".to_string()),
        ] {
            let r = s
                .http
                .request(method, s.url(&path))
                .header("content-type", "application/json")
                .body(format!("{{\"note\": \"{}\"}}", "x".repeat(200_000)))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 413, "{path}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "too_large", "{path}: {v}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_for_the_api_and_for_changes() {
    let db = testutil::sqlite().await.unwrap();
    let c = config();
    seed(&db.store, &c).await;
    let s = Server::start(db.store.clone(), c.clone(), Some("s3cret-token"), true).await;

    let (status, v) = s.json("/api/watches").await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    let r = s
        .http
        .get(s.url("/api/watches"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .http
        .get(s.url("/api/watches"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // On loopback the pages read without logging in, but changes need the session.
    let (status, page) = s.get("/watch/Acme%20Kettle").await;
    assert_eq!(status, 200);
    let csrf = csrf_of(&page);
    let id = db
        .store
        .find_mentions(&Default::default(), 0, 1)
        .await
        .unwrap()[0]
        .mention
        .id;
    let path = format!("/mentions/{id}/triage");
    let r = s
        .post_form(&path, &[("csrf", csrf.as_str()), ("status", "resolved")])
        .await;
    assert_eq!(r.status(), 401);

    let r = s
        .post_form(
            "/login",
            &[("csrf", csrf.as_str()), ("token", "wrong"), ("back", "/")],
        )
        .await;
    assert_eq!(r.status(), 401);
    let r = s
        .post_form(
            "/login",
            &[
                ("csrf", csrf.as_str()),
                ("token", "s3cret-token"),
                ("back", "/"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().unwrap().to_string();
    let r = s
        .http
        .post(s.url(&path))
        .header("Origin", &s.base)
        .header("Cookie", &session)
        .form(&[("csrf", csrf.as_str()), ("status", "resolved")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = s
        .http
        .get(s.url(&format!("/api/mentions/{id}")))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["triage"]["status"], "resolved");

    // Beyond loopback, pages need the login too.
    let s2 = Server::start(db.store.clone(), c.clone(), Some("s3cret-token"), false).await;
    let (status, _) = s2.get("/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, page) = s2.get("/login?next=/").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"type="password""#));
    // And beyond loopback with no token at all, nothing is served.
    let s3 = Server::start(db.store.clone(), c, None, false).await;
    assert_eq!(s3.get("/").await.0, 403);
    assert_eq!(s3.json("/api/watches").await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback_host_names_are_served() {
    let db = testutil::sqlite().await.unwrap();
    let c = config();
    seed(&db.store, &c).await;
    let s = Server::start(db.store.clone(), c, None, true).await;
    // A DNS-rebinding page would send its own host name.
    let r = s
        .http
        .get(s.url("/api/watches"))
        .header("Host", "attacker.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s
        .http
        .get(s.url("/"))
        .header("Host", "localhost:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_changes_from_another_site_are_refused_without_a_token() {
    let db = testutil::sqlite().await.unwrap();
    let c = config();
    seed(&db.store, &c).await;
    zmot::alerts::check_watch(&db.store, &c, "Acme Kettle", Utc::now())
        .await
        .unwrap();
    let blog = db
        .store
        .sources(None)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "blog")
        .unwrap();
    let s = Server::start(db.store.clone(), c, None, true).await;
    let (_, v) = s.json("/api/alerts?watch=Acme%20Kettle").await;
    let alert = v["alerts"][0]["id"].as_i64().unwrap();
    let mention = db
        .store
        .find_mentions(&Default::default(), 0, 1)
        .await
        .unwrap()[0]
        .mention
        .id;
    let changes = [
        format!("/api/alerts/{alert}/acknowledge"),
        format!("/api/alerts/{alert}/snooze"),
        format!("/api/sources/{}/fetch", blog.id),
        format!("/api/mentions/{mention}/triage"),
    ];
    // What a page elsewhere can make a browser send: a form post, with its Origin, or
    // only Sec-Fetch-Site, or Origin: null from a sandboxed frame.
    let foreign: [&[(&str, &str)]; 4] = [
        &[("Origin", "http://evil.example")],
        &[("Origin", "null")],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Referer", "http://evil.example/page")],
    ];
    for path in &changes {
        for headers in foreign {
            let mut req = s
                .http
                .post(s.url(path))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 403, "{path} {headers:?}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "cross_origin", "{v}");
        }
    }
    let r = s
        .http
        .patch(s.url(&format!("/api/mentions/{mention}")))
        .header("Origin", "http://evil.example")
        .json(&serde_json::json!({ "status": "ignored" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, v) = s.json("/api/alerts?watch=Acme%20Kettle").await;
    assert!(v["alerts"][0]["acknowledged_at"].is_null(), "{v}");
    let fetch_due = db.store.jobs().await.unwrap().into_iter().any(|j| {
        j.name == zmot::store::fetch_job_name(blog.id)
            && j.next_run_at.is_some_and(|t| t <= Utc::now())
    });
    assert!(!fetch_due);
    // Scripts send no Origin, and pages of this server send their own.
    let r = s
        .http
        .post(s.url(&format!("/api/alerts/{alert}/acknowledge")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .post(s.url(&format!("/api/alerts/{alert}/snooze")))
        .header("Origin", &s.base)
        .header("Sec-Fetch-Site", "same-origin")
        .json(&serde_json::json!({ "hours": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_a_bearer_may_come_from_anywhere_but_a_cookie_may_not() {
    let db = testutil::sqlite().await.unwrap();
    let c = config();
    seed(&db.store, &c).await;
    zmot::alerts::check_watch(&db.store, &c, "Acme Kettle", Utc::now())
        .await
        .unwrap();
    let s = Server::start(db.store.clone(), c, Some("s3cret-token"), true).await;
    let r = s
        .http
        .get(s.url("/api/alerts?watch=Acme%20Kettle"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let alert = v["alerts"][0]["id"].as_i64().unwrap();
    let path = format!("/api/alerts/{alert}/acknowledge");
    // A bearer token is not something a browser attaches by itself.
    let r = s
        .http
        .post(s.url(&path))
        .header("Origin", "http://tool.example")
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The session cookie is.
    let (_, page) = s.get("/watch/Acme%20Kettle").await;
    let csrf = csrf_of(&page);
    let r = s
        .post_form(
            "/login",
            &[
                ("csrf", csrf.as_str()),
                ("token", "s3cret-token"),
                ("back", "/"),
            ],
        )
        .await;
    let session = r.headers()["set-cookie"].to_str().unwrap();
    let session = session.split(';').next().unwrap().to_string();
    let r = s
        .http
        .post(s.url(&path))
        .header("Origin", "http://evil.example")
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s
        .http
        .post(s.url(&path))
        .header("Origin", &s.base)
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_only_loopback_host_names_are_served_too() {
    let db = testutil::sqlite().await.unwrap();
    let c = config();
    seed(&db.store, &c).await;
    let s = Server::start(db.store.clone(), c, Some("s3cret-token"), true).await;
    for path in ["/", "/mentions", "/api/watches"] {
        let r = s
            .http
            .get(s.url(path))
            .header("Host", "attacker.example:8080")
            .bearer_auth("s3cret-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = s
        .http
        .get(s.url("/mentions"))
        .header("Host", "localhost:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_the_search_term_is_read_as_text() {
    for db in testutil::all().await.unwrap() {
        let c = config();
        seed(&db.store, &c).await;
        let s = Server::start(db.store.clone(), c, None, true).await;
        let (status, page) = s.get("/mentions?q=%00").await;
        assert_eq!(status, 200, "{}: {page}", db.label);
        let (status, v) = s.json("/api/mentions?q=Bro%00ke").await;
        assert_eq!(status, 200, "{}: {v}", db.label);
        assert_eq!(v["items"].as_array().unwrap().len(), 5, "{v}");
    }
}

async fn login(s: &Server, csrf: &str, token: &str) -> reqwest::Response {
    s.post_form("/login", &[("csrf", csrf), ("token", token), ("back", "/")])
        .await
}

fn session_of(r: &reqwest::Response) -> String {
    let c = r.headers()["set-cookie"].to_str().unwrap();
    c.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_ends_the_session_on_the_server() {
    let db = testutil::sqlite().await.unwrap();
    let c = config();
    seed(&db.store, &c).await;
    let s = Server::start(db.store.clone(), c, Some("s3cret-token"), true).await;
    let (_, page) = s.get("/watch/Acme%20Kettle").await;
    let csrf = csrf_of(&page);
    let first = session_of(&login(&s, &csrf, "s3cret-token").await);
    let second = session_of(&login(&s, &csrf, "s3cret-token").await);
    assert_ne!(first, second, "a session per login");
    let id = db
        .store
        .find_mentions(&Default::default(), 0, 1)
        .await
        .unwrap()[0]
        .mention
        .id;
    let triage = |session: String, status: &'static str| {
        let s = &s;
        let csrf = csrf.clone();
        async move {
            s.http
                .post(s.url(&format!("/mentions/{id}/triage")))
                .header("Origin", &s.base)
                .header("Cookie", session)
                .form(&[("csrf", csrf.as_str()), ("status", status)])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(triage(first.clone(), "acknowledged").await, 303);
    let r = s
        .http
        .post(s.url("/logout"))
        .header("Origin", &s.base)
        .header("Cookie", &first)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // The old cookie no longer works, though a browser (or a thief) kept it.
    assert_eq!(triage(first, "resolved").await, 401);
    // Another login is not affected.
    assert_eq!(triage(second, "resolved").await, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_tokens_lock_the_login_for_a_while() {
    let db = testutil::sqlite().await.unwrap();
    let c = config();
    seed(&db.store, &c).await;
    let s = Server::start(db.store.clone(), c, Some("s3cret-token"), true).await;
    let (_, page) = s.get("/watch/Acme%20Kettle").await;
    let csrf = csrf_of(&page);
    for i in 0..5 {
        assert_eq!(login(&s, &csrf, "guess").await.status(), 401, "try {i}");
    }
    let started = std::time::Instant::now();
    let mut refused = 0;
    for _ in 0..50 {
        let r = login(&s, &csrf, "guess").await;
        if r.status() == 429 {
            refused += 1;
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    // 50 guesses answered quickly: nearly all refused without being checked.
    assert!(
        refused >= 45,
        "{refused} refused in {:?}",
        started.elapsed()
    );
    // Another client (address) is not locked out by this one's guesses.
    let other = s.reached_from_another_client();
    assert_eq!(login(&other, &csrf, "s3cret-token").await.status(), 303);
    // Locked holds for the right token too, and the bearer path is not locked.
    assert_eq!(login(&s, &csrf, "s3cret-token").await.status(), 429);
    let r = s
        .http
        .get(s.url("/api/watches"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A login through a reverse proxy on this machine: the proxy reports the client it
/// serves in `X-Forwarded-For`.
async fn login_forwarded_for(
    s: &Server,
    csrf: &str,
    token: &str,
    forwarded_for: &str,
) -> reqwest::Response {
    login_through_proxy(s, csrf, token, "X-Forwarded-For", forwarded_for).await
}

/// A login through a reverse proxy that names the client in `header`.
async fn login_through_proxy(
    s: &Server,
    csrf: &str,
    token: &str,
    header: &str,
    value: &str,
) -> reqwest::Response {
    s.http
        .post(s.url("/login"))
        .header("Origin", &s.base)
        .header(header, value)
        .form(&[("csrf", csrf), ("token", token), ("back", "/")])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_one_guesser_does_not_lock_out_the_others() {
    let db = testutil::sqlite().await.unwrap();
    let text = format!("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n{CONFIG}");
    let c = config::parse(&text, "test.toml", &[]).unwrap();
    seed(&db.store, &c).await;
    // The server sees every request come from 127.0.0.1, as from a proxy in front of it.
    let s = Server::start(db.store.clone(), c, Some("s3cret-token"), true).await;
    let (_, page) = s.get("/watch/Acme%20Kettle").await;
    let csrf = csrf_of(&page);
    let guesser = "203.0.113.5";
    for i in 0..5 {
        let r = login_forwarded_for(&s, &csrf, "guess", guesser).await;
        assert_eq!(r.status(), 401, "try {i}");
    }
    // The guesser is locked, the right token included.
    let r = login_forwarded_for(&s, &csrf, "s3cret-token", guesser).await;
    assert_eq!(r.status(), 429);
    // A colleague behind the same proxy still logs in.
    let r = login_forwarded_for(&s, &csrf, "s3cret-token", "203.0.113.6").await;
    assert_eq!(r.status(), 303);
    // The guesser cannot escape by writing another address before its own: the proxy
    // appends the real one, and that is the right-most untrusted entry.
    let r = login_forwarded_for(&s, &csrf, "s3cret-token", "203.0.113.7, 203.0.113.5").await;
    assert_eq!(r.status(), 429);
    // Nor by sending no address at all or junk: the proxy always appends the real one.
    let r = login_forwarded_for(&s, &csrf, "s3cret-token", "unknown, 203.0.113.5").await;
    assert_eq!(r.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_configured_to_send_the_standard_forwarded_header_is_read() {
    let db = testutil::sqlite().await.unwrap();
    let text = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\nclient_address_header = \"Forwarded\"\n{CONFIG}"
    );
    let c = config::parse(&text, "test.toml", &[]).unwrap();
    seed(&db.store, &c).await;
    let s = Server::start(db.store.clone(), c, Some("s3cret-token"), true).await;
    let (_, page) = s.get("/watch/Acme%20Kettle").await;
    let csrf = csrf_of(&page);
    let guesser = "for=203.0.113.5;proto=https";
    for i in 0..5 {
        let r = login_through_proxy(&s, &csrf, "guess", "Forwarded", guesser).await;
        assert_eq!(r.status(), 401, "try {i}");
    }
    let r = login_through_proxy(&s, &csrf, "s3cret-token", "Forwarded", guesser).await;
    assert_eq!(r.status(), 429);
    // A colleague behind the proxy, named in the same header, logs in.
    let colleague = "for=\"[2001:db8::6]:4711\";proto=https";
    let r = login_through_proxy(&s, &csrf, "s3cret-token", "Forwarded", colleague).await;
    assert_eq!(r.status(), 303);
    // The guesser's own claim, left of what the proxy appended, does not count, and
    // X-Forwarded-For is not read with this setting (the proxy passes it on as written).
    let forged = "for=203.0.113.7, for=203.0.113.5";
    let r = login_through_proxy(&s, &csrf, "s3cret-token", "Forwarded", forged).await;
    assert_eq!(r.status(), 429);
    let r = s
        .http
        .post(s.url("/login"))
        .header("Origin", &s.base)
        .header("Forwarded", guesser)
        .header("X-Forwarded-For", "203.0.113.8")
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", "s3cret-token"),
            ("back", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_for_header_from_an_untrusted_peer_is_ignored() {
    // No proxies trusted (the default), and a proxy trusted that is not the peer
    // (requests come from 127.0.0.1).
    for server_section in [
        "",
        "[server]\ntrusted_proxies = [\"127.0.0.2\", \"10.0.0.0/8\"]\n",
    ] {
        let db = testutil::sqlite().await.unwrap();
        let c = config::parse(&format!("{server_section}{CONFIG}"), "test.toml", &[]).unwrap();
        seed(&db.store, &c).await;
        let s = Server::start(db.store.clone(), c, Some("s3cret-token"), true).await;
        let (_, page) = s.get("/watch/Acme%20Kettle").await;
        let csrf = csrf_of(&page);
        for i in 0..5 {
            let r = login_forwarded_for(&s, &csrf, "guess", "203.0.113.5").await;
            assert_eq!(r.status(), 401, "{server_section:?} try {i}");
        }
        // A forged address does not escape the lock of the connection's.
        for forged in ["203.0.113.6", "10.1.2.3", "127.0.0.2"] {
            let r = login_forwarded_for(&s, &csrf, "s3cret-token", forged).await;
            assert_eq!(r.status(), 429, "{server_section:?} {forged}");
        }
    }
}

/// A watch on New York time, the general zone Paris: the pages show its times on New
/// York's clock, marked with the zone (03:30 UTC on 24 November is 22:30 EST on the
/// 23rd, 04:30 in Paris), read its date filters as New York days, and the API keeps RFC
/// 3339 times in UTC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_times_on_the_watchs_clock_and_the_api_in_utc() {
    use chrono::TimeZone;
    for db in testutil::all().await.unwrap() {
        let c = config::parse(
            "[general]\ntimezone = \"Europe/Paris\"\n\n\
             [[watch]]\nname = \"Gotham\"\ntimezone = \"America/New_York\"\n\n\
             [[watch.source]]\nname = \"blog\"\nkind = \"feed\"\nparams = { url = \"https://gotham.test/feed.xml\" }\n",
            "test.toml",
            &[],
        )
        .unwrap();
        db.store.sync_config(&c).await.unwrap();
        let w = db.store.watch_by_name("Gotham").await.unwrap().unwrap();
        let src = db.store.push_source(w.id, "store").await.unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 3, 30, 0).unwrap();
        db.store
            .ingest(
                &src,
                &[scored(
                    "n1",
                    "Lid broke at night",
                    1,
                    Label::Negative,
                    at,
                    true,
                )],
                Some(("test", "1")),
            )
            .await
            .unwrap();
        let blog = db
            .store
            .sources(Some(w.id))
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "blog")
            .unwrap();
        let before = Utc::now();
        let run = db.store.start_fetch_run(blog.id, "w1").await.unwrap();
        let after = Utc::now();
        db.store
            .fail_fetch(run, zmot::domain::FetchErrorKind::Blocked, "403")
            .await
            .unwrap();
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let run_shown = |page: &str| {
            [before, after].iter().any(|t| {
                page.contains(&t.with_timezone(&ny).format("%Y-%m-%d %H:%M %Z").to_string())
            })
        };
        let s = Server::start(db.store.clone(), c, None, true).await;

        let (status, page) = s.get("/mentions").await;
        assert_eq!(status, 200, "{}", db.label);
        assert!(
            page.contains("2026-11-23 22:30 EST"),
            "{}: {page}",
            db.label
        );
        // The owner's reply two hours later: after midnight in New York.
        assert!(page.contains("(2026-11-24 00:30 EST)"), "{page}");
        assert!(
            !page.contains("2026-11-24 04:30"),
            "not on Paris's clock: {page}"
        );
        let (_, v) = s.json("/api/mentions?watch=Gotham").await;
        let id = v["items"][0]["id"].as_i64().unwrap();
        let (_, page) = s.get(&format!("/mentions/{id}")).await;
        assert!(page.contains("2026-11-23 22:30 EST"), "{page}");
        let (_, page) = s.get("/watch/Gotham").await;
        assert!(page.contains("2026-11-23 22:30 EST"), "{page}");

        // Days are New York's: the mention is on the 23rd there (the 24th in Paris).
        for (query, found) in [
            ("from=2026-11-24", "0–0 of 0 mentions"),
            ("from=2026-11-23&to=2026-11-23", "1–1 of 1 mentions"),
        ] {
            let (_, page) = s.get(&format!("/mentions?watch=Gotham&{query}")).await;
            assert!(page.contains(found), "{query}: {page}");
        }
        let (_, v) = s.json("/api/mentions?watch=Gotham&until=2026-11-23").await;
        assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
        // The API stays machine-readable: RFC 3339 in UTC.
        assert_eq!(v["items"][0]["published_at"], "2026-11-24T03:30:00Z", "{v}");

        // The fetch run, on the overview and the sources page, on New York's clock too.
        let (_, page) = s.get("/").await;
        assert!(run_shown(&page), "{page}");
        let (_, page) = s.get("/sources").await;
        assert!(run_shown(&page), "{page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_with_two_decimals_is_shown_as_set() {
    let db = testutil::sqlite().await.unwrap();
    let text = CONFIG.replace(
        "competitors = \"kettles\"\nrecipients",
        "competitors = \"kettles\"\nalerts = { buyer_view_threshold = 4.25 }\nrecipients",
    );
    let c = config::parse(&text, "test.toml", &[]).unwrap();
    seed(&db.store, &c).await;
    let s = Server::start(db.store.clone(), c, None, true).await;
    let (_, overview) = s.get("/").await;
    assert!(overview.contains("vs 4.25</span>"), "{overview}");
    let (_, page) = s.get("/watch/Acme%20Kettle").await;
    assert!(page.contains("Buyer's view rating vs 4.25</h3>"), "{page}");
    assert!(page.contains(">4.25</text>"), "{page}");
    assert!(!page.contains("vs 4.2<"), "{page}");
}
