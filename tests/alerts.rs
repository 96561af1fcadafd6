//! Alert rules on crafted mention histories, alert hygiene over simulated days, and
//! alert emails delivered to a real SMTP server on 127.0.0.1, on SQLite and PostgreSQL.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use zmot::alerts::check_watch;
use zmot::config::{self, Config};
use zmot::domain::{Engagement, Label, Mention, ScoredMention, Sentiment};
use zmot::notify::{self, Mailer};
use zmot::store::{SourceRow, Store};
use zmot::testutil;

use support::smtp::SmtpServer;

const CONFIG: &str = r#"
[email]
from = "zmot <alerts@acme.test>"

[[watch]]
name = "Acme"
recipients = ["lead@acme.test", "support@acme.test"]

[[watch]]
name = "Quiet"
recipients = ["quiet@acme.test"]
[watch.alerts]
disabled = ["negative_spike", "sentiment_drop", "keyword", "severe_mention"]
"#;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn config_with(extra: &str) -> Config {
    config::parse(&format!("{CONFIG}{extra}"), "test.toml", &[]).unwrap()
}

struct M {
    id: String,
    text: String,
    rating: Option<u8>,
    label: Label,
    score: f32,
    at: DateTime<Utc>,
    likes: i64,
    reply: Option<String>,
    author: String,
}

fn m(id: &str, text: &str, rating: Option<u8>, label: Label, score: f32, at: DateTime<Utc>) -> M {
    M {
        id: id.into(),
        text: text.into(),
        rating,
        label,
        score,
        at,
        likes: 0,
        reply: None,
        author: "Pat".into(),
    }
}

impl M {
    fn likes(mut self, n: i64) -> M {
        self.likes = n;
        self
    }
    fn by(mut self, author: &str) -> M {
        self.author = author.into();
        self
    }
    fn scored(&self) -> ScoredMention {
        ScoredMention {
            mention: Mention {
                external_id: self.id.clone(),
                url: Some(format!("https://reviews.test/{}", self.id)),
                author: Some(self.author.clone()),
                title: None,
                text: self.text.clone(),
                rating: self.rating,
                engagement: Engagement {
                    likes: self.likes,
                    replies: 0,
                    reposts: 0,
                },
                language: Some("en".into()),
                published_at: self.at,
                owner_reply: self.reply.clone(),
                owner_reply_at: self.reply.as_ref().map(|_| self.at + Duration::hours(3)),
                extra: None,
            },
            sentiment: Some(Sentiment {
                label: self.label,
                score: self.score,
                confidence: 0.9,
            }),
        }
    }
}

async fn source(store: &Store, config: &Config, watch: &str, name: &str) -> SourceRow {
    store.sync_config(config).await.unwrap();
    let w = store.watch_by_name(watch).await.unwrap().unwrap();
    store.push_source(w.id, name).await.unwrap()
}

async fn put(store: &Store, src: &SourceRow, items: &[M]) {
    let batch: Vec<_> = items.iter().map(M::scored).collect();
    store
        .ingest(src, &batch, Some(("test", "1")))
        .await
        .unwrap();
}

async fn open_rules(store: &Store, watch: &str) -> Vec<String> {
    let w = store.watch_by_name(watch).await.unwrap().unwrap();
    let mut r: Vec<String> = store
        .open_alerts(w.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.condition_key)
        .collect();
    r.sort();
    r
}

fn outbox_count(store: &Store) -> i64 {
    futures_lite(store.outbox_stats()).queued
}

/// Blocks on a future from inside a test's async context without a second runtime.
fn futures_lite<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).unwrap()
}

/// The subject and plain text of a queued email.
async fn queued_email(store: &Store, id: i64) -> (String, String) {
    // A lease of 1 ms: reading it does not keep a sender from it.
    let all = store.claim_emails("reader", 1000, 1).await.unwrap();
    let email = all.iter().find(|e| e.id == id).expect("queued");
    let msg = mail_parser::MessageParser::default()
        .parse(email.message.as_bytes())
        .expect("parses");
    (
        msg.subject().unwrap_or_default().to_string(),
        msg.body_text(0).unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyer_view_rating_fires_stays_quiet_and_clears() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let src = source(store, &c, "Quiet", "store").await;
        let t = now();
        // Ten good reviews: nothing to say.
        let good: Vec<M> = (0..10)
            .map(|i| {
                m(
                    &format!("g{i}"),
                    "Lovely",
                    Some(5),
                    Label::Positive,
                    0.9,
                    t - Duration::days(20 - i),
                )
            })
            .collect();
        put(store, &src, &good).await;
        let r = check_watch(store, &c, "Quiet", t).await.unwrap();
        assert_eq!(r.opened, 0, "{}", db.label);

        // Six recent bad ones push the ten most recent under 4.3 (4 x 5 + 6 x 2 = 3.2).
        let bad: Vec<M> = (0..6)
            .map(|i| {
                m(
                    &format!("b{i}"),
                    "Leaks everywhere",
                    Some(2),
                    Label::Negative,
                    -0.8,
                    t - Duration::days(5 - i),
                )
            })
            .collect();
        put(store, &src, &bad).await;
        let r = check_watch(store, &c, "Quiet", t).await.unwrap();
        assert_eq!((r.opened, r.email_id.is_some()), (1, true), "{}", db.label);
        let w = store.watch_by_name("Quiet").await.unwrap().unwrap();
        let open = store.open_alerts(w.id).await.unwrap();
        assert_eq!(open[0].rule, "buyer_view_rating");
        assert_eq!(open[0].severity, "red");
        assert!(open[0].title.contains("3.2 stars"), "{}", open[0].title);
        assert_eq!(open[0].evidence.len(), 5);

        // Eight fresh five-star reviews: the view is 5,5,5,5,5,5,5,5,2,2 = 4.4. Clears.
        let recovery: Vec<M> = (0..8)
            .map(|i| {
                m(
                    &format!("r{i}"),
                    "Fixed, great now",
                    Some(5),
                    Label::Positive,
                    0.8,
                    t + Duration::hours(i + 1),
                )
            })
            .collect();
        put(store, &src, &recovery).await;
        let later = t + Duration::hours(10);
        let r = check_watch(store, &c, "Quiet", later).await.unwrap();
        assert_eq!(
            (r.resolved, r.email_id.is_some()),
            (1, true),
            "{}",
            db.label
        );
        assert!(open_rules(store, "Quiet").await.is_empty());
        // The resolved email says "resolved" once, and what buyers see now.
        let (subject, text) = queued_email(store, r.email_id.unwrap()).await;
        assert_eq!(
            subject, "[zmot] Quiet RESOLVED: store: buyers now see 4.4 stars, 4.3 or more again",
            "{}",
            db.label
        );
        assert!(
            text.contains("store: buyers now see 4.4 stars, 4.3 or more again"),
            "{text}"
        );
        assert!(
            text.contains("It was: store: buyers now see 3.2 stars"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_spike_against_its_own_baseline() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let src = source(store, &c, "Acme", "posts").await;
        let t = now();
        // One negative post a day for the 28 days before the window.
        let base: Vec<M> = (1..=28)
            .map(|d| {
                m(
                    &format!("n{d}"),
                    "meh, slow again",
                    None,
                    Label::Negative,
                    -0.4,
                    t - Duration::hours(24 * d + 5),
                )
            })
            .collect();
        put(store, &src, &base).await;
        // Three today: within the usual.
        let few: Vec<M> = (0..3)
            .map(|i| {
                m(
                    &format!("f{i}"),
                    "app is slow",
                    None,
                    Label::Negative,
                    -0.4,
                    t - Duration::hours(i + 1),
                )
            })
            .collect();
        put(store, &src, &few).await;
        check_watch(store, &c, "Acme", t).await.unwrap();
        assert!(
            !open_rules(store, "Acme")
                .await
                .contains(&"negative_spike".to_string()),
            "{}",
            db.label
        );
        // Nine: P(X >= 9 | λ = 1) is about 1e-6: a spike.
        let more: Vec<M> = (3..9)
            .map(|i| {
                m(
                    &format!("f{i}"),
                    "app is down",
                    None,
                    Label::Negative,
                    -0.5,
                    t - Duration::minutes(10 * i),
                )
            })
            .collect();
        put(store, &src, &more).await;
        check_watch(store, &c, "Acme", t).await.unwrap();
        let w = store.watch_by_name("Acme").await.unwrap().unwrap();
        let spike = store
            .open_alerts(w.id)
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.rule == "negative_spike")
            .unwrap_or_else(|| panic!("no spike on {}", db.label));
        assert_eq!(spike.severity, "red");
        assert!(
            spike.title.starts_with("9 negative mentions in 24 h"),
            "{}",
            spike.title
        );
        // A day later the window is quiet again: resolved.
        check_watch(store, &c, "Acme", t + Duration::hours(30))
            .await
            .unwrap();
        assert!(!open_rules(store, "Acme")
            .await
            .contains(&"negative_spike".to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn severe_mentions_need_visibility_and_clear_when_answered() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let src = source(store, &c, "Acme", "posts").await;
        let t = now();
        put(
            store,
            &src,
            &[
                // Very negative but seen by nobody on a low-weight source: no alert.
                m(
                    "quiet",
                    "This is the worst kettle ever made",
                    None,
                    Label::Negative,
                    -0.9,
                    t - Duration::hours(2),
                )
                .likes(1),
                // Very negative and widely shared: alert.
                m(
                    "loud",
                    "Worst purchase of my life, it caught fire",
                    None,
                    Label::Negative,
                    -0.95,
                    t - Duration::hours(1),
                )
                .likes(250),
                // Widely shared but mild: no alert.
                m(
                    "mild",
                    "A bit noisy but fine",
                    None,
                    Label::Neutral,
                    -0.1,
                    t - Duration::hours(1),
                )
                .likes(300),
            ],
        )
        .await;
        check_watch(store, &c, "Acme", t).await.unwrap();
        let open = open_rules(store, "Acme").await;
        let severe: Vec<_> = open
            .iter()
            .filter(|k| k.starts_with("severe_mention"))
            .collect();
        assert_eq!(severe.len(), 1, "{open:?} on {}", db.label);
        // Widely shared and very negative, without stars: red (act now).
        let w = store.watch_by_name("Acme").await.unwrap().unwrap();
        let alert = store
            .open_alerts(w.id)
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.rule == "severe_mention")
            .unwrap();
        assert_eq!(alert.severity, "red", "{} on {}", alert.title, db.label);
        // The business answers: the condition clears (quietly: no email for it).
        let mut answered = m(
            "loud",
            "Worst purchase of my life, it caught fire",
            None,
            Label::Negative,
            -0.95,
            t - Duration::hours(1),
        )
        .likes(250);
        answered.reply = Some("We are so sorry, we have sent a replacement.".into());
        put(store, &src, &[answered]).await;
        let before = outbox_count(store);
        let r = check_watch(store, &c, "Acme", t + Duration::hours(1))
            .await
            .unwrap();
        assert_eq!(r.resolved, 1);
        assert_eq!(
            outbox_count(store),
            before,
            "no email for a severe mention answered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentiment_drop_and_crisis_keywords() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let src = source(store, &c, "Acme", "posts").await;
        let t = now();
        let mut items = Vec::new();
        for d in 8..36 {
            items.push(m(
                &format!("old{d}"),
                "works well",
                None,
                Label::Positive,
                0.5,
                t - Duration::days(d),
            ));
        }
        put(store, &src, &items).await;
        check_watch(store, &c, "Acme", t).await.unwrap();
        assert!(open_rules(store, "Acme").await.is_empty(), "{}", db.label);

        let week: Vec<M> = (0..12)
            .map(|i| {
                m(
                    &format!("wk{i}"),
                    "it stopped working",
                    None,
                    Label::Negative,
                    -0.3,
                    t - Duration::hours(6 * i + 1),
                )
            })
            .collect();
        put(store, &src, &week).await;
        put(
            store,
            &src,
            &[m(
                "kw",
                "I was promised a Refund two weeks ago. Still nothing.",
                None,
                Label::Negative,
                -0.6,
                t - Duration::hours(3),
            )],
        )
        .await;
        check_watch(store, &c, "Acme", t).await.unwrap();
        let open = open_rules(store, "Acme").await;
        assert!(open.contains(&"sentiment_drop".to_string()), "{open:?}");
        assert!(open.contains(&"keyword:refund".to_string()), "{open:?}");
        assert!(!open.contains(&"keyword:scam".to_string()), "{open:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_reminder_resolution_and_cooldown_over_days() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let src = source(store, &c, "Acme", "posts").await;
        let t0 = now();
        put(
            store,
            &src,
            &[m(
                "s1",
                "Total scam, avoid",
                None,
                Label::Negative,
                -0.9,
                t0 - Duration::hours(1),
            )],
        )
        .await;

        let r = check_watch(store, &c, "Acme", t0).await.unwrap();
        assert_eq!((r.opened, r.email_id.is_some()), (1, true), "{}", db.label);
        let (subject, _) = queued_email(store, r.email_id.unwrap()).await;
        assert_eq!(subject, "[zmot] Acme AMBER, NEW: \"scam\" in 1 mention");
        let emails = || outbox_count(store);
        assert_eq!(emails(), 1);
        // An hour later the condition persists: nothing new is sent.
        let r = check_watch(store, &c, "Acme", t0 + Duration::hours(1))
            .await
            .unwrap();
        assert_eq!((r.opened, r.reminded, r.email_id), (0, 0, None));
        assert_eq!(emails(), 1);
        // A day later: one reminder.
        let r = check_watch(store, &c, "Acme", t0 + Duration::hours(25))
            .await
            .unwrap();
        assert_eq!(r.reminded, 1);
        assert_eq!(emails(), 2);
        let (subject, text) = queued_email(store, r.email_id.unwrap()).await;
        assert_eq!(
            subject,
            "[zmot] Acme AMBER, REMINDER: \"scam\" in 1 mention"
        );
        assert!(
            text.contains(
                "[REMINDER, AMBER] \"scam\" in 1 mention (still open since Fri 20 Nov 12:00 UTC)"
            ),
            "{text}"
        );
        let r = check_watch(store, &c, "Acme", t0 + Duration::hours(26))
            .await
            .unwrap();
        assert_eq!(r.reminded, 0);
        assert_eq!(emails(), 2);
        // The mention ages out of the 3-day window: resolved, one email.
        let r = check_watch(store, &c, "Acme", t0 + Duration::hours(74))
            .await
            .unwrap();
        assert_eq!(r.resolved, 1);
        assert_eq!(emails(), 3);
        let (subject, _) = queued_email(store, r.email_id.unwrap()).await;
        assert_eq!(
            subject,
            "[zmot] Acme RESOLVED: \"scam\": no mention in the last 3 days"
        );
        // It comes back 6 hours after the resolution was announced: recorded, not sent.
        put(
            store,
            &src,
            &[m(
                "s2",
                "another scam story",
                None,
                Label::Negative,
                -0.9,
                t0 + Duration::hours(80),
            )],
        )
        .await;
        let r = check_watch(store, &c, "Acme", t0 + Duration::hours(80))
            .await
            .unwrap();
        assert_eq!((r.opened, r.email_id), (1, None), "inside the cooldown");
        assert_eq!(emails(), 3);
        // Still there once the cooldown is over: announced once, as back (the last
        // email said it was resolved).
        let r = check_watch(store, &c, "Acme", t0 + Duration::hours(99))
            .await
            .unwrap();
        assert_eq!(r.reminded, 1);
        assert_eq!(emails(), 4);
        let (subject, text) = queued_email(store, r.email_id.unwrap()).await;
        assert_eq!(subject, "[zmot] Acme AMBER, BACK: \"scam\" in 1 mention");
        assert!(
            text.contains(
                "[BACK, AMBER] \"scam\" in 1 mention (back after it was resolved on Mon 23 Nov 14:00 UTC)"
            ),
            "{text}"
        );
        let r = check_watch(store, &c, "Acme", t0 + Duration::hours(100))
            .await
            .unwrap();
        assert_eq!((r.reminded, r.email_id), (0, None));
        assert_eq!(emails(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_email_per_evaluation_delivered_over_smtp_with_hostile_text_escaped() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let smtp = SmtpServer::start().await;
        let c = config_with(&format!(
            "\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
            smtp.port
        ));
        let src = source(store, &c, "Acme", "posts").await;
        let t = Utc::now();
        put(
            store,
            &src,
            &[m(
                "x1",
                "<script>alert('pwned')</script> total SCAM & lawsuit coming",
                None,
                Label::Negative,
                -0.9,
                t - Duration::hours(1),
            )
            .likes(40)],
        )
        .await;
        // Three conditions at once (scam, lawsuit, a severe mention): one email.
        let r = check_watch(store, &c, "Acme", t).await.unwrap();
        assert_eq!(r.opened, 3, "{}", db.label);
        assert!(r.email_id.is_some());
        let mailer = Mailer::from_config(&c.email).unwrap();
        let report = notify::deliver_due(store, &mailer, "w1").await.unwrap();
        assert_eq!(report.sent, 1);
        // One SMTP transaction per recipient, the same message to each.
        let got = smtp.messages();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].to, vec!["lead@acme.test"]);
        assert_eq!(got[1].to, vec!["support@acme.test"]);
        assert_eq!(got[0].data, got[1].data);
        let msg = mail_parser::MessageParser::default()
            .parse(got[0].data.as_bytes())
            .expect("parses");
        let subject = msg.subject().unwrap();
        assert!(subject.starts_with("[zmot] Acme RED, NEW:"), "{subject}");
        assert!(subject.ends_with("(+2 more)"), "{subject}");
        let html = msg.body_html(0).unwrap();
        let text = msg.body_text(0).unwrap();
        assert!(!html.contains("<script>"), "hostile text escaped");
        assert!(html.contains("&lt;script&gt;"));
        assert!(
            text.contains("<script>alert('pwned')</script>"),
            "plain text keeps it"
        );
        assert!(html.contains("https://reviews.test/x1"));
        assert!(text.contains("What to do:"));
        // Delivering again sends nothing more.
        assert_eq!(
            notify::deliver_due(store, &mailer, "w1")
                .await
                .unwrap()
                .sent,
            0
        );
        assert_eq!(smtp.messages().len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_then_up_delivers_once_and_a_crashed_sender_loses_nothing() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        // Reserve a port, then close it: the server is "down".
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = config_with(&format!(
            "\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ntimeout_secs = 2\n"
        ));
        let src = source(store, &c, "Acme", "posts").await;
        let t = Utc::now();
        put(
            store,
            &src,
            &[m(
                "d1",
                "they never sent my refund",
                None,
                Label::Negative,
                -0.7,
                t - Duration::hours(1),
            )],
        )
        .await;
        check_watch(store, &c, "Acme", t).await.unwrap();
        let mailer = Mailer::from_config(&c.email).unwrap();
        let r = notify::deliver_due(store, &mailer, "w1").await.unwrap();
        assert_eq!((r.sent, r.retrying), (0, 1), "{}", db.label);
        assert_eq!(
            store.outbox_stats().await.unwrap().queued,
            1,
            "still queued"
        );

        // The server comes up; an operator retries now instead of waiting the backoff.
        let smtp = SmtpServer::start_on(port).await;
        assert_eq!(store.retry_queued_now().await.unwrap(), 1);
        let r = notify::deliver_due(store, &mailer, "w1").await.unwrap();
        assert_eq!(r.sent, 1);
        assert_eq!(smtp.messages().len(), 2, "one per recipient");

        // A second alert is queued; a sender claims it and dies before sending.
        put(
            store,
            &src,
            &[m(
                "d2",
                "this is fraud",
                None,
                Label::Negative,
                -0.8,
                t - Duration::minutes(5),
            )],
        )
        .await;
        check_watch(store, &c, "Acme", t + Duration::minutes(1))
            .await
            .unwrap();
        let claimed = store.claim_emails("dead-worker", 10, 50).await.unwrap();
        assert_eq!(claimed.len(), 1);
        // While its lease holds, nobody else sends it.
        assert_eq!(
            notify::deliver_due(store, &mailer, "w2")
                .await
                .unwrap()
                .sent,
            0
        );
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        // The lease expired: another worker delivers it, once.
        assert_eq!(
            notify::deliver_due(store, &mailer, "w2")
                .await
                .unwrap()
                .sent,
            1
        );
        assert_eq!(
            notify::deliver_due(store, &mailer, "w2")
                .await
                .unwrap()
                .sent,
            0
        );
        assert_eq!(smtp.messages().len(), 4);
        // Evaluating again does not queue the same alerts again.
        check_watch(store, &c, "Acme", t + Duration::minutes(2))
            .await
            .unwrap();
        assert_eq!(store.outbox_stats().await.unwrap().queued, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_evaluating_at_once_open_and_send_once() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let src = source(store, &c, "Acme", "posts").await;
        let t = now();
        put(
            store,
            &src,
            &[m(
                "r1",
                "I want a refund",
                None,
                Label::Negative,
                -0.6,
                t - Duration::hours(1),
            )],
        )
        .await;
        // A second connection pool: another worker process on the same database.
        let other = Store::connect(&db.url, 2).await.unwrap();
        let (a, b) = tokio::join!(
            check_watch(store, &c, "Acme", t),
            check_watch(&other, &c, "Acme", t)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.opened + b.opened, 1, "{a:?} {b:?} on {}", db.label);
        assert_eq!(
            open_rules(store, "Acme").await,
            vec!["keyword:refund".to_string()]
        );
        assert_eq!(
            store.outbox_stats().await.unwrap().queued,
            1,
            "{}",
            db.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snoozed_and_acknowledged_alerts_send_no_reminders() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let src = source(store, &c, "Acme", "posts").await;
        let t0 = now();
        put(
            store,
            &src,
            &[
                m(
                    "a1",
                    "this is a scam",
                    None,
                    Label::Negative,
                    -0.8,
                    t0 - Duration::hours(1),
                ),
                m(
                    "a2",
                    "they owe me a refund",
                    None,
                    Label::Negative,
                    -0.6,
                    t0 - Duration::hours(1),
                ),
            ],
        )
        .await;
        let r = check_watch(store, &c, "Acme", t0).await.unwrap();
        assert_eq!(r.opened, 2, "{}", db.label);
        let w = store.watch_by_name("Acme").await.unwrap().unwrap();
        let open = store.open_alerts(w.id).await.unwrap();
        let scam = open
            .iter()
            .find(|a| a.condition_key == "keyword:scam")
            .unwrap();
        let refund = open
            .iter()
            .find(|a| a.condition_key == "keyword:refund")
            .unwrap();
        assert!(store
            .snooze_alert(scam.id, Some(t0 + Duration::hours(48)))
            .await
            .unwrap());
        assert!(store.acknowledge_alert(refund.id, t0).await.unwrap());
        // A day later neither is reminded: one snoozed, one acknowledged.
        let r = check_watch(store, &c, "Acme", t0 + Duration::hours(25))
            .await
            .unwrap();
        assert_eq!((r.reminded, r.email_id), (0, None), "{}", db.label);
        // After the snooze ends, the snoozed one is reminded; the acknowledged one is not.
        let r = check_watch(store, &c, "Acme", t0 + Duration::hours(49))
            .await
            .unwrap();
        assert_eq!(r.reminded, 1, "{}", db.label);
    }
}

/// A review with stars and no opinion in its text.
fn rated(id: &str, stars: u8, at: DateTime<Utc>) -> M {
    m(id, "ok", Some(stars), Label::Neutral, 0.0, at)
}

/// Quiet's "shop" with ten reviews whose average is 4.1 (amber): nine fixed ones and
/// "flip" (3 stars, a day old), which a test re-imports at other ratings.
async fn buyer_view_at_4_1(store: &Store, c: &Config, t: DateTime<Utc>) -> SourceRow {
    let src = source(store, c, "Quiet", "shop").await;
    let mut reviews: Vec<M> = [5, 5, 5, 5, 5, 5, 4, 2, 2]
        .iter()
        .enumerate()
        .map(|(i, &r)| rated(&format!("v{i}"), r, t - Duration::days(20 - i as i64)))
        .collect();
    reviews.push(rated("flip", 3, t - Duration::days(1)));
    put(store, &src, &reviews).await;
    src
}

/// Queues one alert email for Acme (lead@ and support@) with SMTP on `port`.
async fn queue_one_alert(store: &Store, port: u16) -> Config {
    let c = config_with(&format!(
        "\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ntimeout_secs = 2\n"
    ));
    let src = source(store, &c, "Acme", "posts").await;
    let t = Utc::now();
    put(
        store,
        &src,
        &[m(
            "g1",
            "they never sent my refund",
            None,
            Label::Negative,
            -0.7,
            t - Duration::hours(1),
        )],
    )
    .await;
    assert!(check_watch(store, &c, "Acme", t)
        .await
        .unwrap()
        .email_id
        .is_some());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recipient_does_not_hold_back_the_others_and_is_not_retried() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let smtp =
            SmtpServer::start_refusing(0, &[("support@acme.test", "550 5.1.1 no such user")]).await;
        let c = queue_one_alert(store, smtp.port).await;
        let mailer = Mailer::from_config(&c.email).unwrap();
        let r = notify::deliver_due(store, &mailer, "w1").await.unwrap();
        assert_eq!(
            (r.sent, r.retrying, r.gave_up, r.refused),
            (1, 0, 0, 1),
            "{}",
            db.label
        );
        let got = smtp.messages();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].to, vec!["lead@acme.test"]);
        // Nothing left to retry: the refusal is final, and reported.
        assert_eq!(store.retry_queued_now().await.unwrap(), 0);
        assert_eq!(
            notify::deliver_due(store, &mailer, "w1").await.unwrap(),
            Default::default()
        );
        assert_eq!(smtp.messages().len(), 1);
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!((stats.sent, stats.queued, stats.failed), (1, 0, 0));
        let problems = store.undelivered_emails(0).await.unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].refused.len(), 1);
        assert_eq!(problems[0].refused[0].address, "support@acme.test");
        assert!(
            problems[0].refused[0].reason.contains("550")
                && problems[0].refused[0].reason.contains("no such user"),
            "{:?}",
            problems[0].refused
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_the_email_itself_delays_it_and_loses_nothing() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        // The server refuses the sender (a relaying rule): a 550 for every recipient,
        // which says nothing about their addresses.
        let smtp =
            SmtpServer::start_refusing(0, &[("alerts@acme.test", "550 5.7.1 relaying denied")])
                .await;
        let c = queue_one_alert(store, smtp.port).await;
        let mailer = Mailer::from_config(&c.email).unwrap();
        let r = notify::deliver_due(store, &mailer, "w1").await.unwrap();
        assert_eq!(
            (r.sent, r.retrying, r.gave_up, r.refused),
            (0, 1, 0, 0),
            "{}",
            db.label
        );
        // Waiting, with why, and no address marked as refused.
        let waiting = store.undelivered_emails(0).await.unwrap();
        assert_eq!(waiting.len(), 1);
        assert!(waiting[0].refused.is_empty(), "{:?}", waiting[0].refused);
        assert!(
            waiting[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("relaying denied")),
            "{:?}",
            waiting[0].last_error
        );
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!((stats.queued, stats.failed), (1, 0), "{}", db.label);
        // The configuration is fixed: everyone gets it, once.
        smtp.refuse(&[]);
        assert_eq!(store.retry_queued_now().await.unwrap(), 1);
        let r = notify::deliver_due(store, &mailer, "w1").await.unwrap();
        assert_eq!((r.sent, r.refused), (1, 0), "{}", db.label);
        let mut to: Vec<String> = smtp.messages().into_iter().flat_map(|m| m.to).collect();
        to.sort();
        assert_eq!(to, ["lead@acme.test", "support@acme.test"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipient_refused_fails_at_once_and_a_retry_skips_who_has_it() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        // Both refused for good: failed on the first pass, not after 40 attempts.
        let smtp = SmtpServer::start_refusing(
            0,
            &[
                ("lead@acme.test", "550 5.1.1 no such user"),
                ("support@acme.test", "553 mailbox name not allowed"),
            ],
        )
        .await;
        let c = queue_one_alert(store, smtp.port).await;
        let mailer = Mailer::from_config(&c.email).unwrap();
        let r = notify::deliver_due(store, &mailer, "w1").await.unwrap();
        assert_eq!((r.sent, r.gave_up, r.refused), (0, 1, 2), "{}", db.label);
        assert_eq!(store.outbox_stats().await.unwrap().failed, 1);
        assert!(smtp.messages().is_empty());
        drop(smtp);
    }
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        // support@ is busy (4xx): lead@ gets it now, support@ on the retry, each once.
        let smtp =
            SmtpServer::start_refusing(0, &[("support@acme.test", "451 4.2.1 mailbox busy")]).await;
        let c = queue_one_alert(store, smtp.port).await;
        let mailer = Mailer::from_config(&c.email).unwrap();
        let r = notify::deliver_due(store, &mailer, "w1").await.unwrap();
        assert_eq!((r.sent, r.retrying), (0, 1), "{}", db.label);
        assert_eq!(smtp.messages().len(), 1);
        smtp.refuse(&[]);
        assert_eq!(store.retry_queued_now().await.unwrap(), 1);
        let r = notify::deliver_due(store, &mailer, "w1").await.unwrap();
        assert_eq!((r.sent, r.retrying), (1, 0), "{}", db.label);
        let got = smtp.messages();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].to, vec!["lead@acme.test"]);
        assert_eq!(got[1].to, vec!["support@acme.test"]);
        assert_eq!(got[0].data, got[1].data, "the same message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rating_hovering_at_the_red_line_announces_red_once() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let t = now();
        // "flip" is re-imported at 3 or 1 star, which moves the buyer's view between 4.1
        // (amber) and 3.9 (red).
        let src = buyer_view_at_4_1(store, &c, t).await;
        let review = |id: &str, stars: u8, age: i64| rated(id, stars, t - Duration::days(age));
        let r = check_watch(store, &c, "Quiet", t).await.unwrap();
        assert_eq!((r.opened, r.email_id.is_some()), (1, true), "{}", db.label);
        let mut subjects = Vec::new();
        for (minute, stars) in [(1, 1), (2, 3), (3, 1), (4, 3), (5, 1)] {
            put(store, &src, &[review("flip", stars, 1)]).await;
            let r = check_watch(store, &c, "Quiet", t + Duration::minutes(minute))
                .await
                .unwrap();
            if let Some(id) = r.email_id {
                subjects.push((minute, stars));
                let (subject, text) = queued_email(store, id).await;
                assert_eq!(
                    subject,
                    "[zmot] Quiet RED, WORSE: shop: buyers now see 3.9 stars (under 4.3)"
                );
                assert!(
                    text.contains(
                        "[WORSE, RED] shop: buyers now see 3.9 stars (under 4.3) (was AMBER)"
                    ),
                    "{text}"
                );
            }
        }
        // Amber announced, then red once; the later crossings change nothing announced.
        assert_eq!(subjects, vec![(1, 1)], "{}", db.label);
        assert_eq!(outbox_count(store), 2);
        let w = store.watch_by_name("Quiet").await.unwrap().unwrap();
        let open = store.open_alerts(w.id).await.unwrap();
        assert_eq!(
            open[0].severity, "red",
            "the stored severity follows the view"
        );
        assert_eq!(open[0].notified_severity.as_deref(), Some("red"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_back_worse_inside_the_cooldown_is_announced_at_once() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let t = now();
        // "flip" at 3 stars gives 4.1 (amber), at 1 3.9 (red); at 5, with "v7" at 4
        // instead of 2, 4.5 (clearly back over 4.3).
        let src = buyer_view_at_4_1(store, &c, t).await;
        let review = |id: &str, stars: u8, age: i64| rated(id, stars, t - Duration::days(age));
        let amber = check_watch(store, &c, "Quiet", t).await.unwrap();
        assert!(amber.email_id.is_some(), "{}", db.label);
        put(store, &src, &[review("flip", 5, 1), review("v7", 4, 13)]).await;
        let resolved = check_watch(store, &c, "Quiet", t + Duration::minutes(1))
            .await
            .unwrap();
        let (subject, _) = queued_email(store, resolved.email_id.expect("resolved email")).await;
        assert!(subject.contains("RESOLVED"), "{subject}");
        // Back within the 24-hour cooldown, and red: the last word was "resolved" at
        // amber, so this goes out now, as BACK, not at the next check or never.
        put(store, &src, &[review("flip", 1, 1), review("v7", 2, 13)]).await;
        let back = check_watch(store, &c, "Quiet", t + Duration::minutes(2))
            .await
            .unwrap();
        let id = back.email_id.expect("the red return is announced");
        let (subject, _) = queued_email(store, id).await;
        assert!(subject.starts_with("[zmot] Quiet RED, BACK: "), "{subject}");
        // Back at amber inside the cooldown would have stayed quiet; and nothing more now.
        let again = check_watch(store, &c, "Quiet", t + Duration::minutes(3))
            .await
            .unwrap();
        assert!(again.email_id.is_none(), "{}", db.label);
        assert_eq!(outbox_count(store), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn author_names_cannot_add_lines_or_hide_in_an_alert() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let src = source(store, &c, "Acme", "posts").await;
        let t = now();
        let hostile = format!(
            "Eve\r\nBcc: everyone@example.com\r\n\u{202E}gpj.exe\u{202C} {}",
            "y".repeat(500)
        );
        put(
            store,
            &src,
            &[m(
                "h1",
                "Worst purchase of my life, it caught fire",
                None,
                Label::Negative,
                -0.95,
                t - Duration::hours(1),
            )
            .likes(250)
            .by(&hostile)],
        )
        .await;
        let r = check_watch(store, &c, "Acme", t).await.unwrap();
        let (subject, text) = queued_email(store, r.email_id.unwrap()).await;
        let w = store.watch_by_name("Acme").await.unwrap().unwrap();
        let open = store.open_alerts(w.id).await.unwrap();
        let severe = open.iter().find(|a| a.rule == "severe_mention").unwrap();
        let shown = "Eve Bcc: everyone@example.com gpj.exe yy…";
        assert!(severe.title.contains(shown), "{}", severe.title);
        assert!(severe.title.chars().count() < 120, "{}", severe.title);
        for (what, s) in [
            ("subject", &subject),
            ("title", &severe.title),
            ("text", &text),
        ] {
            assert!(
                !s.contains('\u{202E}'),
                "{what} keeps the override on {}",
                db.label
            );
            assert!(!s.contains(&"y".repeat(100)), "{what} keeps the whole name");
        }
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("Bcc:")),
            "a header-like line in the body: {text}"
        );
        assert!(text.contains(&format!(", {shown}")), "{text}");
    }
}

/// The Message-ID header of a received message (`None` when it has none).
fn message_id(data: &str) -> Option<String> {
    mail_parser::MessageParser::default()
        .parse(data.as_bytes())
        .expect("parses")
        .message_id()
        .map(String::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_dying_after_the_server_accepted_resends_the_same_message_id() {
    use lettre::AsyncTransport;
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let smtp = SmtpServer::start().await;
        let c = queue_one_alert(store, smtp.port).await;
        // A sender claims the email, hands it to the server for lead@, and dies before
        // recording that lead@ has it.
        let claimed = store.claim_emails("dead-worker", 10, 50).await.unwrap();
        assert_eq!(claimed.len(), 1, "{}", db.label);
        let transport =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(smtp.port)
                .tls(lettre::transport::smtp::client::Tls::None)
                .build();
        let envelope = lettre::address::Envelope::new(
            Some("alerts@acme.test".parse().unwrap()),
            vec!["lead@acme.test".parse().unwrap()],
        )
        .unwrap();
        transport
            .send_raw(&envelope, claimed[0].message.as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        // Its lease ran out: another worker sends it to everyone it has no record of.
        let mailer = Mailer::from_config(&c.email).unwrap();
        assert_eq!(
            notify::deliver_due(store, &mailer, "w2")
                .await
                .unwrap()
                .sent,
            1
        );
        let got = smtp.messages();
        let to: Vec<&str> = got.iter().map(|m| m.to[0].as_str()).collect();
        assert_eq!(
            to,
            ["lead@acme.test", "lead@acme.test", "support@acme.test"]
        );
        // lead@ has it twice, as the same message: a mail client shows it once.
        let first = message_id(&got[0].data);
        assert!(first.is_some(), "no Message-ID on {}", db.label);
        assert_eq!(message_id(&got[1].data), first);
        assert_eq!(message_id(&got[2].data), first);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crisis_term_listed_twice_opens_one_alert() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        // "Refund" and "refund" name the same condition (`keyword:refund`).
        let c = config_with(
            "\n[[watch]]\nname = \"Terms\"\nrecipients = [\"terms@acme.test\"]\n\
             [watch.alerts]\ndisabled = [\"negative_spike\", \"sentiment_drop\", \"severe_mention\"]\n\
             crisis_terms = [\"refund\", \"Refund\"]\n",
        );
        let src = source(store, &c, "Terms", "posts").await;
        let t = now();
        put(
            store,
            &src,
            &[m(
                "k1",
                "still waiting for my refund",
                None,
                Label::Negative,
                -0.6,
                t - Duration::hours(1),
            )],
        )
        .await;
        let r = check_watch(store, &c, "Terms", t).await.unwrap();
        assert!(!r.conflict, "the evaluation stood down on {}", db.label);
        assert_eq!((r.opened, r.email_id.is_some()), (1, true), "{}", db.label);
        assert_eq!(open_rules(store, "Terms").await, ["keyword:refund"]);
    }
}

/// `n` negative mentions (ids `{prefix}0`, `{prefix}1`, ...), an hour apart, the newest an
/// hour before `t`.
fn negatives(prefix: &str, n: i64, t: DateTime<Utc>) -> Vec<M> {
    (0..n)
        .map(|i| {
            m(
                &format!("{prefix}{i}"),
                "app is down again",
                None,
                Label::Negative,
                -0.5,
                t - Duration::hours(i + 1),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_fetch_without_history_is_not_a_spike() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("\n[[watch]]\nname = \"Shop\"\nrecipients = [\"shop@acme.test\"]\n");
        let t = now();
        let spike = |watch: &'static str| async move {
            let w = store.watch_by_name(watch).await.unwrap().unwrap();
            store
                .open_alerts(w.id)
                .await
                .unwrap()
                .into_iter()
                .find(|a| a.rule == "negative_spike")
        };
        // A new watch's first source brings its feed: six negatives of the last hours,
        // nothing older. Nothing says what is usual, so nothing says this is more.
        let feed = source(store, &c, "Acme", "feed").await;
        put(store, &feed, &negatives("f", 6, t)).await;
        check_watch(store, &c, "Acme", t).await.unwrap();
        assert_eq!(spike("Acme").await, None, "{}", db.label);

        // "posts" has been watched for four weeks, one negative a day, when a new source
        // brings six negatives of today in its first fetch: seven against one a day.
        let posts = source(store, &c, "Shop", "posts").await;
        let mut history: Vec<M> = (1..=28)
            .map(|d| {
                m(
                    &format!("n{d}"),
                    "meh, slow again",
                    None,
                    Label::Negative,
                    -0.4,
                    t - Duration::hours(24 * d + 5),
                )
            })
            .collect();
        history.extend(negatives("p", 1, t));
        put(store, &posts, &history).await;
        let reddit = source(store, &c, "Shop", "reddit").await;
        put(store, &reddit, &negatives("r", 6, t)).await;
        check_watch(store, &c, "Shop", t).await.unwrap();
        assert_eq!(spike("Shop").await, None, "{}", db.label);
        // The source with history is still watched: nine of its own today is a spike.
        put(store, &posts, &negatives("q", 8, t - Duration::minutes(30))).await;
        check_watch(store, &c, "Shop", t).await.unwrap();
        let found = spike("Shop").await.expect("a spike on posts");
        assert!(
            found.title.starts_with("9 negative mentions in 24 h"),
            "{} on {}",
            found.title,
            db.label
        );

        // A feed first fetched eight days ago: three negatives a day since, seven today.
        // Against its eight days that is about twice the usual, not a spike; the twenty
        // days before its first fetch are not quiet days.
        let c = config_with("\n[[watch]]\nname = \"Blog\"\nrecipients = [\"blog@acme.test\"]\n");
        let blog = source(store, &c, "Blog", "blog").await;
        let mut week: Vec<M> = (1..=8)
            .flat_map(|d| negatives(&format!("b{d}-"), 3, t - Duration::hours(24 * d + 1)))
            .collect();
        week.extend(negatives("b0-", 7, t));
        put(store, &blog, &week).await;
        check_watch(store, &c, "Blog", t).await.unwrap();
        assert_eq!(spike("Blog").await, None, "{}", db.label);
    }
}

/// Checks Quiet `hour` hours after `t`, noting the hour and the word of the email's
/// subject (NEW:, RESOLVED:...) if one was queued.
async fn check_noting_the_email(
    store: &Store,
    c: &Config,
    t: DateTime<Utc>,
    hour: i64,
    sent: &mut Vec<(i64, String)>,
) {
    let r = check_watch(store, c, "Quiet", t + Duration::hours(hour))
        .await
        .unwrap();
    if let Some(id) = r.email_id {
        let (subject, _) = queued_email(store, id).await;
        let word = subject.split(' ').find(|w| w.ends_with(':')).unwrap();
        sent.push((hour, word.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rating_flapping_at_the_threshold_keeps_one_alert_open_until_clearly_back() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let t = now();
        // "flip" at 3 stars gives 4.1 (under 4.3), at 5 4.3: at the threshold, not clearly
        // back over it (4.35). Hourly, for 3 days.
        let src = buyer_view_at_4_1(store, &c, t).await;
        let mut sent = Vec::new();
        for hour in 0..72 {
            let stars = if hour % 2 == 0 { 3 } else { 5 };
            put(store, &src, &[rated("flip", stars, t - Duration::days(1))]).await;
            check_noting_the_email(store, &c, t, hour, &mut sent).await;
        }
        let w = store.watch_by_name("Quiet").await.unwrap().unwrap();
        let open = store.open_alerts(w.id).await.unwrap();
        assert_eq!(
            open[0].title, "shop: buyers now see 4.30 stars, not yet 4.35 again",
            "{}",
            db.label
        );
        // Clearly back: "v7" at 3 stars instead of 2 makes 4.4.
        put(store, &src, &[rated("v7", 3, t - Duration::days(13))]).await;
        check_noting_the_email(store, &c, t, 72, &mut sent).await;
        // One alert, announced once and reminded once a day while the view hovers at the
        // threshold; resolved once it is clearly over it. Before the resolve margin it was
        // NEW, RESOLVED, then BACK and RESOLVED once a day after the cooldown.
        let expected: Vec<(i64, String)> = [
            (0, "NEW:"),
            (24, "REMINDER:"),
            (48, "REMINDER:"),
            (72, "RESOLVED:"),
        ]
        .map(|(h, w)| (h, w.to_string()))
        .to_vec();
        assert_eq!(sent, expected, "{}", db.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_reminding_and_resolving_at_once_send_each_once() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("");
        let t = now();
        let src = buyer_view_at_4_1(store, &c, t).await;
        assert!(check_watch(store, &c, "Quiet", t)
            .await
            .unwrap()
            .email_id
            .is_some());
        let other = Store::connect(&db.url, 2).await.unwrap();
        // Both workers evaluate at once, a second apart as two machines' clocks are (the
        // email's dedup key, which has the time, does not tell them apart): each day the
        // reminder that is due, and at last the resolution. One email each time.
        let mut at = t;
        for day in 1..=8 {
            at += Duration::hours(25);
            if day == 8 {
                put(store, &src, &[rated("flip", 5, t - Duration::days(1))]).await;
            }
            let (a, b) = tokio::join!(
                check_watch(store, &c, "Quiet", at),
                check_watch(&other, &c, "Quiet", at + Duration::seconds(1))
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            let emails = usize::from(a.email_id.is_some()) + usize::from(b.email_id.is_some());
            assert_eq!(emails, 1, "day {day}: {a:?} {b:?} on {}", db.label);
        }
        assert_eq!(outbox_count(store), 9, "{}", db.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_delivering_at_once_send_each_email_once_to_each_recipient() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let smtp = SmtpServer::start().await;
        let c = config_with(&format!(
            "\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
            smtp.port
        ));
        let to = vec![
            "lead@acme.test".to_string(),
            "support@acme.test".to_string(),
        ];
        for i in 0..12 {
            let subject = format!("email {i}");
            let message = notify::compose(
                &c.email.from,
                &to,
                &subject,
                "text",
                "<p>html</p>",
                Vec::new(),
            )
            .unwrap();
            let key = format!("test:{i}");
            store
                .enqueue_email(&zmot::store::NewEmail {
                    kind: "alert",
                    dedup_key: Some(&key),
                    watch_id: None,
                    recipients: &to,
                    subject: &subject,
                    message: &message,
                })
                .await
                .unwrap();
        }
        let other = Store::connect(&db.url, 2).await.unwrap();
        let mailer = Mailer::from_config(&c.email).unwrap();
        let (a, b) = tokio::join!(
            notify::deliver_due(store, &mailer, "w1"),
            notify::deliver_due(&other, &mailer, "w2")
        );
        assert_eq!(a.unwrap().sent + b.unwrap().sent, 12, "{}", db.label);
        let mut got: Vec<(String, String)> = smtp
            .messages()
            .iter()
            .map(|m| {
                let msg = mail_parser::MessageParser::default()
                    .parse(m.data.as_bytes())
                    .unwrap();
                (msg.subject().unwrap().to_string(), m.to[0].clone())
            })
            .collect();
        got.sort();
        let before = got.len();
        got.dedup();
        assert_eq!((before, got.len()), (24, 24), "{}", db.label);
    }
}

/// An alert email for a watch on New York time: every date and time on New York's clock,
/// marked with the zone, not in UTC (03:30 UTC on 24 November is 22:30 on the 23rd there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_email_tells_times_on_the_watchs_clock() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let smtp = SmtpServer::start().await;
        let c = config_with(&format!(
            "\n[[watch]]\nname = \"Gotham\"\ntimezone = \"America/New_York\"\nrecipients = [\"ny@acme.test\"]\n\
             [watch.alerts]\ndisabled = [\"negative_spike\", \"sentiment_drop\", \"severe_mention\"]\n\
             \n[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
            smtp.port
        ));
        let src = source(store, &c, "Gotham", "posts").await;
        let opened = Utc.with_ymd_and_hms(2026, 11, 24, 3, 30, 0).unwrap();
        put(
            store,
            &src,
            &[m(
                "g1",
                "A scam, plain and simple",
                None,
                Label::Negative,
                -0.9,
                opened - Duration::minutes(45),
            )],
        )
        .await;
        let r = check_watch(store, &c, "Gotham", opened).await.unwrap();
        assert_eq!(r.opened, 1, "{}", db.label);
        // A day and an hour later (04:30 UTC on the 25th, 23:30 on the 24th in New
        // York): the reminder.
        let r = check_watch(store, &c, "Gotham", opened + Duration::hours(25))
            .await
            .unwrap();
        assert_eq!(r.reminded, 1, "{}", db.label);
        let mailer = Mailer::from_config(&c.email).unwrap();
        let report = notify::deliver_due(store, &mailer, "w1").await.unwrap();
        assert_eq!(report.sent, 2, "{}", db.label);
        let got = smtp.messages();
        let reminder = got
            .iter()
            .map(|g| {
                mail_parser::MessageParser::default()
                    .parse(g.data.as_bytes())
                    .expect("parses")
            })
            .find(|msg| msg.subject().unwrap_or_default().contains("REMINDER"))
            .expect("the reminder was delivered");
        let text = reminder.body_text(0).unwrap().to_string();
        let html = reminder.body_html(0).unwrap().to_string();
        for body in [&text, &html] {
            assert!(
                body.contains("still open since Mon 23 Nov 22:30 EST"),
                "{}: {body}",
                db.label
            );
            assert!(body.contains("as of Tue 24 Nov 23:30 EST"), "{body}");
            assert!(!body.contains("UTC"), "{body}");
            assert!(!body.contains("24 Nov 03:30"), "{body}");
        }
        // The evidence's publication day is New York's (02:45 UTC on the 24th).
        assert!(
            text.contains(", 2026-11-23: \"A scam, plain and simple\""),
            "{text}"
        );
        assert!(html.contains(" · 2026-11-23</span>"), "{html}");
    }
}

/// `n` mentions of `source` scored `score` (neutral, negative or positive by its sign),
/// ids `{prefix}0`.., one every `every_hours` hours, the newest `newest_hours` before `t`.
fn scored_run(prefix: &str, n: i64, score: f32, every_hours: i64, newest: DateTime<Utc>) -> Vec<M> {
    let label = if score > 0.05 {
        Label::Positive
    } else if score < -0.05 {
        Label::Negative
    } else {
        Label::Neutral
    };
    (0..n)
        .map(|i| {
            m(
                &format!("{prefix}{i}"),
                "it is what it is",
                None,
                label,
                score,
                newest - Duration::hours(every_hours * i),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_source_is_not_a_sentiment_drop() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with(
            "\n[[watch]]\nname = \"Shop\"\nrecipients = [\"shop@acme.test\"]\n[watch.alerts]\n\
             disabled = [\"negative_spike\", \"keyword\", \"severe_mention\", \"buyer_view_rating\"]\n",
        );
        let t = now();
        let drop = || async {
            open_rules(store, "Shop")
                .await
                .contains(&"sentiment_drop".to_string())
        };
        // "posts": five weeks of mildly positive mentions, two a day, fourteen this week.
        let posts = source(store, &c, "Shop", "posts").await;
        put(
            store,
            &posts,
            &scored_run("p", 70, 0.3, 12, t - Duration::hours(2)),
        )
        .await;
        check_watch(store, &c, "Shop", t).await.unwrap();
        assert!(!drop().await, "{}", db.label);
        // A new source's first fetch: twelve negative mentions of this week. The week is
        // worse than the four before only because nobody looked at reddit then.
        let reddit = source(store, &c, "Shop", "reddit").await;
        put(
            store,
            &reddit,
            &scored_run("r", 12, -0.3, 12, t - Duration::hours(1)),
        )
        .await;
        check_watch(store, &c, "Shop", t).await.unwrap();
        assert!(!drop().await, "{}", db.label);
        // The source with history is still watched: its own week turning negative is a drop.
        put(
            store,
            &posts,
            &scored_run("q", 12, -0.4, 12, t - Duration::hours(3)),
        )
        .await;
        check_watch(store, &c, "Shop", t).await.unwrap();
        assert!(drop().await, "a drop on posts, {}", db.label);

        // A new watch's first fetch brings nine days: two good ones, then a bad week.
        // Two days are not four weeks of what is usual.
        let c = config_with(
            "\n[[watch]]\nname = \"Blog\"\nrecipients = [\"blog@acme.test\"]\n[watch.alerts]\n\
             disabled = [\"negative_spike\", \"keyword\", \"severe_mention\", \"buyer_view_rating\"]\n",
        );
        let blog = source(store, &c, "Blog", "blog").await;
        let mut feed = scored_run("g", 4, 0.4, 12, t - Duration::days(7) - Duration::hours(1));
        feed.extend(scored_run("b", 12, -0.3, 12, t - Duration::hours(1)));
        put(store, &blog, &feed).await;
        check_watch(store, &c, "Blog", t).await.unwrap();
        let blog_open = open_rules(store, "Blog").await;
        assert!(blog_open.is_empty(), "{blog_open:?} on {}", db.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_or_a_spike_back_just_under_its_threshold_stays_open_until_clearly_back() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        // A watch of its own with only `rule` on.
        let only = |watch: &str, rule: &str| {
            let others: Vec<String> = config::ALERT_RULES
                .iter()
                .filter(|r| **r != rule)
                .map(|r| format!("\"{r}\""))
                .collect();
            config_with(&format!(
                "\n[[watch]]\nname = \"{watch}\"\nrecipients = [\"shop@acme.test\"]\n\
                 [watch.alerts]\ndisabled = [{}]\n",
                others.join(", ")
            ))
        };
        let open = |rule: &'static str| async move {
            open_rules(store, "Shop").await.contains(&rule.to_string())
        };
        let t = now();

        // The drop: four weeks at +0.30, then a week at +0.05 (down 0.25, over 0.2).
        let c = only("Shop", "sentiment_drop");
        let posts = source(store, &c, "Shop", "posts").await;
        put(
            store,
            &posts,
            &scored_run("p", 56, 0.3, 12, t - Duration::days(7) - Duration::hours(2)),
        )
        .await;
        put(
            store,
            &posts,
            &scored_run("w", 10, 0.05, 12, t - Duration::hours(1)),
        )
        .await;
        check_watch(store, &c, "Shop", t).await.unwrap();
        assert!(open("sentiment_drop").await, "{}", db.label);
        // Three better ones: down 0.19, under 0.2 but not clearly (0.15): still open.
        put(
            store,
            &posts,
            &scored_run("x", 3, 0.3, 1, t - Duration::minutes(30)),
        )
        .await;
        check_watch(store, &c, "Shop", t).await.unwrap();
        assert!(open("sentiment_drop").await, "hovering, {}", db.label);
        // Ten more: down 0.11, clearly back.
        put(
            store,
            &posts,
            &scored_run("y", 10, 0.3, 1, t - Duration::minutes(20)),
        )
        .await;
        check_watch(store, &c, "Shop", t).await.unwrap();
        assert!(!open("sentiment_drop").await, "recovered, {}", db.label);

        // The spike: a month with no negative, then five in five hours (P ≈ 0.0002 with
        // λ = 0.5, under 0.001).
        let c = only("Spiky", "negative_spike");
        let blog = source(store, &c, "Spiky", "blog").await;
        put(
            store,
            &blog,
            &scored_run("ok", 1, 0.4, 1, t - Duration::days(30)),
        )
        .await;
        put(store, &blog, &negatives("n", 5, t)).await;
        let spiky = || async {
            open_rules(store, "Spiky")
                .await
                .contains(&"negative_spike".to_string())
        };
        check_watch(store, &c, "Spiky", t).await.unwrap();
        assert!(spiky().await, "{}", db.label);
        // The oldest leaves the window: four (P ≈ 0.002) would not open one, but is not
        // clearly back either (under 0.01, at least 5 - 1): still open.
        let later = t + Duration::hours(19) + Duration::minutes(30);
        check_watch(store, &c, "Spiky", later).await.unwrap();
        assert!(spiky().await, "hovering, {}", db.label);
        // Three (P ≈ 0.014): clearly back.
        check_watch(store, &c, "Spiky", later + Duration::hours(1))
            .await
            .unwrap();
        assert!(!spiky().await, "recovered, {}", db.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_with_two_decimals_is_not_rounded_onto_the_view() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with(
            "\n[[watch]]\nname = \"Stars\"\nrecipients = [\"stars@acme.test\"]\n[watch.alerts]\n\
             buyer_view_threshold = 4.25\n\
             disabled = [\"negative_spike\", \"sentiment_drop\", \"keyword\", \"severe_mention\"]\n",
        );
        let t = now();
        let src = source(store, &c, "Stars", "shop").await;
        // Ten reviews averaging 4.2, under 4.25.
        let reviews: Vec<M> = [5, 5, 5, 5, 5, 5, 4, 4, 2, 2]
            .iter()
            .enumerate()
            .map(|(i, &r)| rated(&format!("s{i}"), r, t - Duration::days(20 - i as i64)))
            .collect();
        put(store, &src, &reviews).await;
        check_watch(store, &c, "Stars", t).await.unwrap();
        let w = store.watch_by_name("Stars").await.unwrap().unwrap();
        let open = store.open_alerts(w.id).await.unwrap();
        // Not "buyers now see 4.2 stars (under 4.2)", which reads as no reason at all.
        assert_eq!(
            open[0].title, "shop: buyers now see 4.2 stars (under 4.25)",
            "{}",
            db.label
        );
        let settings = c.watch("Stars").unwrap().alerts.clone();
        let trends =
            zmot::trends::watch_trends(store, w.id, "Stars", chrono_tz::UTC, &settings, 6, t)
                .await
                .unwrap();
        assert!(
            trends
                .reasons
                .iter()
                .any(|r| r.ends_with("average 4.2 stars, under 4.25")),
            "{:?} on {}",
            trends.reasons,
            db.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_resolved_for_too_few_mentions_does_not_say_sentiment_is_back() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with(
            "\n[[watch]]\nname = \"Shop\"\nrecipients = [\"shop@acme.test\"]\n[watch.alerts]\n\
             disabled = [\"buyer_view_rating\", \"negative_spike\", \"keyword\", \"severe_mention\"]\n",
        );
        let t = now();
        // Four weeks at +0.30, then ten mentions at -0.30 over the last four and a half
        // days: down 0.60.
        let posts = source(store, &c, "Shop", "posts").await;
        put(
            store,
            &posts,
            &scored_run("p", 56, 0.3, 12, t - Duration::days(7) - Duration::hours(2)),
        )
        .await;
        put(
            store,
            &posts,
            &scored_run("w", 10, -0.3, 12, t - Duration::hours(1)),
        )
        .await;
        check_watch(store, &c, "Shop", t).await.unwrap();
        assert!(
            open_rules(store, "Shop")
                .await
                .contains(&"sentiment_drop".to_string()),
            "{}",
            db.label
        );
        // Three days on, two of them have left the seven days and nothing came since:
        // eight mentions, all as bad, are too few to judge by, so the alert resolves; the
        // resolution must not tell the team that sentiment recovered.
        let r = check_watch(store, &c, "Shop", t + Duration::days(3))
            .await
            .unwrap();
        let (subject, text) = queued_email(store, r.email_id.expect("a resolution")).await;
        assert!(subject.contains("RESOLVED"), "{subject} on {}", db.label);
        assert!(
            !subject.contains("back within") && !text.contains("back within"),
            "{subject}\n{text} on {}",
            db.label
        );
        assert!(
            subject.contains("fewer than 10 mentions in the last 7 days to judge by"),
            "{subject} on {}",
            db.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_nothing_is_given_up_within_the_timeout_not_the_lease() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        // A server on 127.0.0.1 that takes the connection and never says a word: the
        // connection is made at once, so only a deadline on the whole send ends it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let c = queue_one_alert(store, port).await;
        let mailer = Mailer::from_config(&c.email).unwrap();
        let started = std::time::Instant::now();
        let report = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            notify::deliver_due(store, &mailer, "w1"),
        )
        .await
        .expect("the send ends by its 2-second timeout")
        .unwrap();
        let took = started.elapsed();
        assert_eq!((report.sent, report.retrying), (0, 1), "{}", db.label);
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
        assert_eq!(outbox_count(store), 1, "still queued for a retry");
        silent.abort();
    }
}

/// The health of a watch at `t` as `zmot trends` and the dashboard compute it, and as the
/// digest of the week ending at `t` (a Monday, 00:00 UTC: the same 7 days and 28 before)
/// does; they must agree.
async fn health_at(
    store: &Store,
    c: &Config,
    watch: &str,
    t: DateTime<Utc>,
) -> (zmot::trends::Health, Vec<String>) {
    let w = store.watch_by_name(watch).await.unwrap().unwrap();
    let settings = c.watch(watch).unwrap().alerts.clone();
    let trends = zmot::trends::watch_trends(store, w.id, watch, chrono_tz::UTC, &settings, 6, t)
        .await
        .unwrap();
    let week = zmot::digest::report::last_full_week(chrono_tz::UTC, t);
    assert_eq!((week.1, week.2), (t - Duration::days(7), t));
    let digest = zmot::digest::compute(store, c, watch, week).await.unwrap();
    assert_eq!(
        (digest.health, &digest.reasons),
        (trends.health, &trends.reasons)
    );
    (trends.health, trends.reasons)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_source_does_not_turn_health_amber() {
    use zmot::trends::Health;
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config_with("\n[[watch]]\nname = \"Shop\"\nrecipients = [\"shop@acme.test\"]\n");
        // Monday 23 November 2026: the week that ended is 16 to 22 November.
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        // "posts": five weeks, 4 of 60 mentions negative in the four weeks before (7 %),
        // 1 of 14 in the last seven days (7 %).
        let posts = source(store, &c, "Shop", "posts").await;
        let mut history = scored_run("p", 56, 0.3, 12, t - Duration::days(7) - Duration::hours(1));
        history.extend(scored_run(
            "pn",
            4,
            -0.4,
            168,
            t - Duration::days(7) - Duration::hours(2),
        ));
        history.extend(scored_run("w", 13, 0.3, 12, t - Duration::hours(2)));
        history.extend(scored_run("wn", 1, -0.4, 12, t - Duration::hours(3)));
        put(store, &posts, &history).await;
        let (h, why) = health_at(store, &c, "Shop", t).await;
        assert_eq!(h, Health::Green, "{why:?} on {}", db.label);
        // A new source's first fetch: 3 negative and 3 positive mentions of this week.
        // Together 4 of 20 are negative (20 %), 13 points over the weeks before, but only
        // because nobody read reddit then.
        let reddit = source(store, &c, "Shop", "reddit").await;
        let mut first = scored_run("r", 3, -0.4, 12, t - Duration::hours(1));
        first.extend(scored_run("rp", 3, 0.3, 12, t - Duration::hours(4)));
        put(store, &reddit, &first).await;
        let (h, why) = health_at(store, &c, "Shop", t).await;
        assert_eq!(h, Health::Green, "{why:?} on {}", db.label);
        // The source with history is still watched: 4 of its 23 mentions negative this
        // week (17 %, 24 % of all) is a rise of 10 points on its own weeks before.
        let mut worse = scored_run("x", 3, -0.4, 12, t - Duration::hours(5));
        worse.extend(scored_run("u", 6, 0.0, 12, t - Duration::hours(6)));
        put(store, &posts, &worse).await;
        let (h, why) = health_at(store, &c, "Shop", t).await;
        assert_eq!(h, Health::Amber, "{why:?} on {}", db.label);
        assert!(
            why.iter()
                .any(|r| r.starts_with("negative share up from 7% to 17%")),
            "{why:?} on {}",
            db.label
        );

        // A new watch's first fetch brings nine days: two good ones, then a week with
        // 2 negative of 10. Two days are not four weeks of what is usual.
        let c = config_with("\n[[watch]]\nname = \"Blog\"\nrecipients = [\"blog@acme.test\"]\n");
        let blog = source(store, &c, "Blog", "blog").await;
        let mut feed = scored_run("g", 4, 0.4, 12, t - Duration::days(7) - Duration::hours(1));
        feed.extend(scored_run("b", 2, -0.3, 12, t - Duration::hours(1)));
        feed.extend(scored_run("n", 8, 0.4, 12, t - Duration::hours(2)));
        put(store, &blog, &feed).await;
        let (h, why) = health_at(store, &c, "Blog", t).await;
        assert_eq!(h, Health::Green, "{why:?} on {}", db.label);
    }
}
