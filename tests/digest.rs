//! The weekly digest on a fixed dataset: golden figures, valid HTML that escapes hostile
//! text and references every inline chart it carries, PNGs that decode, delivery to a
//! real SMTP server on 127.0.0.1, and one digest per watch and week.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use zmot::config::{self, Config};
use zmot::digest::{self, Queued};
use zmot::domain::{Engagement, Label, Mention, ScoredMention, Sentiment};
use zmot::notify::{self, Mailer};
use zmot::store::{SourceRow, Store};
use zmot::testutil;

use mail_parser::MimeHeaders;
use support::smtp::SmtpServer;

const CONFIG: &str = r#"
[email]
from = "zmot <digest@acme.test>"

[[watch]]
name = "Acme"
competitors = "kettles"
recipients = ["lead@acme.test"]

[[watch]]
name = "Rival"
competitors = "kettles"
recipients = ["rival@acme.test"]

[[watch]]
name = "Empty"
recipients = ["empty@acme.test"]
"#;

/// Wednesday 25 November 2026: the week that ended last is 2026-W47 (16 to 22 November).
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()
}

fn day(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
}

fn review(id: &str, text: &str, stars: u8, score: f32, at: DateTime<Utc>) -> ScoredMention {
    let label = if score <= -0.3 {
        Label::Negative
    } else if score >= 0.3 {
        Label::Positive
    } else {
        Label::Neutral
    };
    ScoredMention {
        mention: Mention {
            external_id: id.into(),
            url: Some(format!("https://reviews.test/{id}")),
            author: Some("Sam".into()),
            title: None,
            text: text.into(),
            rating: Some(stars),
            engagement: Engagement::default(),
            language: Some("en".into()),
            published_at: at,
            owner_reply: (id == "w1").then(|| "Sorry, we are sending a new one.".to_string()),
            owner_reply_at: (id == "w1").then(|| at + Duration::hours(5)),
            extra: None,
        },
        sentiment: Some(Sentiment {
            label,
            score,
            confidence: 0.9,
        }),
    }
}

async fn setup(store: &Store, config: &Config) -> (SourceRow, SourceRow) {
    store.sync_config(config).await.unwrap();
    let acme = store.watch_by_name("Acme").await.unwrap().unwrap();
    let rival = store.watch_by_name("Rival").await.unwrap().unwrap();
    let a = store.push_source(acme.id, "store").await.unwrap();
    let r = store.push_source(rival.id, "store").await.unwrap();
    // Week 47, Acme: 4 negative, 2 neutral, 4 positive; one hostile text.
    let this_week = vec![
        review(
            "w1",
            "Battery drain is terrible, dead by noon.",
            1,
            -0.9,
            day(16, 10),
        ),
        review(
            "w2",
            "Awful battery drain after the update, I want a refund.",
            2,
            -0.7,
            day(17, 11),
        ),
        review(
            "w3",
            "The battery drain makes it useless. <script>alert(1)</script>",
            1,
            -0.8,
            day(18, 12),
        ),
        review(
            "w4",
            "Asked for a refund twice, no answer.",
            2,
            -0.6,
            day(19, 13),
        ),
        review("w5", "It is fine, nothing special.", 3, 0.0, day(20, 9)),
        review("w6", "Does the job.", 3, 0.1, day(20, 15)),
        review("w7", "Love the design, boils fast.", 5, 0.9, day(21, 8)),
        review("w8", "Great kettle, quiet and quick.", 5, 0.8, day(21, 18)),
        review(
            "w9",
            "Excellent value, would buy again.",
            5,
            0.85,
            day(22, 10),
        ),
        review("w10", "Very happy with it.", 5, 0.7, day(22, 20)),
    ];
    // Week 46: 5 mentions, 1 negative. Weeks before: quiet and positive.
    let mut before = vec![
        review("p1", "Lid is a bit stiff.", 2, -0.4, day(9, 10)),
        review("p2", "Lovely kettle.", 5, 0.8, day(10, 10)),
        review("p3", "Works great.", 5, 0.7, day(11, 10)),
        review("p4", "Quick to boil.", 4, 0.6, day(12, 10)),
        review("p5", "Nice colour, good price.", 5, 0.7, day(13, 10)),
    ];
    for d in 1..=6 {
        before.push(review(
            &format!("o{d}"),
            "Good kettle, quiet.",
            5,
            0.6,
            day(d, 7),
        ));
    }
    store
        .ingest(&a, &this_week, Some(("test", "1")))
        .await
        .unwrap();
    store
        .ingest(&a, &before, Some(("test", "1")))
        .await
        .unwrap();
    let rival_week = vec![
        review("r1", "Rival kettle is okay.", 4, 0.4, day(17, 10)),
        review("r2", "Rival kettle broke.", 1, -0.8, day(18, 10)),
    ];
    store
        .ingest(&r, &rival_week, Some(("test", "1")))
        .await
        .unwrap();
    (a, r)
}

fn config(extra: &str) -> Config {
    config::parse(&format!("{CONFIG}{extra}"), "test.toml", &[]).unwrap()
}

#[tokio::test]
async fn golden_figures_of_a_fixed_week() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config("");
        setup(store, &c).await;
        // An alert opened during the week shows up as fired.
        zmot::alerts::check_watch(store, &c, "Acme", day(20, 12))
            .await
            .unwrap();
        let tz = chrono_tz::UTC;
        let d = digest::compute(store, &c, "Acme", digest::report::last_full_week(tz, now()))
            .await
            .unwrap();
        assert_eq!(d.week, "2026-W47", "{}", db.label);
        assert_eq!(d.from, day(16, 0));
        assert_eq!(d.to, day(23, 0));
        let t = &d.this_week;
        assert_eq!(
            (t.mentions, t.negative, t.neutral, t.positive),
            (10, 4, 2, 4)
        );
        assert!((t.mean_rating.unwrap() - 3.2).abs() < 1e-9);
        assert_eq!(t.rating_counts, [2, 2, 2, 0, 4]);
        assert_eq!((t.replyable, t.replied), (10, 1));
        assert!((t.median_reply_hours.unwrap() - 5.0).abs() < 1e-9);
        assert_eq!(d.last_week.mentions, 5);
        assert_eq!(d.last_week.negative, 1);
        assert_eq!(d.weeks.len(), 12);
        assert_eq!(d.weeks.last().unwrap().label, "2026-W47");
        assert_eq!(d.weeks[10].stats.mentions, 5);
        assert_eq!(d.weeks[9].stats.mentions, 5); // 2 to 6 November
        assert_eq!(d.weeks[8].stats.mentions, 1); // Sunday 1 November
        assert_eq!(d.volume_by_source, vec![("store".to_string(), 10)]);
        assert_eq!(d.ratings.len(), 1);
        assert_eq!(d.ratings[0].points.last().unwrap().0, "W47");
        // Drivers: the planted phrases, with their journey stage and an example.
        let terms: Vec<&str> = d.drivers.iter().map(|x| x.term.as_str()).collect();
        assert_eq!(terms.first(), Some(&"battery drain"), "{terms:?}");
        assert!(terms.contains(&"refund"), "{terms:?}");
        let battery = &d.drivers[0];
        assert_eq!(battery.mentions, 3);
        assert_eq!(battery.stage.as_deref(), Some("use"));
        assert!(battery
            .example
            .excerpt
            .starts_with("Battery drain is terrible"));
        let refund = d.drivers.iter().find(|x| x.term == "refund").unwrap();
        assert_eq!(refund.stage.as_deref(), Some("support"));
        // Best and worst.
        let worst: Vec<f32> = d.most_negative.iter().map(|m| m.score).collect();
        assert_eq!(worst, vec![-0.9, -0.8, -0.7]);
        assert!(d.most_negative[0].replied);
        let best: Vec<f32> = d.most_positive.iter().map(|m| m.score).collect();
        assert_eq!(best, vec![0.9, 0.85, 0.8]);
        // The buyer's view: the ten most recent reviews are this week's: 3.2 stars.
        assert_eq!(d.buyer_views.len(), 1);
        assert!((d.buyer_views[0].average.unwrap() - 3.2).abs() < 1e-9);
        assert_eq!(d.health, zmot::trends::Health::Red);
        assert!(!d.alerts_fired.is_empty(), "{}", db.label);
        assert!(d.alerts_fired.iter().any(|a| a.rule == "buyer_view_rating"));
        // Competitors: both watches of the group.
        assert_eq!(d.competitors.len(), 2);
        let rival = d.competitors.iter().find(|c| c.watch == "Rival").unwrap();
        assert_eq!(rival.mentions, 2);
        assert!((rival.mean_rating.unwrap() - 2.5).abs() < 1e-9);
        assert_eq!(rival.negative_share, Some(0.5));
    }
}

/// Over more mentions than "what drives negativity" may read, the digest's figures still
/// count every mention, its most negative and positive are the week's, and it says the
/// drivers read only the newest; both for the last week and for an earlier one.
#[tokio::test]
async fn a_week_over_the_drivers_limit_keeps_exact_figures_and_says_so() {
    let limits = digest::report::DriverLimits {
        recent: 4,
        baseline: 3,
    };
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config("");
        setup(store, &c).await;
        let w47 = digest::report::last_full_week(chrono_tz::UTC, now());
        let full = digest::compute(store, &c, "Acme", w47.clone())
            .await
            .unwrap();
        assert!(!full.drivers_capped.any(), "{}", db.label);
        let (_, text, html, _) = digest::report::render(&full);
        assert!(!text.contains("There are more mentions"), "{text}");
        assert!(!html.contains("There are more mentions"));

        let d = digest::report::compute_within(store, &c, "Acme", w47, limits)
            .await
            .unwrap();
        // The figures are the same as without a limit.
        assert_eq!(d.this_week, full.this_week, "{}", db.label);
        assert_eq!(d.last_week, full.last_week, "{}", db.label);
        let stats = |x: &digest::Digest| -> Vec<_> {
            x.weeks
                .iter()
                .map(|w| (w.label.clone(), w.stats.clone()))
                .collect()
        };
        assert_eq!(stats(&d), stats(&full), "{}", db.label);
        assert_eq!(d.volume_by_source, full.volume_by_source);
        let t = &d.this_week;
        assert_eq!(
            (t.mentions, t.negative, t.neutral, t.positive),
            (10, 4, 2, 4)
        );
        // The newest four are all positive or neutral, yet the week's most negative are
        // listed: the database sorts the whole week.
        let worst: Vec<f32> = d.most_negative.iter().map(|m| m.score).collect();
        assert_eq!(worst, vec![-0.9, -0.8, -0.7], "{}", db.label);
        assert_eq!(d.most_positive, full.most_positive, "{}", db.label);
        // The drivers read the newest four: no negative mention among them.
        assert!(d.drivers.is_empty(), "{:?}", d.drivers);
        assert_eq!(
            d.drivers_capped,
            digest::report::DriversCapped {
                recent: Some(4),
                baseline: Some(3)
            },
            "{}",
            db.label
        );
        let (_, text, html, _) = digest::report::render(&d);
        let note = "There are more mentions than these terms count: they read only the newest 4 of this week's mentions and the newest 3 mentions of the four weeks before.";
        assert!(text.contains(note), "{text}");
        assert!(html.contains(note), "{html}");

        // An earlier week (read as it stood at its end) behaves the same.
        let w46 = digest::report::week_by_label(chrono_tz::UTC, now(), "2026-W46").unwrap();
        let full46 = digest::compute(store, &c, "Acme", w46.clone())
            .await
            .unwrap();
        let d46 = digest::report::compute_within(
            store,
            &c,
            "Acme",
            w46,
            digest::report::DriverLimits {
                recent: 2,
                baseline: 100,
            },
        )
        .await
        .unwrap();
        assert_eq!(d46.this_week, full46.this_week);
        assert_eq!(d46.this_week.mentions, 5);
        assert_eq!(d46.most_negative, full46.most_negative, "{}", db.label);
        assert_eq!(d46.most_negative.len(), 1);
        assert_eq!(
            d46.drivers_capped,
            digest::report::DriversCapped {
                recent: Some(2),
                baseline: None
            }
        );
        let (_, text, _, _) = digest::report::render(&d46);
        assert!(
            text.contains("they read only the newest 2 of this week's mentions."),
            "{text}"
        );
    }
}

#[tokio::test]
async fn html_is_valid_escapes_hostile_text_and_carries_every_chart() {
    let db = testutil::sqlite().await.unwrap();
    let store = &db.store;
    let c = config("");
    setup(store, &c).await;
    let d = digest::compute(
        store,
        &c,
        "Acme",
        digest::report::last_full_week(chrono_tz::UTC, now()),
    )
    .await
    .unwrap();
    let (subject, text, html, charts) = digest::render(&d);
    assert_eq!(
        subject,
        "[zmot] Acme weekly digest 2026-W47: RED, 10 mentions (+5, +100%), 40% negative"
    );
    let parsed = scraper::Html::parse_document(&html);
    assert!(parsed.errors.is_empty(), "HTML errors: {:?}", parsed.errors);
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        text.contains("<script>alert(1)</script>"),
        "plain text keeps the text as is"
    );
    // Every chart is referenced once, with its size and alt text; nothing else is.
    let img = scraper::Selector::parse("img").unwrap();
    let srcs: Vec<String> = parsed
        .select(&img)
        .map(|e| e.value().attr("src").unwrap().to_string())
        .collect();
    let ids: Vec<String> = charts.iter().map(|(id, _)| format!("cid:{id}")).collect();
    assert_eq!(srcs, ids);
    assert_eq!(charts.len(), 3);
    for e in parsed.select(&img) {
        assert!(!e.value().attr("alt").unwrap().is_empty());
    }
    for (id, chart) in &charts {
        let decoder = png::Decoder::new(std::io::Cursor::new(chart.png.clone()));
        let reader = decoder.read_info().unwrap_or_else(|e| panic!("{id}: {e}"));
        let info = reader.info();
        assert_eq!(
            (info.width, info.height),
            (chart.width, chart.height),
            "{id}"
        );
        assert_eq!(info.width, 600);
        if id != "volume-by-source" {
            assert_eq!(info.height, 260, "{id}");
        }
    }
    // The plain-text part has the same facts.
    assert!(
        text.contains("Mentions: 10 (+5, +100% on last week)"),
        "{text}"
    );
    assert!(text.contains("Mean rating: 3.20★"), "{text}");
    assert!(
        text.contains("\"battery drain\" [use]: 3 negative mentions"),
        "{text}"
    );
}

#[tokio::test]
async fn an_empty_week_says_so_in_one_line() {
    let db = testutil::sqlite().await.unwrap();
    let store = &db.store;
    let c = config("");
    setup(store, &c).await;
    let d = digest::compute(
        store,
        &c,
        "Empty",
        digest::report::last_full_week(chrono_tz::UTC, now()),
    )
    .await
    .unwrap();
    assert!(d.is_empty());
    let (subject, text, html, charts) = digest::render(&d);
    assert!(subject.ends_with("no mentions this week"), "{subject}");
    assert!(charts.is_empty());
    assert!(text.contains("No mentions this week."));
    assert!(!html.contains("<img"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_over_smtp_once_per_week_even_with_two_workers() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let smtp = SmtpServer::start().await;
        let c = config(&format!(
            "\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
            smtp.port
        ));
        setup(store, &c).await;
        let other = Store::connect(&db.url, 2).await.unwrap();
        let (a, b) = tokio::join!(
            digest::queue(store, &c, "Acme", None, now()),
            digest::queue(&other, &c, "Acme", None, now())
        );
        let outcomes = [a.unwrap(), b.unwrap()];
        let queued = outcomes
            .iter()
            .filter(|o| matches!(o, Queued::Queued { .. }))
            .count();
        assert_eq!(queued, 1, "{outcomes:?} on {}", db.label);
        // Later the same week, a restart: still once.
        let again = digest::queue(store, &c, "Acme", None, now() + Duration::days(2))
            .await
            .unwrap();
        assert_eq!(again, Queued::AlreadySent);
        let mailer = Mailer::from_config(&c.email).unwrap();
        assert_eq!(
            notify::deliver_due(store, &mailer, "w1")
                .await
                .unwrap()
                .sent,
            1
        );
        let got = smtp.messages();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].to, vec!["lead@acme.test"]);
        let msg = mail_parser::MessageParser::default()
            .parse(got[0].data.as_bytes())
            .unwrap();
        assert!(msg.subject().unwrap().contains("weekly digest 2026-W47"));
        let html = msg.body_html(0).unwrap();
        let mut inline = 0;
        for part in msg.attachments() {
            let cid = part.content_id().expect("inline parts have a Content-ID");
            let cid = cid.trim_matches(['<', '>']);
            assert!(html.contains(&format!("cid:{cid}")), "{cid} not referenced");
            let decoder = png::Decoder::new(std::io::Cursor::new(part.contents().to_vec()));
            assert_eq!(decoder.read_info().unwrap().info().width, 600);
            inline += 1;
        }
        assert_eq!(inline, 3);
        assert!(msg.body_text(0).unwrap().contains("What drives negativity"));
        // The next week is a new digest.
        let next = digest::queue(store, &c, "Acme", None, now() + Duration::days(7))
            .await
            .unwrap();
        assert!(matches!(next, Queued::Queued { .. }), "{next:?}");
    }
}

#[tokio::test]
async fn preview_writes_html_and_charts_without_sending() {
    let db = testutil::sqlite().await.unwrap();
    let store = &db.store;
    let c = config("");
    setup(store, &c).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("acme.html");
    digest::preview(store, &c, "Acme", Some("2026-W47"), now(), &out)
        .await
        .unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("src=\"acme-sentiment-trend.png\""));
    assert!(dir.path().join("acme-sentiment-trend.png").exists());
    assert!(!html.contains("cid:"));
    assert_eq!(store.outbox_stats().await.unwrap().queued, 0);
}

#[tokio::test]
async fn the_current_week_can_be_previewed_but_not_sent() {
    let db = testutil::sqlite().await.unwrap();
    let store = &db.store;
    let c = config("");
    setup(store, &c).await;
    // Wednesday of 2026-W48: the week is not over.
    let e = digest::queue(store, &c, "Acme", Some("2026-W48"), now())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("2026-W48 is not over yet"), "{e}");
    assert!(e.contains("2026-11-29") && e.contains("--preview"), "{e}");
    assert_eq!(store.outbox_stats().await.unwrap().queued, 0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w48.html");
    let d = digest::preview(store, &c, "Acme", Some("2026-W48"), now(), &out)
        .await
        .unwrap();
    assert_eq!(d.week, "2026-W48");
    assert!(out.exists());
    // Once the week is over, its digest goes out as usual.
    let next = digest::queue(store, &c, "Acme", None, now() + Duration::days(7))
        .await
        .unwrap();
    assert!(matches!(next, Queued::Queued { .. }), "{next:?}");
}

#[tokio::test]
async fn an_earlier_week_shows_the_buyers_view_and_alerts_as_they_were() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config("");
        setup(store, &c).await;
        // Week 47 brings the bad reviews and a red alert, still open now.
        zmot::alerts::check_watch(store, &c, "Acme", day(20, 12))
            .await
            .unwrap();
        let w46 = digest::report::week_by_label(chrono_tz::UTC, now(), "2026-W46").unwrap();
        let d = digest::compute(store, &c, "Acme", w46).await.unwrap();
        // At the end of W46 buyers saw p1-p5 and o2-o6: (2 + 5 + 5 + 4 + 5 + 5 x 5) / 10.
        assert_eq!(d.buyer_views.len(), 1, "{}", db.label);
        assert!(
            (d.buyer_views[0].average.unwrap() - 4.6).abs() < 1e-9,
            "{:?}",
            d.buyer_views[0]
        );
        assert_ne!(d.health, zmot::trends::Health::Red, "{:?}", d.reasons);
        assert!(
            !d.reasons.iter().any(|r| r.contains("alert")),
            "{:?}",
            d.reasons
        );
        assert!(d.alerts_fired.is_empty());
        // Week 47 itself: the alert opened during it is open at its end.
        let w47 = digest::report::week_by_label(chrono_tz::UTC, now(), "2026-W47").unwrap();
        let d = digest::compute(store, &c, "Acme", w47).await.unwrap();
        assert!(
            d.reasons.iter().any(|r| r.contains("red alert(s) open")),
            "{:?}",
            d.reasons
        );
    }
}

#[tokio::test]
async fn weeks_follow_the_watch_calendar_across_zones_and_dst() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config(
            r#"
[[watch]]
name = "NY"
timezone = "America/New_York"
competitors = "zones"
recipients = ["ny@acme.test"]

[[watch]]
name = "Tokyo"
timezone = "Asia/Tokyo"
competitors = "zones"
recipients = ["tokyo@acme.test"]
"#,
        );
        store.sync_config(&c).await.unwrap();
        let ny = store.watch_by_name("NY").await.unwrap().unwrap();
        let tokyo = store.watch_by_name("Tokyo").await.unwrap().unwrap();
        let ny_src = store.push_source(ny.id, "store").await.unwrap();
        let tokyo_src = store.push_source(tokyo.id, "store").await.unwrap();
        let at = |y, mo, d, h, mi| Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        // New York, W44: Monday 26 October 00:30 EDT (DST ends on 1 November, so W45 is
        // 169 hours long). W45: one mention.
        let ny_mentions = vec![
            review("n1", "Good.", 5, 0.6, at(2026, 10, 26, 4, 30)),
            review("n2", "Good.", 5, 0.6, at(2026, 11, 3, 15, 0)),
        ];
        store
            .ingest(&ny_src, &ny_mentions, Some(("test", "1")))
            .await
            .unwrap();
        // Tokyo, W45: Monday 2 November 00:30 JST (still Sunday in New York) and Sunday
        // 8 November 23:30 JST.
        let tokyo_mentions = vec![
            review("t1", "Good.", 5, 0.6, at(2026, 11, 1, 15, 30)),
            review("t2", "Good.", 5, 0.6, at(2026, 11, 8, 14, 30)),
        ];
        store
            .ingest(&tokyo_src, &tokyo_mentions, Some(("test", "1")))
            .await
            .unwrap();

        let ny_tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let week = digest::report::week_by_label(ny_tz, now(), "2026-W45").unwrap();
        let d = digest::compute(store, &c, "NY", week).await.unwrap();
        assert_eq!(d.this_week.mentions, 1, "{}", db.label);
        assert_eq!(d.last_week.mentions, 1, "W44 by New York's calendar");
        let tokyo_row = d.competitors.iter().find(|r| r.watch == "Tokyo").unwrap();
        assert_eq!(tokyo_row.mentions, 2, "Tokyo's own W45");
        let (_, text, html, _) = digest::report::render(&d);
        assert!(
            text.contains("Monday 2026-11-02 to Sunday 2026-11-08, America/New_York time"),
            "{text}"
        );
        assert!(html.contains("Monday 2026-11-02 to Sunday 2026-11-08, America/New_York time"));

        let tokyo_tz: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
        let week = digest::report::week_by_label(tokyo_tz, now(), "2026-W47").unwrap();
        let d = digest::compute(store, &c, "Tokyo", week).await.unwrap();
        let (_, text, _, _) = digest::report::render(&d);
        assert!(
            text.contains("Monday 2026-11-16 to Sunday 2026-11-22, Asia/Tokyo time"),
            "{text}"
        );
    }
}

/// Ten reviews of Acme's "store" published in W46 and W47 that average 4.1 stars
/// (amber), with nothing else for the other rules to find.
async fn buyer_view_at_4_1(store: &Store, config: &Config) -> SourceRow {
    store.sync_config(config).await.unwrap();
    let acme = store.watch_by_name("Acme").await.unwrap().unwrap();
    let src = store.push_source(acme.id, "store").await.unwrap();
    let reviews: Vec<ScoredMention> = [5, 5, 5, 5, 5, 5, 4, 2, 2, 3]
        .iter()
        .enumerate()
        .map(|(i, &stars)| review(&format!("v{i}"), "ok", stars, 0.0, day(11 + i as u32, 9)))
        .collect();
    store
        .ingest(&src, &reviews, Some(("test", "1")))
        .await
        .unwrap();
    src
}

#[tokio::test]
async fn an_earlier_week_shows_each_alerts_severity_at_its_end() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config("");
        let src = buyer_view_at_4_1(store, &c).await;
        // W47: the buyer's view at 4.1 opens an amber alert.
        let r = zmot::alerts::check_watch(store, &c, "Acme", day(20, 12))
            .await
            .unwrap();
        assert_eq!(r.opened, 1, "{}", db.label);
        // W48: a 1-star review drops the view to 3.7 (the alert escalates to red), and
        // asks for a refund (a keyword alert opens).
        let refund = review("late", "I want a refund", 1, 0.0, day(24, 9));
        store
            .ingest(&src, &[refund], Some(("test", "1")))
            .await
            .unwrap();
        zmot::alerts::check_watch(store, &c, "Acme", day(24, 12))
            .await
            .unwrap();
        let acme = store.watch_by_name("Acme").await.unwrap().unwrap();
        let now_open = store.open_alerts(acme.id).await.unwrap();
        assert_eq!(now_open.len(), 2, "{now_open:?}");
        assert!(now_open
            .iter()
            .any(|a| a.rule == "buyer_view_rating" && a.severity == "red"));

        let w47 = digest::report::week_by_label(chrono_tz::UTC, now(), "2026-W47").unwrap();
        let d = digest::compute(store, &c, "Acme", w47).await.unwrap();
        assert_eq!(
            d.alerts_fired.len(),
            1,
            "{:?} on {}",
            d.alerts_fired,
            db.label
        );
        let fired = &d.alerts_fired[0];
        assert_eq!(fired.rule, "buyer_view_rating");
        assert_eq!(fired.severity, "amber", "the severity at the end of W47");
        assert_eq!(fired.title, "store: buyers now see 4.1 stars (under 4.3)");
        assert!(fired.open());
        assert!(d.alerts_resolved.is_empty());
        // The health of W47 counts an amber alert, not today's red one.
        assert_eq!(d.health, zmot::trends::Health::Amber, "{:?}", d.reasons);
        assert!(
            d.reasons.iter().any(|r| r == "1 alert(s) open"),
            "{:?}",
            d.reasons
        );
        let (_, text, html, _) = digest::render(&d);
        assert!(
            text.contains(
                "fired (amber, still open at the week's end): store: buyers now see 4.1 stars"
            ),
            "{text}"
        );
        // The keyword alert opened after W47: not in its digest.
        assert!(
            !text.contains("refund") && !html.contains("refund"),
            "{text}"
        );

        // W48: the keyword alert fired, and the escalated one counts as red.
        let w48 = digest::report::week_by_label(chrono_tz::UTC, now(), "2026-W48").unwrap();
        let d = digest::compute(store, &c, "Acme", w48).await.unwrap();
        let severities: Vec<(&str, &str)> = d
            .alerts_fired
            .iter()
            .map(|a| (a.rule.as_str(), a.severity.as_str()))
            .collect();
        assert_eq!(severities, [("keyword", "amber")], "{}", db.label);
        assert!(
            d.reasons.iter().any(|r| r.contains("red alert(s) open")),
            "{:?}",
            d.reasons
        );
    }
}

#[tokio::test]
async fn an_alert_from_before_the_severity_history_keeps_its_severity_of_today() {
    for db in testutil::all().await.unwrap() {
        let c = config("");
        buyer_view_at_4_1(&db.store, &c).await;
        zmot::alerts::check_watch(&db.store, &c, "Acme", day(20, 12))
            .await
            .unwrap();
        // The database as an older zmot left it, before migration 9: the amber alert
        // went red, and no history says when.
        let pool = db.store.pool();
        for sql in [
            "DROP TABLE alert_severity_changes",
            "DELETE FROM _sqlx_migrations WHERE version = 9",
            "UPDATE alerts SET severity = 'red'",
        ] {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        let upgraded = Store::connect(&db.url, 2).await.unwrap();
        // Its severity of today is the best known, from its opening on.
        let w47 = digest::report::week_by_label(chrono_tz::UTC, now(), "2026-W47").unwrap();
        let d = digest::compute(&upgraded, &c, "Acme", w47).await.unwrap();
        let fired: Vec<&str> = d.alerts_fired.iter().map(|a| a.severity.as_str()).collect();
        assert_eq!(fired, ["red"], "{}", db.label);
        let w46 = digest::report::week_by_label(chrono_tz::UTC, now(), "2026-W46").unwrap();
        let d = digest::compute(&upgraded, &c, "Acme", w46).await.unwrap();
        assert!(d.alerts_fired.is_empty(), "{:?}", d.alerts_fired);
        upgraded.close().await;
    }
}

#[tokio::test]
async fn a_star_edit_this_week_leaves_last_weeks_buyers_view_as_it_was() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config("");
        store.sync_config(&c).await.unwrap();
        let acme = store.watch_by_name("Acme").await.unwrap().unwrap();
        let src = store.push_source(acme.id, "store").await.unwrap();
        // Edits are recorded at the time they are stored: last week by the real clock.
        let (label, from, to) = digest::report::last_full_week(chrono_tz::UTC, Utc::now());
        let published = |i: i64| from + Duration::hours(10 * i + 1);
        let reviews: Vec<ScoredMention> = (0..10)
            .map(|i| review(&format!("e{i}"), "Great kettle.", 5, 0.8, published(i)))
            .collect();
        store
            .ingest(&src, &reviews, Some(("test", "1")))
            .await
            .unwrap();
        // This week the author of e9 changes it to 1 star.
        let edited = review("e9", "Broke after a week.", 1, -0.8, published(9));
        let stats = store
            .ingest(&src, &[edited], Some(("test", "1")))
            .await
            .unwrap();
        assert_eq!(stats.updated, 1, "{}", db.label);

        // Buyers saw ten 5-star reviews at the end of last week.
        let then = zmot::trends::buyer_view_at(store, &src, 10, Some(to))
            .await
            .unwrap();
        assert_eq!(then.reviews.len(), 10, "{}", db.label);
        assert_eq!(then.average_rating, Some(5.0), "{}", db.label);
        let e9 = then.reviews.iter().find(|m| m.mention.external_id == "e9");
        assert_eq!(e9.unwrap().mention.rating, Some(5));
        // And read as it did then: its text and that text's sentiment.
        assert_eq!(e9.unwrap().mention.text, "Great kettle.", "{}", db.label);
        assert_eq!(e9.unwrap().sentiment.map(|s| s.score), Some(0.8));
        assert_eq!(
            store.buyer_view_rating_at(src.id, to, 10).await.unwrap(),
            Some(5.0)
        );
        let d = digest::compute(store, &c, "Acme", (label, from, to))
            .await
            .unwrap();
        assert_eq!(d.buyer_views.len(), 1);
        assert_eq!(d.buyer_views[0].average, Some(5.0), "{}", db.label);

        // Today, and as of any time after the edit, they see the 1 star.
        let today = zmot::trends::buyer_view_at(store, &src, 10, None)
            .await
            .unwrap();
        assert!((today.average_rating.unwrap() - 4.6).abs() < 1e-9);
        let later = Utc::now() + Duration::minutes(1);
        let after_edit = zmot::trends::buyer_view_at(store, &src, 10, Some(later))
            .await
            .unwrap();
        assert!((after_edit.average_rating.unwrap() - 4.6).abs() < 1e-9);
        let rating = store.buyer_view_rating_at(src.id, later, 10).await.unwrap();
        assert!((rating.unwrap() - 4.6).abs() < 1e-9, "{rating:?}");
    }
}

/// `review`, with the business's reply posted `hours` after publication.
fn replied(mut r: ScoredMention, hours: i64) -> ScoredMention {
    r.mention.owner_reply = Some("Thank you, we are on it.".into());
    r.mention.owner_reply_at = Some(r.mention.published_at + Duration::hours(hours));
    r
}

#[tokio::test]
async fn a_past_weeks_digest_is_the_same_after_its_reviews_are_edited() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config("");
        store.sync_config(&c).await.unwrap();
        let acme = store.watch_by_name("Acme").await.unwrap().unwrap();
        let src = store.push_source(acme.id, "store").await.unwrap();
        let tz = chrono_tz::UTC;
        // Edits are recorded when they are stored (the real clock): after last week.
        let week = digest::report::last_full_week(tz, Utc::now());
        let (_, from, to) = week.clone();
        let at = |h: i64| from + Duration::hours(h);
        let model = Some(("test", "1"));
        let the_week_before = vec![
            review(
                "b1",
                "Lid is a bit stiff.",
                2,
                -0.4,
                from - Duration::days(3),
            ),
            review("b2", "Lovely kettle.", 5, 0.8, from - Duration::days(2)),
        ];
        let this_week = vec![
            review(
                "k1",
                "Battery drain is terrible, dead by noon.",
                1,
                -0.9,
                at(10),
            ),
            review(
                "k2",
                "Awful battery drain after the update.",
                2,
                -0.7,
                at(30),
            ),
            review("k3", "The battery drain makes it useless.", 1, -0.8, at(50)),
            review("k4", "It is fine, nothing special.", 3, 0.0, at(70)),
            review("k5", "Love the design, boils fast.", 5, 0.9, at(90)),
            review("k6", "Great kettle, quiet and quick.", 5, 0.8, at(110)),
            review("k7", "Excellent value, would buy again.", 4, 0.6, at(130)),
        ];
        store.ingest(&src, &the_week_before, model).await.unwrap();
        store.ingest(&src, &this_week, model).await.unwrap();

        let first = digest::compute(store, &c, "Acme", week.clone())
            .await
            .unwrap();
        let t = &first.this_week;
        assert_eq!(
            (t.mentions, t.negative, t.neutral, t.positive),
            (7, 3, 1, 3)
        );
        assert_eq!(t.mean_rating, Some(3.0), "{}", db.label);
        assert_eq!((t.replyable, t.replied), (0, 0));
        assert!(first.most_negative[0]
            .excerpt
            .starts_with("Battery drain is terrible"));
        assert_eq!(first.drivers[0].term, "battery drain");
        let (_, text, html, charts) = digest::render(&first);

        // After the week: two reviews change their mind, one loses a star, one is
        // answered, and a review of the week before is edited too.
        let edits = vec![
            review("k1", "Replaced quickly, works well now.", 5, 0.7, at(10)),
            review(
                "k5",
                "Broke after two days, refund refused.",
                1,
                -0.95,
                at(90),
            ),
            review("k7", "Stopped working, awful support.", 2, -0.6, at(130)),
            review("k4", "It is fine, nothing special.", 2, 0.0, at(70)),
            replied(
                review(
                    "k2",
                    "Awful battery drain after the update.",
                    2,
                    -0.7,
                    at(30),
                ),
                3,
            ),
            review(
                "b1",
                "Lid is fine after all, lovely.",
                5,
                0.6,
                from - Duration::days(3),
            ),
        ];
        let stats = store.ingest(&src, &edits, model).await.unwrap();
        assert_eq!(stats.updated, 6, "{}", db.label);

        // The week's digest again: every figure, text, chart and line as before.
        let again = digest::compute(store, &c, "Acme", week.clone())
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&first).unwrap(),
            "{}",
            db.label
        );
        let (_, text_again, html_again, charts_again) = digest::render(&again);
        assert_eq!(text_again, text, "{}", db.label);
        assert_eq!(html_again, html);
        assert_eq!(charts_again.len(), charts.len());
        for ((id, a), (_, b)) in charts_again.iter().zip(&charts) {
            assert!(a.png == b.png, "chart {id} of {} changed", db.label);
        }

        // A digest made now shows the edited versions: the week just past is its "last
        // week" and one of its chart weeks.
        let current = zmot::trends::iso_weeks(tz, Utc::now(), 1).remove(0);
        let cur_from = current.1;
        // A review of the week in progress, edited since.
        let fresh_at = cur_from + (Utc::now() - cur_from) / 2;
        store
            .ingest(
                &src,
                &[review("c1", "Handle came loose.", 2, -0.5, fresh_at)],
                model,
            )
            .await
            .unwrap();
        store
            .ingest(
                &src,
                &[review(
                    "c1",
                    "Handle came loose and burned my hand.",
                    1,
                    -0.99,
                    fresh_at,
                )],
                model,
            )
            .await
            .unwrap();
        let now_digest = digest::compute(store, &c, "Acme", current).await.unwrap();
        let edited = store.period_stats(acme.id, None, from, to).await.unwrap();
        let l = &now_digest.last_week;
        assert_eq!(
            (l.negative, l.neutral, l.positive),
            (4, 1, 2),
            "{}",
            db.label
        );
        assert!((l.mean_rating.unwrap() - 18.0 / 7.0).abs() < 1e-9, "{l:?}");
        assert_eq!((l.replyable, l.replied), (7, 1));
        assert_eq!(l, &edited);
        let chart_week = &now_digest.weeks[now_digest.weeks.len() - 2];
        assert_eq!(chart_week.stats, edited);
        assert_eq!(
            now_digest.most_negative[0].excerpt,
            "Handle came loose and burned my hand."
        );
        assert_eq!(now_digest.most_negative[0].rating, Some(1));
    }
}

#[tokio::test]
async fn versions_replaced_before_migration_11_keep_the_best_known_sentiment() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config("");
        store.sync_config(&c).await.unwrap();
        let acme = store.watch_by_name("Acme").await.unwrap().unwrap();
        let src = store.push_source(acme.id, "store").await.unwrap();
        let at = day(18, 9);
        // s1 was first scored by one model and its edit by another: the first score is
        // still stored. s2's edit was scored by the same model, which replaced the first.
        store
            .ingest(
                &src,
                &[review("s1", "Lovely kettle.", 5, 0.8, at)],
                Some(("old", "1")),
            )
            .await
            .unwrap();
        store
            .ingest(
                &src,
                &[replied(review("s2", "Nice enough.", 4, 0.4, at), 2)],
                Some(("test", "1")),
            )
            .await
            .unwrap();
        // The edits are recorded after the first scores, to the millisecond.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .ingest(
                &src,
                &[review("s1", "Broke in a week.", 1, -0.8, at)],
                Some(("new", "1")),
            )
            .await
            .unwrap();
        store
            .ingest(
                &src,
                &[replied(review("s2", "Leaks from the lid.", 2, -0.6, at), 2)],
                Some(("test", "1")),
            )
            .await
            .unwrap();
        // The database as an older zmot left it, before migration 11.
        let pool = db.store.pool();
        for sql in [
            "DROP INDEX mention_revisions_recorded",
            "ALTER TABLE mention_revisions DROP COLUMN label",
            "ALTER TABLE mention_revisions DROP COLUMN score",
            "ALTER TABLE mention_revisions DROP COLUMN confidence",
            "ALTER TABLE mention_revisions DROP COLUMN owner_reply_at",
            "DELETE FROM _sqlx_migrations WHERE version = 11",
        ] {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        let upgraded = Store::connect(&db.url, 2).await.unwrap();
        let rows = sqlx::query(
            "SELECT m.external_id, v.label, v.score, v.confidence, v.owner_reply_at
             FROM mention_revisions v JOIN mentions m ON m.id = v.mention_id
             ORDER BY m.external_id",
        )
        .fetch_all(upgraded.pool())
        .await
        .unwrap();
        use sqlx::Row;
        // external id, label, score, confidence, reply time.
        type Kept = (
            String,
            Option<String>,
            Option<f64>,
            Option<f64>,
            Option<i64>,
        );
        let read: Vec<Kept> = rows
            .iter()
            .map(|r| {
                (
                    r.get("external_id"),
                    r.get("label"),
                    r.get("score"),
                    r.get("confidence"),
                    r.get("owner_reply_at"),
                )
            })
            .collect();
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        // s1's first version: its own score, kept by the first model.
        assert_eq!(read[0].0, "s1", "{}", db.label);
        assert_eq!(read[0].1.as_deref(), Some("positive"), "{}", db.label);
        assert!((read[0].2.unwrap() - 0.8).abs() < 1e-6, "{read:?}");
        assert_eq!(read[0].4, None);
        // s2's: overwritten, so today's score and reply time stand in, as before.
        assert_eq!(read[1].0, "s2");
        assert_eq!(read[1].1.as_deref(), Some("negative"), "{}", db.label);
        assert!((read[1].2.unwrap() + 0.6).abs() < 1e-6, "{read:?}");
        assert!((read[1].3.unwrap() - 0.9).abs() < 1e-6, "{read:?}");
        assert_eq!(read[1].4, Some(ms(at + Duration::hours(2))));
        upgraded.close().await;
    }
}

#[tokio::test]
async fn a_past_weeks_rating_chart_and_buyers_views_have_the_sources_rated_then() {
    for db in testutil::all().await.unwrap() {
        let store = &db.store;
        let c = config("");
        store.sync_config(&c).await.unwrap();
        let acme = store.watch_by_name("Acme").await.unwrap().unwrap();
        let shop = store.push_source(acme.id, "store").await.unwrap();
        let forum = store.push_source(acme.id, "forum").await.unwrap();
        let tz = chrono_tz::UTC;
        // Edits and new sources come after last week (by the real clock).
        let week = digest::report::last_full_week(tz, Utc::now());
        let (_, from, _) = week.clone();
        let at = |h: i64| from + Duration::hours(h);
        let model = Some(("test", "1"));
        let stars = |prefix: &str, n: i64, stars: u8| -> Vec<ScoredMention> {
            (0..n)
                .map(|i| {
                    review(
                        &format!("{prefix}{i}"),
                        "Good kettle.",
                        stars,
                        0.6,
                        at(10 * i + 1),
                    )
                })
                .collect()
        };
        store.ingest(&shop, &stars("s", 6, 5), model).await.unwrap();
        store
            .ingest(&forum, &stars("f", 5, 4), model)
            .await
            .unwrap();
        let names = |d: &digest::Digest| {
            let lines: Vec<String> = d.ratings.iter().map(|r| r.source.clone()).collect();
            let views: Vec<String> = d.buyer_views.iter().map(|v| v.source.clone()).collect();
            (lines, views)
        };
        let first = digest::compute(store, &c, "Acme", week.clone())
            .await
            .unwrap();
        let both = vec!["forum".to_string(), "store".to_string()];
        assert_eq!(names(&first), (both.clone(), both.clone()), "{}", db.label);

        // After the week: forum's reviews all lose their stars, and a new rated source
        // gets its first reviews this week.
        let unrated: Vec<ScoredMention> = stars("f", 5, 4)
            .into_iter()
            .map(|mut r| {
                r.mention.rating = None;
                r
            })
            .collect();
        let stats = store.ingest(&forum, &unrated, model).await.unwrap();
        assert_eq!(stats.updated, 5, "{}", db.label);
        let shop2 = store.push_source(acme.id, "shop").await.unwrap();
        let current = zmot::trends::iso_weeks(tz, Utc::now(), 1).remove(0);
        let fresh_at = current.1 + (Utc::now() - current.1) / 2;
        store
            .ingest(
                &shop2,
                &[review("n1", "Lovely kettle.", 5, 0.8, fresh_at)],
                model,
            )
            .await
            .unwrap();

        // Last week's digest again: the same lines and views, and so the same figures.
        let again = digest::compute(store, &c, "Acme", week.clone())
            .await
            .unwrap();
        assert_eq!(names(&again), (both.clone(), both), "{}", db.label);
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&first).unwrap(),
            "{}",
            db.label
        );
        // This week's: the new source has its line and view, forum has no stars now.
        let now_digest = digest::compute(store, &c, "Acme", current).await.unwrap();
        let now_sources = vec!["shop".to_string(), "store".to_string()];
        assert_eq!(
            names(&now_digest),
            (now_sources.clone(), now_sources),
            "{}",
            db.label
        );
    }
}
