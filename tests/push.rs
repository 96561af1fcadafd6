//! `POST /api/mentions`: pushed mentions stored through the import code, token-protected,
//! bad records reported by index while the good ones are kept; on SQLite and PostgreSQL.

use std::sync::Arc;

use zmot::config;
use zmot::pipeline::Pipeline;
use zmot::testutil;

const CONFIG: &str = r#"
[[watch]]
name = "Acme"
"#;

async fn serve(pipeline: Pipeline, token: Option<&str>) -> String {
    let app = zmot::push::router(pipeline, token.map(String::from));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}/api/mentions")
}

#[tokio::test]
async fn pushed_mentions_are_stored_once_and_bad_ones_reported() {
    for db in testutil::all().await.unwrap() {
        let cfg = Arc::new(config::parse(CONFIG, "test.toml", &[]).unwrap());
        db.store.sync_config(&cfg).await.unwrap();
        let pipeline = Pipeline::new(db.store.clone(), cfg, None).unwrap();
        let url = serve(pipeline, Some("s3cret-token")).await;
        let client = reqwest::Client::new();
        let body = serde_json::json!({
            "watch": "Acme",
            "source": "helpdesk",
            "mentions": [
                {"id": "t-1", "text": "The app lost my notes", "rating": 2, "published_at": "2026-11-23T10:00:00Z"},
                {"id": "t-2", "text": "Support fixed it in an hour", "rating": 5, "published_at": "2026-11-23 11:30"},
                {"id": "t-3", "text": "Seven stars", "rating": 7, "published_at": "2026-11-23"},
                {"id": "t-4", "text": "no date"},
                "not an object"
            ]
        });
        let r = client
            .post(&url)
            .bearer_auth("s3cret-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", db.label);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["new"], 2, "{v}");
        let rejected: Vec<i64> = v["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["index"].as_i64().unwrap())
            .collect();
        assert_eq!(rejected, vec![2, 3, 4]);
        assert!(v["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("outside 1-5"));
        // The same push again changes nothing.
        let v: serde_json::Value = client
            .post(&url)
            .bearer_auth("s3cret-token")
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (v["new"].as_i64(), v["unchanged"].as_i64()),
            (Some(0), Some(2))
        );
        let w = db.store.watch_by_name("Acme").await.unwrap().unwrap();
        assert_eq!(db.store.count_mentions(Some(w.id)).await.unwrap(), 2);
        let sources = db.store.sources(Some(w.id)).await.unwrap();
        assert!(sources.iter().any(|s| s.name == "helpdesk"));

        // Wrong or missing token, bad JSON, unknown watch.
        let r = client
            .post(&url)
            .bearer_auth("nope")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized", "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
        let r = client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 401);
        // The scheme's case does not matter, as elsewhere in the API.
        let r = client
            .post(&url)
            .header("Authorization", "bearer s3cret-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = client
            .post(&url)
            .bearer_auth("s3cret-token")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = client
            .post(&url)
            .bearer_auth("s3cret-token")
            .json(&serde_json::json!({"watch": "Nobody", "mentions": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "not_found", "{v}");
    }
}

#[tokio::test]
async fn without_a_token_the_endpoint_is_off() {
    let db = testutil::sqlite().await.unwrap();
    let cfg = Arc::new(config::parse(CONFIG, "test.toml", &[]).unwrap());
    db.store.sync_config(&cfg).await.unwrap();
    let url = serve(Pipeline::new(db.store.clone(), cfg, None).unwrap(), None).await;
    let r = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"watch": "Acme", "mentions": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(db.store.count_mentions(None).await.unwrap(), 0);
}

#[tokio::test]
async fn push_and_the_dashboard_api_share_the_path_by_method() {
    let db = testutil::sqlite().await.unwrap();
    let cfg = Arc::new(config::parse(CONFIG, "test.toml", &[]).unwrap());
    db.store.sync_config(&cfg).await.unwrap();
    let pipeline = Pipeline::new(db.store.clone(), cfg.clone(), None).unwrap();
    // The same composition as `zmot run` and `zmot serve`.
    let health = zmot::health::router(db.store.clone(), Default::default());
    let app = zmot::web::app(
        zmot::web::WebState::with_access(db.store.clone(), cfg, Some("tok".into()), true),
        health.merge(zmot::push::router(pipeline, Some("tok".into()))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let url = format!("http://{addr}/api/mentions");
    let client = reqwest::Client::new();
    let body = serde_json::json!({"watch": "Acme", "mentions": [
        {"id": "x", "text": "Pushed and listed", "published_at": "2026-11-23T10:00:00Z"}
    ]});
    let r = client
        .post(&url)
        .bearer_auth("tok")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(&url).bearer_auth("tok").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("Pushed and listed"), "{text}");

    // Bound to loopback, every route refuses a foreign Host name (DNS rebinding), the
    // health and push routes included; /healthz needs no token.
    let base = format!("http://{addr}");
    for path in ["/healthz", "/metrics", "/api/mentions", "/"] {
        let r = client
            .get(format!("{base}{path}"))
            .header("Host", format!("attacker.example:{}", addr.port()))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = client
        .post(&url)
        .header("Host", "attacker.example")
        .bearer_auth("tok")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    for path in ["/healthz", "/metrics"] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_nul_in_pushed_text_is_dropped_and_store_errors_are_not_echoed() {
    for db in testutil::all().await.unwrap() {
        let cfg = Arc::new(config::parse(CONFIG, "test.toml", &[]).unwrap());
        db.store.sync_config(&cfg).await.unwrap();
        let pipeline = Pipeline::new(db.store.clone(), cfg, None).unwrap();
        let url = serve(pipeline, Some("tok")).await;
        let client = reqwest::Client::new();
        let body = serde_json::json!({"watch": "Acme", "mentions": [
            {"id": "a", "text": "fine", "published_at": "2026-11-23T10:00:00Z"},
            {"id": "b", "text": "nul \u{0}", "published_at": "2026-11-23T10:00:00Z"},
            {"id": "c", "text": "also fine", "published_at": "2026-11-23T10:00:00Z"}
        ]});
        let r = client
            .post(&url)
            .bearer_auth("tok")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{}: {v}", db.label);
        assert_eq!(v["new"], 3, "{v}");
        assert_eq!(db.store.count_mentions(None).await.unwrap(), 3);
        let body: String = sqlx::Row::get(
            &sqlx::query("SELECT body FROM mentions WHERE external_id = 'b'")
                .fetch_one(db.store.pool())
                .await
                .unwrap(),
            "body",
        );
        assert_eq!(body, "nul ", "{}", db.label);
    }

    // A store that fails: the answer says so without quoting the database.
    let db = testutil::sqlite().await.unwrap();
    let cfg = Arc::new(config::parse(CONFIG, "test.toml", &[]).unwrap());
    db.store.sync_config(&cfg).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON mentions BEGIN SELECT RAISE(ABORT, 'secret detail'); END",
    )
    .execute(db.store.pool())
    .await
    .unwrap();
    let url = serve(
        Pipeline::new(db.store.clone(), cfg, None).unwrap(),
        Some("tok"),
    )
    .await;
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth("tok")
        .json(&serde_json::json!({"watch": "Acme", "mentions": [
            {"id": "a", "text": "fine", "published_at": "2026-11-23T10:00:00Z"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("secret detail") && !text.contains("INSERT"),
        "{text}"
    );
    // The run is closed as failed, not left running.
    let w = db.store.watch_by_name("Acme").await.unwrap().unwrap();
    let src = db.store.sources(Some(w.id)).await.unwrap()[0].clone();
    let runs = db.store.fetch_runs(src.id, 5).await.unwrap();
    assert_eq!(runs[0].status, "failed");
}

/// A bad `source` is the sender's mistake, answered with a 400 that says so (a 503 would
/// tell a webhook relay to retry the same request forever), and stores nothing.
#[tokio::test]
async fn a_bad_source_name_is_a_400_not_a_store_failure() {
    const WITH_FEED: &str = r#"
[[watch]]
name = "Acme"

[[watch.source]]
name = "blog"
kind = "feed"
params = { url = "https://acme.test/feed.xml" }
"#;
    for db in testutil::all().await.unwrap() {
        let cfg = Arc::new(config::parse(WITH_FEED, "test.toml", &[]).unwrap());
        db.store.sync_config(&cfg).await.unwrap();
        let url = serve(
            Pipeline::new(db.store.clone(), cfg, None).unwrap(),
            Some("tok"),
        )
        .await;
        let client = reqwest::Client::new();
        let too_long = "s".repeat(201);
        for (source, expected) in [
            (serde_json::json!(""), "empty"),
            (serde_json::json!("  "), "empty"),
            (serde_json::json!("BLOG"), "configured feed source"),
            (serde_json::json!(5), "must be a string"),
            (serde_json::json!(too_long), "longer than 200"),
        ] {
            let r = client
                .post(&url)
                .bearer_auth("tok")
                .json(
                    &serde_json::json!({"watch": "Acme", "source": source, "mentions": [
                        {"id": "a", "text": "fine", "published_at": "2026-11-23T10:00:00Z"}
                    ]}),
                )
                .send()
                .await
                .unwrap();
            let status = r.status();
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(status, 400, "{}: {source}: {v}", db.label);
            assert_eq!(v["error"]["code"], "bad_request", "{v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains(expected), "{source}: {message}");
        }
        assert_eq!(db.store.count_mentions(None).await.unwrap(), 0);
        let w = db.store.watch_by_name("Acme").await.unwrap().unwrap();
        let sources = db.store.sources(Some(w.id)).await.unwrap();
        assert_eq!(sources.len(), 1, "no source was added: {sources:?}");
        // Without `source` (or null) the mentions go to the source named "push".
        let r = client
            .post(&url)
            .bearer_auth("tok")
            .json(
                &serde_json::json!({"watch": "Acme", "source": null, "mentions": [
                    {"id": "a", "text": "fine", "published_at": "2026-11-23T10:00:00Z"}
                ]}),
            )
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            (v["source"].as_str(), v["new"].as_i64()),
            (Some("push"), Some(1)),
            "{v}"
        );
    }
}

/// A record whose id comes again later in the same request gives way to the later one,
/// as in `zmot import`, and the answer says so: every record sent is accounted for.
#[tokio::test]
async fn repeats_within_a_request_are_reported_and_the_last_is_kept() {
    for db in testutil::all().await.unwrap() {
        let cfg = Arc::new(config::parse(CONFIG, "test.toml", &[]).unwrap());
        db.store.sync_config(&cfg).await.unwrap();
        let url = serve(
            Pipeline::new(db.store.clone(), cfg, None).unwrap(),
            Some("tok"),
        )
        .await;
        let body = serde_json::json!({"watch": "Acme", "mentions": [
            {"id": "a", "text": "first draft", "published_at": "2026-11-23T10:00:00Z"},
            {"id": "b", "text": "other", "published_at": "2026-11-23T10:00:00Z"},
            {"id": "a", "text": "final words", "published_at": "2026-11-23T10:00:00Z"},
            {"id": "c", "rating": 9, "text": "bad", "published_at": "2026-11-23T10:00:00Z"}
        ]});
        let v: serde_json::Value = reqwest::Client::new()
            .post(&url)
            .bearer_auth("tok")
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["new"], 2, "{}: {v}", db.label);
        assert_eq!(
            v["repeated"],
            serde_json::json!([{"index": 0, "kept": 2}]),
            "{v}"
        );
        assert_eq!(v["rejected"].as_array().unwrap().len(), 1, "{v}");
        let stored: String = sqlx::Row::get(
            &sqlx::query("SELECT body FROM mentions WHERE external_id = 'a'")
                .fetch_one(db.store.pool())
                .await
                .unwrap(),
            "body",
        );
        assert_eq!(stored, "final words");
    }
}

#[tokio::test]
async fn a_pushed_date_without_a_time_is_a_day_on_the_watch_s_clock() {
    for db in testutil::all().await.unwrap() {
        // Acme watched on New York time, then taken out of the file: pushes to it still
        // read a bare date on the clock it last had; one configured watch on Tokyo's.
        let first = "[[watch]]\nname = \"Acme\"\ntimezone = \"America/New_York\"\n";
        db.store
            .sync_config(&config::parse(first, "t.toml", &[]).unwrap())
            .await
            .unwrap();
        let now = "[[watch]]\nname = \"Tokyo Shop\"\ntimezone = \"Asia/Tokyo\"\n";
        let cfg = Arc::new(config::parse(now, "t.toml", &[]).unwrap());
        db.store.sync_config(&cfg).await.unwrap();
        let pipeline = Pipeline::new(db.store.clone(), cfg, None).unwrap();
        let url = serve(pipeline, Some("tok")).await;
        let client = reqwest::Client::new();
        for (watch, id, expected) in [
            ("acme", "a-1", "2026-11-23T05:00:00+00:00"),
            ("Tokyo Shop", "t-1", "2026-11-22T15:00:00+00:00"),
        ] {
            let body = serde_json::json!({"watch": watch, "mentions": [
                {"id": id, "text": "Dated the 23rd", "published_at": "2026-11-23"}
            ]});
            let r = client
                .post(&url)
                .bearer_auth("tok")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{watch} {}", db.label);
            let stored = db
                .store
                .mentions(&zmot::store::MentionQuery::default())
                .await
                .unwrap();
            let m = stored
                .iter()
                .find(|m| m.mention.external_id == id)
                .unwrap_or_else(|| panic!("{id} not stored"));
            assert_eq!(
                m.mention.published_at.to_rfc3339(),
                expected,
                "{watch} {}",
                db.label
            );
        }
    }
}
