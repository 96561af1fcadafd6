//! The store on every configured database: SQLite always, PostgreSQL when
//! `ZMOT_TEST_DATABASE_URL` is set. Each test gets fresh databases.

use chrono::{Duration, TimeZone, Utc};
use zmot::config;
use zmot::domain::{
    AggregateRating, Engagement, FetchErrorKind, Label, Mention, ScoredMention, Sentiment,
};
use zmot::store::{MentionQuery, NewEmail, RunOutcome, SourceRow, Store};
use zmot::testutil;

const CONFIG: &str = r#"
[[watch]]
name = "Acme Kettle"
competitors = "kettles"
timezone = "Europe/Paris"

  [[watch.source]]
  name = "reviews"
  kind = "feed"
  params = { url = "http://127.0.0.1:9/feed" }

  [[watch.source]]
  name = "hn"
  kind = "hackernews"
  schedule = "*/30 * * * *"
  params = { query = "acme" }

[[watch]]
name = "Other"
"#;

fn mention(id: &str, text: &str, rating: Option<u8>, day: u32) -> ScoredMention {
    ScoredMention {
        mention: Mention {
            external_id: id.into(),
            url: Some(format!("https://example.com/r/{id}")),
            author: Some("Ann".into()),
            title: None,
            text: text.into(),
            rating,
            engagement: Engagement {
                likes: 1,
                replies: 0,
                reposts: 0,
            },
            language: Some("en".into()),
            published_at: Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap(),
            owner_reply: None,
            owner_reply_at: None,
            extra: Some(serde_json::json!({"version": "2.1"})),
        },
        sentiment: Some(Sentiment {
            label: Label::Positive,
            score: 0.8,
            confidence: 0.9,
        }),
    }
}

async fn setup(store: &Store) -> SourceRow {
    let c = config::parse(CONFIG, "test.toml", &[]).unwrap();
    store.sync_config(&c).await.unwrap();
    let sources = store.sources(None).await.unwrap();
    sources.into_iter().find(|s| s.name == "reviews").unwrap()
}

#[tokio::test]
async fn sync_config_creates_updates_and_never_deletes() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        setup(store).await;
        let watches = store.watches().await.unwrap();
        assert_eq!(watches.len(), 2, "{}", db.label);
        let acme = store.watch_by_name("acme kettle").await.unwrap().unwrap();
        assert_eq!(acme.timezone, "Europe/Paris");
        assert_eq!(acme.competitors.as_deref(), Some("kettles"));
        let sources = store.sources(Some(acme.id)).await.unwrap();
        assert_eq!(sources.len(), 2);
        let hn = sources.iter().find(|s| s.name == "hn").unwrap();
        assert_eq!(hn.schedule, "0 */30 * * * *");
        assert!(hn.params.contains("acme"));

        // Remove a source and a watch from the file: rows stay, marked off.
        let smaller = config::parse(
            "[[watch]]\nname = \"Acme Kettle\"\n[[watch.source]]\nname = \"hn\"\nkind = \"hackernews\"\nparams = { query = \"acme\" }\n",
            "t.toml",
            &[],
        )
        .unwrap();
        store.sync_config(&smaller).await.unwrap();
        let all = store.sources(None).await.unwrap();
        assert_eq!(all.len(), 2, "{}", db.label);
        assert!(!all.iter().find(|s| s.name == "reviews").unwrap().enabled);
        assert!(all.iter().find(|s| s.name == "hn").unwrap().enabled);
        let other = store.watch_by_name("Other").await.unwrap().unwrap();
        assert!(!other.active);
    }
}

#[tokio::test]
async fn ingest_is_idempotent_and_keeps_edit_history() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let source = setup(store).await;
        let batch = vec![
            mention("a", "Lovely kettle", Some(5), 1),
            mention("b", "Boils fast", Some(4), 2),
            mention("c", "Lid broke", Some(2), 3),
        ];
        let s1 = store
            .ingest(&source, &batch, Some(("test", "1")))
            .await
            .unwrap();
        assert_eq!(
            (s1.seen, s1.new, s1.updated, s1.unchanged),
            (3, 3, 0, 0),
            "{}",
            db.label
        );
        let s2 = store
            .ingest(&source, &batch, Some(("test", "1")))
            .await
            .unwrap();
        assert_eq!(
            (s2.new, s2.updated, s2.unchanged),
            (0, 0, 3),
            "{}",
            db.label
        );
        assert_eq!(store.count_mentions(None).await.unwrap(), 3);
        // The per-source count kept by ingest agrees with the rows.
        assert_eq!(source_count(store, source.id).await, 3, "{}", db.label);

        // An edit: new text and rating. The old version goes to the history.
        let mut edited = mention("c", "Lid broke, and support never answered", Some(1), 3);
        edited.sentiment = Some(Sentiment {
            label: Label::Negative,
            score: -0.9,
            confidence: 0.95,
        });
        // More likes only: updated in place, no new revision.
        let mut liked = mention("b", "Boils fast", Some(4), 2);
        liked.mention.engagement.likes = 12;
        let s3 = store
            .ingest(&source, &[edited, liked], Some(("test", "1")))
            .await
            .unwrap();
        assert_eq!(
            (s3.new, s3.updated, s3.unchanged),
            (0, 2, 0),
            "{}",
            db.label
        );

        let list = store.mentions(&MentionQuery::default()).await.unwrap();
        assert_eq!(list.len(), 3);
        let c = list.iter().find(|m| m.mention.external_id == "c").unwrap();
        assert_eq!(c.mention.text, "Lid broke, and support never answered");
        assert_eq!(c.mention.rating, Some(1));
        assert_eq!(c.revision, 2);
        let s = c.sentiment.unwrap();
        assert_eq!(s.label, Label::Negative);
        assert!((s.score + 0.9).abs() < 1e-6);
        let history = store.mention_history(c.id).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].2, "Lid broke");
        assert_eq!(history[0].3, Some(2));
        let b = list.iter().find(|m| m.mention.external_id == "b").unwrap();
        assert_eq!(b.mention.engagement.likes, 12);
        assert_eq!(b.revision, 1);
        assert!(store.mention_history(b.id).await.unwrap().is_empty());
        // Fields come back as stored.
        assert_eq!(
            c.mention.extra.as_ref().unwrap()["version"],
            serde_json::json!("2.1")
        );
        assert_eq!(c.mention.url.as_deref(), Some("https://example.com/r/c"));
        assert_eq!(c.source, "reviews");
        assert_eq!(c.watch, "Acme Kettle");
    }
}

#[tokio::test]
async fn repeated_ids_in_one_batch_store_the_last_one() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let source = setup(store).await;
        let batch = vec![
            mention("x", "first text", Some(3), 1),
            mention("x", "second text", Some(4), 1),
        ];
        let s = store.ingest(&source, &batch, None).await.unwrap();
        assert_eq!((s.seen, s.new), (1, 1), "{}", db.label);
        let list = store.mentions(&MentionQuery::default()).await.unwrap();
        assert_eq!(list[0].mention.text, "second text");
        assert!(list[0].sentiment.is_none());
    }
}

#[tokio::test]
async fn a_failing_batch_leaves_nothing_behind() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let source = setup(store).await;
        let mut bad = mention("bad", "stars out of range", Some(5), 2);
        // Bypass validation to hit the database's own check in the middle of a batch.
        bad.mention.rating = Some(9);
        let batch = vec![
            mention("ok1", "fine", Some(4), 1),
            bad,
            mention("ok2", "fine too", Some(4), 3),
        ];
        assert!(store
            .ingest(&source, &batch, Some(("t", "1")))
            .await
            .is_err());
        assert_eq!(store.count_mentions(None).await.unwrap(), 0, "{}", db.label);
        assert_eq!(source_count(store, source.id).await, 0, "{}", db.label);
        // The same batch without the bad row counts once.
        let good: Vec<_> = batch
            .into_iter()
            .filter(|m| m.mention.external_id != "bad")
            .collect();
        store
            .ingest(&source, &good, Some(("t", "1")))
            .await
            .unwrap();
        store
            .ingest(&source, &good, Some(("t", "1")))
            .await
            .unwrap();
        assert_eq!(source_count(store, source.id).await, 2, "{}", db.label);
    }
}

/// The mention count the sources page shows for a source.
async fn source_count(store: &Store, source_id: i64) -> i64 {
    let status = store.source_status().await.unwrap();
    status
        .iter()
        .find(|s| s.source_id == source_id)
        .unwrap()
        .mentions
}

#[tokio::test]
async fn a_fetch_run_commits_mentions_cursor_and_record_together() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let source = setup(store).await;
        let run = store.start_fetch_run(source.id, "w1").await.unwrap();
        let batch = vec![
            mention("a", "Great", Some(5), 1),
            mention("b", "Bad", Some(1), 2),
        ];
        let stats = store
            .finish_fetch(
                run,
                &source,
                RunOutcome {
                    batch: &batch,
                    model: Some(("test", "1")),
                    cursor: Some("{\"since\":42}"),
                    skipped: 1,
                    aggregate: Some(AggregateRating {
                        rating: 4.4,
                        count: Some(1234),
                    }),
                    note: Some("1 item had no id"),
                    partial: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(stats.new, 2);
        let src = store.source(source.id).await.unwrap().unwrap();
        assert_eq!(src.cursor.as_deref(), Some("{\"since\":42}"));
        let runs = store.fetch_runs(source.id, 5).await.unwrap();
        assert_eq!(runs[0].status, "partial", "{}", db.label);
        assert_eq!((runs[0].items_new, runs[0].items_skipped), (2, 1));
        assert_eq!(runs[0].error_kind.as_deref(), Some("malformed"));
        let agg = store.latest_aggregate(source.id).await.unwrap().unwrap();
        assert_eq!(agg.count, Some(1234));

        // A failed run records its kind and message and leaves the cursor alone.
        let run2 = store.start_fetch_run(source.id, "w1").await.unwrap();
        store
            .fail_fetch(
                run2,
                FetchErrorKind::RateLimited,
                "HTTP 429, retry after 120 s",
            )
            .await
            .unwrap();
        let status = store.source_status().await.unwrap();
        let st = status.iter().find(|s| s.source_id == source.id).unwrap();
        let last = st.last_run.as_ref().unwrap();
        assert_eq!(last.status, "failed");
        assert_eq!(last.error_kind.as_deref(), Some("rate_limited"));
        assert_eq!(st.mentions, 2);
        let src = store.source(source.id).await.unwrap().unwrap();
        assert_eq!(src.cursor.as_deref(), Some("{\"since\":42}"));
    }
}

#[tokio::test]
async fn mentions_filter_by_watch_source_and_date() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let source = setup(store).await;
        let batch: Vec<_> = (1..=9)
            .map(|d| mention(&format!("m{d}"), &format!("day {d}"), Some(4), d))
            .collect();
        store.ingest(&source, &batch, None).await.unwrap();
        let since = Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap();
        let list = store
            .mentions(&MentionQuery {
                watch_id: Some(source.watch_id),
                since: Some(since),
                until: Some(since + Duration::days(3)),
                limit: Some(2),
                ..Default::default()
            })
            .await
            .unwrap();
        let ids: Vec<_> = list
            .iter()
            .map(|m| m.mention.external_id.as_str())
            .collect();
        assert_eq!(ids, vec!["m7", "m6"], "{}", db.label);
        let other = store.watch_by_name("Other").await.unwrap().unwrap();
        let none = store
            .mentions(&MentionQuery {
                watch_id: Some(other.id),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(none.is_empty());
    }
}

#[tokio::test]
async fn push_sources_are_created_once_and_survive_config_sync() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let source = setup(store).await;
        let a = store.push_source(source.watch_id, "import").await.unwrap();
        let b = store.push_source(source.watch_id, "import").await.unwrap();
        assert_eq!(a.id, b.id);
        // Names are matched ignoring case, so a re-import under `IMPORT` stores nothing twice.
        let upper = store.push_source(source.watch_id, "IMPORT").await.unwrap();
        assert_eq!(upper.id, a.id, "{}", db.label);
        assert_eq!(upper.name, "import");
        // Beyond ASCII too, on both databases (SQLite's lower() folds ASCII only).
        let e1 = store.push_source(source.watch_id, "écoute").await.unwrap();
        let e2 = store.push_source(source.watch_id, "ÉCOUTE").await.unwrap();
        assert_eq!(e1.id, e2.id, "{}", db.label);
        // A configured source's name cannot be used for pushing, in any case.
        for name in ["reviews", "Reviews", "REVIEWS"] {
            let e = store.push_source(source.watch_id, name).await.unwrap_err();
            assert!(e.to_string().contains("is a configured"), "{name}: {e}");
        }
        for name in ["", "  "] {
            let e = store.push_source(source.watch_id, name).await.unwrap_err();
            assert!(e.to_string().contains("source name is empty"), "{e}");
        }
        let c = config::parse(CONFIG, "test.toml", &[]).unwrap();
        store.sync_config(&c).await.unwrap();
        assert!(
            store.source(a.id).await.unwrap().unwrap().enabled,
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn outbox_sends_once_per_key_and_leases_exclusively() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let to = vec!["a@example.com".to_string()];
        let email = |key| NewEmail {
            kind: "digest",
            dedup_key: Some(key),
            watch_id: None,
            recipients: &to,
            subject: "Weekly digest",
            message: "Subject: x\r\n\r\nbody",
        };
        let first = store
            .enqueue_email(&email("digest:1:2026-W47"))
            .await
            .unwrap();
        let again = store
            .enqueue_email(&email("digest:1:2026-W47"))
            .await
            .unwrap();
        assert!(first.is_some());
        assert!(again.is_none(), "{}", db.label);
        store
            .enqueue_email(&email("digest:1:2026-W48"))
            .await
            .unwrap();

        let w1 = store.claim_emails("w1", 10, 60_000).await.unwrap();
        let w2 = store.claim_emails("w2", 10, 60_000).await.unwrap();
        assert_eq!(w1.len(), 2);
        assert!(
            w2.is_empty(),
            "a leased email was claimed twice on {}",
            db.label
        );
        assert!(store.mark_email_sent(w1[0].id, "w1", None).await.unwrap());
        assert!(store
            .mark_email_failed(w1[1].id, "w1", "connection refused", Some(0))
            .await
            .unwrap());
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!((stats.sent, stats.queued), (1, 1));
        // The failed one is due again (retry time 0) and comes back with its attempt count.
        let retry = store.claim_emails("w2", 10, 60_000).await.unwrap();
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].attempts, 1);
    }
}

#[tokio::test]
async fn a_sender_whose_lease_ran_out_writes_nothing_more() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let to = vec!["a@example.com".to_string(), "b@example.com".to_string()];
        store
            .enqueue_email(&NewEmail {
                kind: "alert",
                dedup_key: None,
                watch_id: None,
                recipients: &to,
                subject: "Alert",
                message: "Subject: x\r\n\r\nbody",
            })
            .await
            .unwrap();
        let id = store.claim_emails("slow", 10, 40).await.unwrap()[0].id;
        // While it holds the email, a sender keeps it by renewing before each recipient.
        assert!(store.renew_email_lease(id, "slow", 40).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        // Its lease ran out and another worker claimed the email.
        let taken = store.claim_emails("fresh", 10, 60_000).await.unwrap();
        assert_eq!(taken.len(), 1, "{}", db.label);
        assert!(!store.renew_email_lease(id, "slow", 60_000).await.unwrap());
        let a = ["a@example.com".to_string()];
        assert!(!store
            .record_email_recipients(id, "slow", &a, &[])
            .await
            .unwrap());
        assert!(!store.mark_email_sent(id, "slow", None).await.unwrap());
        assert!(!store
            .mark_email_failed(id, "slow", "late", None)
            .await
            .unwrap());
        // The new holder's work stands.
        let b = ["b@example.com".to_string()];
        assert!(store
            .record_email_recipients(id, "fresh", &b, &[])
            .await
            .unwrap());
        let again = store.claim_emails("third", 10, 60_000).await.unwrap();
        assert!(again.is_empty(), "{}", db.label);
        assert!(store.mark_email_sent(id, "fresh", None).await.unwrap());
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!((stats.sent, stats.queued, stats.failed), (1, 0, 0));
    }
}

#[tokio::test]
async fn jobs_are_claimed_by_one_worker() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let now = zmot::store::now_ms();
        store
            .ensure_job("fetch:1", "hourly", now - 1_000)
            .await
            .unwrap();
        // Registered again on the same schedule, it keeps its turn.
        store
            .ensure_job("fetch:1", "hourly", now + 3_600_000)
            .await
            .unwrap();
        store
            .ensure_job("fetch:2", "hourly", now + 3_600_000)
            .await
            .unwrap();
        // Not due yet.
        assert!(!store
            .claim_job("fetch:2", "w1", now, now + 60_000)
            .await
            .unwrap());
        let a = store
            .claim_job("fetch:1", "w1", now, now + 50)
            .await
            .unwrap();
        let b = store
            .claim_job("fetch:1", "w2", now, now + 60_000)
            .await
            .unwrap();
        assert!(a && !b, "{}", db.label);
        // The lease expires: another worker takes over; the first one's finish is ignored.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let later = zmot::store::now_ms();
        assert!(store
            .claim_job("fetch:1", "w2", later, later + 60_000)
            .await
            .unwrap());
        assert!(!store
            .finish_job("fetch:1", "w1", now, "ok", None, now + 10_000)
            .await
            .unwrap());
        assert!(store
            .finish_job("fetch:1", "w2", later, "ok", None, now + 10_000)
            .await
            .unwrap());
        let jobs = store.jobs().await.unwrap();
        assert_eq!(
            jobs[0].next_run_at.unwrap().timestamp_millis(),
            now + 10_000
        );
        assert!(jobs[0].lease_owner.is_none());
    }
}

const TEN_MINUTES_MS: i64 = 10 * 60 * 1000;
const FIVE_MINUTES_MS: i64 = 5 * 60 * 1000;

/// Workers share the database, not a clock: one whose clock is ten minutes off (each
/// passes the scheduler its own `now`) neither takes over a job another still holds nor
/// runs a job before it is due.
#[tokio::test]
async fn job_leases_hold_between_workers_whose_clocks_disagree() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let now = zmot::store::now_ms();
        let (behind, ahead) = (now - TEN_MINUTES_MS, now + TEN_MINUTES_MS);
        for job in ["digest", "fetch:1"] {
            store
                .ensure_job(job, "hourly", now - 2 * TEN_MINUTES_MS)
                .await
                .unwrap();
        }
        store
            .ensure_job("fetch:2", "hourly", now + FIVE_MINUTES_MS)
            .await
            .unwrap();

        // A worker on time holds `digest` for five minutes: one ahead does not take it.
        assert!(store
            .claim_job("digest", "on-time", now, now + FIVE_MINUTES_MS)
            .await
            .unwrap());
        assert!(
            !store
                .claim_job("digest", "ahead", ahead, ahead + FIVE_MINUTES_MS)
                .await
                .unwrap(),
            "a worker ten minutes ahead took over a held job on {}",
            db.label
        );
        // A worker behind holds `fetch:1` for five minutes: one on time does not take it.
        assert!(store
            .claim_job("fetch:1", "behind", behind, behind + FIVE_MINUTES_MS)
            .await
            .unwrap());
        assert!(
            !store
                .claim_job("fetch:1", "on-time", now, now + FIVE_MINUTES_MS)
                .await
                .unwrap(),
            "a lease taken by a worker ten minutes behind did not hold on {}",
            db.label
        );
        // A job due in five minutes is not run yet by a worker ten minutes ahead.
        assert!(
            !store
                .claim_job("fetch:2", "ahead", ahead, ahead + FIVE_MINUTES_MS)
                .await
                .unwrap(),
            "a job not yet due was claimed on {}",
            db.label
        );
        let owners: Vec<_> = store
            .jobs()
            .await
            .unwrap()
            .into_iter()
            .map(|j| (j.name, j.lease_owner))
            .collect();
        assert_eq!(
            owners,
            [
                ("digest".to_string(), Some("on-time".to_string())),
                ("fetch:1".to_string(), Some("behind".to_string())),
                ("fetch:2".to_string(), None),
            ]
        );
    }
}

/// The same for emails: a sender whose clock is ten minutes behind or ahead neither takes
/// over an email another still holds (it would be sent twice) nor keeps one past its
/// lease when it dies; an email it queues or reschedules is due on the others' time.
#[tokio::test]
async fn email_leases_hold_between_workers_whose_clocks_disagree() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let behind = store.with_clock_skew(-TEN_MINUTES_MS);
        let ahead = store.with_clock_skew(TEN_MINUTES_MS);
        let to = vec!["a@example.com".to_string()];
        let email = NewEmail {
            kind: "alert",
            dedup_key: None,
            watch_id: None,
            recipients: &to,
            subject: "Alert",
            message: "Subject: x\r\n\r\nbody",
        };

        // A sender on time holds an email for five minutes: one ahead does not take it.
        store.enqueue_email(&email).await.unwrap();
        let held = store
            .claim_emails("on-time", 10, FIVE_MINUTES_MS)
            .await
            .unwrap();
        assert_eq!(held.len(), 1, "{}", db.label);
        assert!(
            ahead
                .claim_emails("ahead", 10, FIVE_MINUTES_MS)
                .await
                .unwrap()
                .is_empty(),
            "a worker ten minutes ahead took over a held email on {}",
            db.label
        );
        assert!(store
            .mark_email_failed(held[0].id, "on-time", "451 try again", Some(0))
            .await
            .unwrap());

        // A sender behind holds it for five minutes, renewing before each recipient: one
        // on time does not take it.
        let held = behind
            .claim_emails("behind", 10, FIVE_MINUTES_MS)
            .await
            .unwrap();
        assert_eq!(held.len(), 1, "{}", db.label);
        assert!(
            store
                .claim_emails("on-time", 10, FIVE_MINUTES_MS)
                .await
                .unwrap()
                .is_empty(),
            "an email held by a worker ten minutes behind was claimed again on {}",
            db.label
        );
        assert!(behind
            .renew_email_lease(held[0].id, "behind", FIVE_MINUTES_MS)
            .await
            .unwrap());
        assert!(
            store
                .claim_emails("on-time", 10, FIVE_MINUTES_MS)
                .await
                .unwrap()
                .is_empty(),
            "a lease renewed by a worker ten minutes behind did not hold on {}",
            db.label
        );
        assert!(behind
            .mark_email_sent(held[0].id, "behind", None)
            .await
            .unwrap());

        // A sender ahead dies holding an email: it comes back when its lease ends.
        store.enqueue_email(&email).await.unwrap();
        assert_eq!(ahead.claim_emails("ahead", 10, 50).await.unwrap().len(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let back = store
            .claim_emails("on-time", 10, FIVE_MINUTES_MS)
            .await
            .unwrap();
        assert_eq!(
            back.len(),
            1,
            "a dead worker's lease outlived its length on {}",
            db.label
        );
        // Rescheduled by a sender ahead to retry at once, it is due at once.
        assert!(store
            .mark_email_failed(back[0].id, "on-time", "451 try again", Some(0))
            .await
            .unwrap());
        let again = ahead
            .claim_emails("ahead", 10, FIVE_MINUTES_MS)
            .await
            .unwrap();
        assert!(ahead
            .mark_email_failed(again[0].id, "ahead", "451 try again", Some(0))
            .await
            .unwrap());
        assert_eq!(
            store
                .claim_emails("on-time", 10, FIVE_MINUTES_MS)
                .await
                .unwrap()
                .len(),
            1,
            "a retry scheduled by a worker ahead was not due on {}",
            db.label
        );
        // Queued by a sender ahead, it is due at once for the others too.
        ahead.enqueue_email(&email).await.unwrap();
        assert_eq!(
            store
                .claim_emails("on-time", 10, FIVE_MINUTES_MS)
                .await
                .unwrap()
                .len(),
            1,
            "an email queued by a worker ahead was not due on {}",
            db.label
        );
    }
}

#[tokio::test]
async fn a_changed_schedule_counts_from_now_and_an_unchanged_one_keeps_its_turn() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let next = |name: &'static str| async move {
            store
                .jobs()
                .await
                .unwrap()
                .into_iter()
                .find(|j| j.name == name)
                .and_then(|j| j.next_run_at)
                .map(|t| t.timestamp_millis())
        };
        // Once a year; a restart on the same schedule keeps the stored turn.
        store
            .ensure_job("fetch:1", "0 0 3 1 1 * UTC", 50_000)
            .await
            .unwrap();
        store
            .ensure_job("fetch:1", "0 0 3 1 1 * UTC", 7_000)
            .await
            .unwrap();
        assert_eq!(next("fetch:1").await, Some(50_000), "{}", db.label);
        // Made every minute: it counts from now, not after next January.
        store
            .ensure_job("fetch:1", "0 * * * * * UTC", 7_000)
            .await
            .unwrap();
        assert_eq!(next("fetch:1").await, Some(7_000), "{}", db.label);
        // A job recorded before schedules were stored keeps what was due and learns its
        // schedule, so the restart after the upgrade forgets nothing...
        sqlx::query("INSERT INTO jobs (name, next_run_at) VALUES ('digest:w', 1000)")
            .execute(store.pool())
            .await
            .unwrap();
        store
            .ensure_job("digest:w", "0 0 8 * * MON UTC", 90_000)
            .await
            .unwrap();
        assert_eq!(next("digest:w").await, Some(1_000), "{}", db.label);
        // ...but does not wait for a turn its schedule no longer gives (`0 8 1 * Mon`
        // ran on Mondays that are the 1st before crontab's day rule was followed).
        sqlx::query("INSERT INTO jobs (name, next_run_at) VALUES ('digest:v', 800000)")
            .execute(store.pool())
            .await
            .unwrap();
        store
            .ensure_job("digest:v", "0 0 8 1 * MON UTC", 90_000)
            .await
            .unwrap();
        assert_eq!(next("digest:v").await, Some(90_000), "{}", db.label);
        store
            .ensure_job("digest:w", "0 0 9 * * MON UTC", 95_000)
            .await
            .unwrap();
        assert_eq!(next("digest:w").await, Some(95_000), "{}", db.label);
    }
}

#[tokio::test]
async fn postgres_runs_when_configured() {
    // CI sets ZMOT_TEST_DATABASE_URL; this makes a missing PostgreSQL a failure there
    // instead of a silently smaller test run.
    if std::env::var("CI").is_ok() {
        let dbs = testutil::all().await.unwrap();
        assert!(
            dbs.iter().any(|d| d.label == "postgres"),
            "CI must run the PostgreSQL tests: ZMOT_TEST_DATABASE_URL is not set"
        );
    }
}

#[tokio::test]
async fn pruning_keeps_mentions_and_the_latest_run() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let source = setup(store).await;
        store
            .ingest(&source, &[mention("a", "x", None, 1)], None)
            .await
            .unwrap();
        for _ in 0..3 {
            let run = store.start_fetch_run(source.id, "w").await.unwrap();
            store
                .fail_fetch(run, FetchErrorKind::Network, "down")
                .await
                .unwrap();
        }
        let (runs, _) = store.prune(i64::MAX).await.unwrap();
        assert_eq!(runs, 2, "{}", db.label);
        assert_eq!(store.fetch_runs(source.id, 10).await.unwrap().len(), 1);
        assert_eq!(store.count_mentions(None).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn control_characters_never_reach_the_database_nor_abort_a_batch() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let src = setup(store).await;
        let mut nul = mention(
            "nul",
            "nul \u{0} here\u{1b}[31m, tab\tand\nline",
            Some(2),
            3,
        );
        nul.mention.title = Some("t\u{0}itle".into());
        nul.mention.author = Some("A\u{0}nn".into());
        nul.mention.owner_reply = Some("sorry\u{0}".into());
        nul.mention.extra = Some(serde_json::json!({"k": "v\u{0}"}));
        let batch = vec![
            mention("a", "before", Some(5), 1),
            nul,
            mention("b", "after", Some(4), 5),
        ];
        let stats = store.ingest(&src, &batch, None).await.unwrap();
        assert_eq!(stats.new, 3, "{}", db.label);
        let found = store
            .find_mentions(&Default::default(), 0, 10)
            .await
            .unwrap();
        let m = &found
            .iter()
            .find(|m| m.mention.mention.external_id == "nul")
            .unwrap()
            .mention;
        assert_eq!(
            m.mention.text, "nul  here[31m, tab\tand\nline",
            "{}",
            db.label
        );
        assert_eq!(m.mention.title.as_deref(), Some("title"));
        assert_eq!(m.mention.author.as_deref(), Some("Ann"));
        assert_eq!(m.mention.owner_reply.as_deref(), Some("sorry"));
        // An edit with a NUL is an update like any other.
        let edited = vec![mention("nul", "edited \u{0}", Some(2), 3)];
        let stats = store.ingest(&src, &edited, None).await.unwrap();
        assert_eq!(stats.updated, 1, "{}", db.label);
        // A search term with a NUL is read as text, not refused by the database.
        let f = zmot::store::MentionFilter {
            text: Some("edit\u{0}ed".into()),
            ..Default::default()
        };
        assert_eq!(
            store.find_mentions(&f, 0, 10).await.unwrap().len(),
            1,
            "{}",
            db.label
        );
        // Triage notes too.
        let id = m.id;
        let change = zmot::store::TriageUpdate {
            note: Some("called \u{0}back".into()),
            ..Default::default()
        };
        let t = store
            .update_triage(id, &change, Some("p\u{0}at"), Utc::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.note.as_deref(), Some("called back"), "{}", db.label);
        assert_eq!(t.updated_by.as_deref(), Some("pat"));
        // A failed run's message is stored without them as well.
        let run = store.start_fetch_run(src.id, "w").await.unwrap();
        store
            .fail_fetch(run, FetchErrorKind::Malformed, "bad byte \u{0}")
            .await
            .unwrap();
        let runs = store.fetch_runs(src.id, 1).await.unwrap();
        assert_eq!(runs[0].error.as_deref(), Some("bad byte "), "{}", db.label);
    }
}

#[tokio::test]
async fn text_search_ignores_case_beyond_ascii() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let src = setup(store).await;
        let mut titled = mention("t", "fine kettle", Some(4), 2);
        titled.mention.title = Some("ÉTÉ".into());
        let batch = vec![
            mention("u", "CAFÉ is awful Ünïcödé", Some(1), 1),
            titled,
            mention("o", "other", Some(5), 3),
        ];
        store.ingest(&src, &batch, None).await.unwrap();
        let search = |q: &'static str| async move {
            let f = zmot::store::MentionFilter {
                text: Some(q.into()),
                ..Default::default()
            };
            store
                .find_mentions(&f, 0, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.mention.mention.external_id)
                .collect::<Vec<_>>()
        };
        for q in ["CAFÉ", "café", "Café", "ünïc", "ÜNÏCÖDÉ", "awful ünï"] {
            assert_eq!(search(q).await, vec!["u"], "{} {q}", db.label);
        }
        assert_eq!(search("été").await, vec!["t"], "{}", db.label);
        assert_eq!(search("caf%").await, Vec::<String>::new());
        // An edit is searched by its new text.
        store
            .ingest(&src, &[mention("u", "Straße", Some(1), 1)], None)
            .await
            .unwrap();
        assert_eq!(search("STRASSE").await, Vec::<String>::new());
        assert_eq!(search("STRAßE").await, vec!["u"], "{}", db.label);
        assert!(search("café").await.is_empty());
    }
}

#[tokio::test]
async fn mentions_stored_before_the_search_column_are_found_after_reopening() {
    let db = testutil::sqlite().await.unwrap();
    let src = setup(&db.store).await;
    db.store
        .ingest(&src, &[mention("u", "CAFÉ noir", Some(1), 1)], None)
        .await
        .unwrap();
    // As a database migrated from before the column would have it.
    sqlx::query("UPDATE mentions SET search_text = NULL")
        .execute(db.store.pool())
        .await
        .unwrap();
    let reopened = Store::connect(&db.url, 2).await.unwrap();
    let f = zmot::store::MentionFilter {
        text: Some("café".into()),
        ..Default::default()
    };
    assert_eq!(reopened.find_mentions(&f, 0, 10).await.unwrap().len(), 1);
}

/// Processes starting together on a new SQLite file (`zmot run` and `zmot serve` from
/// one compose file) each find the schema missing: one creates it, the others wait
/// for it instead of failing on `table watches already exists`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opened_at_once_on_a_new_sqlite_file_all_start() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/zmot.db", dir.path().display());
        let (a, b, c) = tokio::join!(
            Store::connect(&url, 2),
            Store::connect(&url, 2),
            Store::connect(&url, 2)
        );
        for s in [a, b, c] {
            let s = s.unwrap();
            assert!(s.jobs().await.unwrap().is_empty());
        }
    }
}

#[tokio::test]
async fn a_renamed_source_or_watch_keeps_its_row_and_mentions() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let reviews = setup(store).await;
        store
            .ingest(
                &reviews,
                &[mention("a", "Lovely kettle", Some(5), 1)],
                Some(("test", "1")),
            )
            .await
            .unwrap();
        let ids = |sources: &[SourceRow]| -> Vec<(String, i64, bool)> {
            let mut v: Vec<_> = sources
                .iter()
                .map(|s| (s.name.clone(), s.id, s.enabled))
                .collect();
            v.sort();
            v
        };
        let before = store.sources(None).await.unwrap();
        let hn_id = before.iter().find(|s| s.name == "hn").unwrap().id;

        // The feed renamed (same kind and parameters), "hn" written in capitals, and the
        // watch renamed: the same rows, under the new names.
        let renamed = CONFIG
            .replace("name = \"reviews\"", "name = \"acme-feed\"")
            .replace("name = \"hn\"", "name = \"HN\"")
            .replace("name = \"Acme Kettle\"", "name = \"Acme Kettle Pro\"");
        let c = config::parse(&renamed, "test.toml", &[]).unwrap();
        store.sync_config(&c).await.unwrap();
        let after = store.sources(None).await.unwrap();
        assert_eq!(
            ids(&after),
            [
                ("HN".to_string(), hn_id, true),
                ("acme-feed".to_string(), reviews.id, true)
            ],
            "{}",
            db.label
        );
        assert!(after.iter().all(|s| s.watch_name == "Acme Kettle Pro"));
        let watch = store
            .watch_by_name("Acme Kettle Pro")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(watch.id, reviews.watch_id, "{}", db.label);
        assert!(store.watch_by_name("Acme Kettle").await.unwrap().is_none());
        let kept = store
            .mentions(&MentionQuery {
                watch_id: Some(watch.id),
                limit: Some(10),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(kept.len(), 1, "{}", db.label);
        assert_eq!(
            (kept[0].source.as_str(), kept[0].watch.as_str()),
            ("acme-feed", "Acme Kettle Pro")
        );

        // A new name with other parameters is another place: a new row, the old one off.
        let moved = renamed.replace("http://127.0.0.1:9/feed", "http://127.0.0.1:9/other");
        let c = config::parse(
            &moved.replace("name = \"acme-feed\"", "name = \"other-feed\""),
            "test.toml",
            &[],
        )
        .unwrap();
        store.sync_config(&c).await.unwrap();
        let after = store.sources(None).await.unwrap();
        let old = after.iter().find(|s| s.id == reviews.id).unwrap();
        assert_eq!((old.name.as_str(), old.enabled), ("acme-feed", false));
        let new = after.iter().find(|s| s.name == "other-feed").unwrap();
        assert!(new.enabled && new.id != reviews.id, "{}", db.label);
    }
}

#[tokio::test]
async fn a_rename_that_could_be_either_of_two_is_not_guessed() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        // Two watches read the same feed; both leave the file and one new watch reads it.
        let two = "[[watch]]\nname = \"A\"\n[[watch.source]]\nname = \"f\"\nkind = \"feed\"\nparams = { url = \"http://127.0.0.1:9/feed\" }\n\
                   [[watch]]\nname = \"B\"\n[[watch.source]]\nname = \"f\"\nkind = \"feed\"\nparams = { url = \"http://127.0.0.1:9/feed\" }\n";
        store
            .sync_config(&config::parse(two, "t.toml", &[]).unwrap())
            .await
            .unwrap();
        let one = "[[watch]]\nname = \"C\"\n[[watch.source]]\nname = \"f\"\nkind = \"feed\"\nparams = { url = \"http://127.0.0.1:9/feed\" }\n";
        store
            .sync_config(&config::parse(one, "t.toml", &[]).unwrap())
            .await
            .unwrap();
        let names: Vec<String> = store
            .watches()
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(names, ["A", "B", "C"], "{}", db.label);
    }
}
