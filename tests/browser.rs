//! The dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `.ci/run`) driven through chromedriver's WebDriver
//! HTTP API on 127.0.0.1. It loads the overview and a watch page on a seeded store,
//! checks what is visible (health colour, a chart, the 4.3 line, a review's text), marks
//! a mention resolved by filling in and submitting the page's form, checks the store,
//! and saves screenshots to `target/browser-screenshots/`.
//!
//! Chromium missing is a failure, not a skip: CI installs it. Set `ZMOT_CHROMEDRIVER`
//! and `ZMOT_CHROMIUM` to use binaries elsewhere than `/usr/bin`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use zmot::config::{self, Config};
use zmot::domain::{Engagement, Label, Mention, ScoredMention, Sentiment};
use zmot::store::{MentionFilter, Store, TriageStatus};
use zmot::testutil;
use zmot::web::{router, WebState};

const CONFIG: &str = r#"
[[watch]]
name = "Acme Kettle"
competitors = "kettles"

[[watch]]
name = "Rival"
competitors = "kettles"
"#;

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn scored(id: &str, text: &str, rating: u8, label: Label, at: DateTime<Utc>) -> ScoredMention {
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
            owner_reply: None,
            owner_reply_at: None,
            extra: None,
        },
        sentiment: Some(Sentiment {
            label,
            score: if label == Label::Negative { -0.8 } else { 0.8 },
            confidence: 0.9,
        }),
    }
}

/// Four good reviews then six bad ones on a pushed "store" source: a buyer's view of
/// 3.2 stars, under the 4.3 line, so the watch is red.
async fn seed(store: &Store, c: &Config) {
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
        ));
    }
    for i in 0..6 {
        batch.push(scored(
            &format!("b{i}"),
            &format!("The lid cracked on day {i}"),
            2,
            Label::Negative,
            now - Duration::hours(50 - i),
        ));
    }
    store
        .ingest(&src, &batch, Some(("test", "1")))
        .await
        .unwrap();
}

fn binary(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} is missing: install the Debian packages `chromium` and `chromium-driver` \
         (.ci/run does), or point ${var} at it",
        path.display()
    );
    path
}

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(http: &reqwest::Client) -> Driver {
        let exe = binary("ZMOT_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(exe)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/status", d.base)).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        break;
                    }
                }
            }
            assert!(
                started.elapsed() < StdDuration::from_secs(15),
                "chromedriver did not get ready on {}",
                d.base
            );
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        }
        d
    }
}

/// One browser session.
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn open(http: reqwest::Client, driver: &Driver) -> Browser {
        let chromium = binary("ZMOT_CHROMIUM", "/usr/bin/chromium");
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.to_string_lossy(),
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--no-first-run",
                        "--disable-extensions", "--window-size=1280,1600",
                    ],
                },
            }},
        });
        let r = http
            .post(format!("{}/session", driver.base))
            .json(&caps)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {v}"))
            .to_string();
        Browser {
            http,
            session: format!("{}/session/{id}", driver.base),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e[ELEMENT]
                    .as_str()
                    .unwrap_or_else(|| panic!("not an element: {e}"))
                    .to_string()
            })
            .collect()
    }

    async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches `{css}`"))
    }

    /// The rendered, visible text of an element (hidden parts left out).
    async fn text(&self, el: &str) -> String {
        let v = self
            .call(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await;
        v.as_str().unwrap().to_string()
    }

    async fn css(&self, el: &str, property: &str) -> String {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{el}/css/{property}"),
                None,
            )
            .await;
        v.as_str().unwrap().to_string()
    }

    async fn displayed(&self, el: &str) -> bool {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{el}/displayed"),
            None,
        )
        .await
            == true
    }

    async fn click(&self, el: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{el}/click"), None)
            .await;
    }

    async fn type_into(&self, el: &str, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// Saves a PNG of the viewport to `target/browser-screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64_decode(v.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// `target/browser-screenshots/` (under `CARGO_TARGET_DIR` when set).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("browser-screenshots")
}

/// Standard base64 (WebDriver's screenshot encoding).
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = s.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= d << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let started = Instant::now();
    let db = testutil::sqlite().await.unwrap();
    let c = config::parse(CONFIG, "test.toml", &[]).unwrap();
    seed(&db.store, &c).await;
    let state = WebState::with_access(db.store.clone(), Arc::new(c), None, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, router(state)).await.unwrap();
    });

    let http = reqwest::Client::builder()
        .timeout(StdDuration::from_secs(30))
        .build()
        .unwrap();
    let driver = Driver::start(&http).await;
    let b = Browser::open(http, &driver).await;

    // Overview: Acme Kettle's card is red, drawn with the stylesheet's red border.
    b.goto(&format!("{base}/")).await;
    let card = b.find("article.card.red").await;
    let card_text = b.text(&card).await;
    assert!(card_text.contains("Acme Kettle"), "{card_text}");
    assert!(card_text.contains("RED"), "the health badge: {card_text}");
    assert!(card_text.contains("vs 4.3"), "the 4.3 line: {card_text}");
    assert!(card_text.contains("3.20★"), "the buyer's view: {card_text}");
    // The stylesheet's --red (#a61b1b), as Chromium computes it: rgb() or rgba().
    let red = |c: &str| c.contains("(166, 27, 27");
    let border = b.css(&card, "border-top-color").await;
    assert!(red(&border), "the card's top border is red: {border}");
    let badge = b.find("article.card.red .badge.red").await;
    let colour = b.css(&badge, "color").await;
    assert!(red(&colour), "the health badge is red: {colour}");
    let shot = b.screenshot("overview-1280").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);

    // The watch page: charts as inline SVG, the threshold line at 4.3, review texts.
    b.goto(&format!("{base}/watch/Acme%20Kettle")).await;
    let heading = b.text(&b.find("h1").await).await;
    assert!(
        heading.contains("Acme Kettle") && heading.contains("RED"),
        "{heading}"
    );
    let charts = b.find_all("figure.chart svg").await;
    assert!(charts.len() >= 3, "{} charts", charts.len());
    assert!(b.displayed(&charts[0]).await, "the weekly chart is visible");
    let line = b.find("#chart-rating svg g.threshold").await;
    assert_eq!(b.text(&line).await.trim(), "4.3");
    let bar_line = b.find("#chart-buyer-view svg g.threshold").await;
    assert_eq!(b.text(&bar_line).await.trim(), "4.3");
    // The buyer's view week by week, against the same line.
    let history = b.find("figure.buyer-view-history svg g.threshold").await;
    assert_eq!(b.text(&history).await.trim(), "4.3");
    // What drives negativity: the six reviews' cracked lid, new this week.
    let drivers = b.text(&b.find("table.drivers").await).await;
    assert!(drivers.contains("cracked"), "{drivers}");
    let id = db
        .store
        .find_mentions(
            &MentionFilter {
                text: Some("day 5".into()),
                ..Default::default()
            },
            0,
            1,
        )
        .await
        .unwrap()[0]
        .mention
        .id;
    let m = format!("#m{id}");
    let target = b.find(&format!("article.mention{m}")).await;
    let mention_text = b.text(&target).await;
    assert!(
        mention_text.contains("The lid cracked on day 5") && mention_text.contains("open"),
        "{mention_text}"
    );
    b.screenshot("watch-1280").await;

    // Mark it resolved through its form: pick the status, fill in who, submit.
    b.click(
        &b.find(&format!(
            "{m} form.triage select[name=status] option[value=resolved]"
        ))
        .await,
    )
    .await;
    b.type_into(
        &b.find(&format!("{m} form.triage input[name=assignee]"))
            .await,
        "sam@acme.test",
    )
    .await;
    b.type_into(
        &b.find(&format!("{m} form.triage input[name=note]")).await,
        "Replacement lid sent",
    )
    .await;
    b.type_into(
        &b.find(&format!("{m} form.triage input[name=by]")).await,
        "Sam",
    )
    .await;
    b.click(
        &b.find(&format!("{m} form.triage button[type=submit]"))
            .await,
    )
    .await;
    // POST, then back to the watch page.
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let handled = b.find_all("details.handled").await;
        if !handled.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the form did not come back");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert!(
        b.current_url().await.ends_with("/watch/Acme%20Kettle"),
        "{}",
        b.current_url().await
    );
    assert!(
        b.find_all(&format!("details.handled {m}")).await.len() == 1
            && b.find_all(&format!("article{m}")).await.len() == 1,
        "resolved mentions move to the handled list"
    );
    let open = b.text(&b.find(".figure.open-negative b").await).await;
    assert_eq!(open, "5", "five negatives left open");

    // Persisted in the store.
    let m = db.store.triaged_mention(id).await.unwrap().unwrap();
    let t = m.triage.expect("triage stored");
    assert_eq!(t.status, TriageStatus::Resolved);
    assert_eq!(t.assignee.as_deref(), Some("sam@acme.test"));
    assert_eq!(t.note.as_deref(), Some("Replacement lid sent"));
    assert_eq!(t.updated_by.as_deref(), Some("Sam"));
    let history = db.store.triage_history(id).await.unwrap();
    assert_eq!(history.len(), 1);

    // The mention's own page, rendered by the browser, shows the change and who made it.
    b.goto(&format!("{base}/mentions/{id}")).await;
    let page = b.text(&b.find("main").await).await;
    assert!(page.contains("resolved"), "{page}");
    assert!(page.contains("assigned to sam@acme.test"), "{page}");
    assert!(page.contains("Sam"), "the history names who: {page}");
    b.screenshot("mention-resolved-1280").await;

    // On a phone: the overview still shows the card.
    b.resize(375, 812).await;
    b.goto(&format!("{base}/")).await;
    let card = b.find("article.card.red").await;
    assert!(b.displayed(&card).await);
    b.screenshot("overview-375").await;
    b.goto(&format!("{base}/watch/Acme%20Kettle")).await;
    b.screenshot("watch-375").await;

    b.close().await;
    drop(driver);
    assert!(
        started.elapsed() < StdDuration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
