//! `zmot run` as a process: health and metrics endpoints, outbox delivery on the
//! embedded defaults (emails as files), a clean stop on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zmot::store::{NewEmail, Store};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

#[tokio::test]
async fn run_serves_health_delivers_the_outbox_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/zmot.toml"),
        "[sentiment]\nmodel = \"lexicon\"\nfetch_missing = false\n[[watch]]\nname = \"Acme\"\n",
    )
    .unwrap();
    // An email already waiting, as if queued before a restart.
    let store = Store::connect(&format!("sqlite://{}/zmot.db", dir.path().display()), 2)
        .await
        .unwrap();
    let to = vec!["lead@example.com".to_string()];
    store
        .enqueue_email(&NewEmail {
            kind: "alert",
            dedup_key: Some("alert:test"),
            watch_id: None,
            recipients: &to,
            subject: "Acme: test",
            message: "From: zmot <zmot@localhost>\r\nTo: lead@example.com\r\nSubject: Acme: test\r\n\r\nhello\r\n",
        })
        .await
        .unwrap();
    store.close().await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_zmot"))
        .current_dir(dir.path())
        .arg("run")
        .env("ZMOT__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut health = None;
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(r) = get(&format!("{base}/healthz")).await {
            health = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = health.expect("/healthz answered");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // The outbox is delivered as a file (no SMTP configured), once.
    let outbox = dir.path().join("outbox");
    let mut files = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        files = std::fs::read_dir(&outbox)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    // A file being written is a hidden `.tmp` that is renamed
                    // into place when complete; only finished messages count.
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        if !files.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(files, vec!["000001-alert.eml".to_string()]);
    let eml = std::fs::read_to_string(outbox.join(&files[0])).unwrap();
    assert!(eml.contains("Subject: Acme: test"));

    let (status, metrics) = get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("zmot_outbox_queued 0"), "{metrics}");
    assert!(metrics.contains("zmot_emails_sent_total 1"), "{metrics}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "zmot run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("stop requested") && log.contains("stopped"),
        "{log}"
    );

    // Nothing was left claimed, and the email stays sent (not queued again).
    let store = Store::connect(&format!("sqlite://{}/zmot.db", dir.path().display()), 2)
        .await
        .unwrap();
    assert!(store
        .jobs()
        .await
        .unwrap()
        .iter()
        .all(|j| j.lease_owner.is_none()));
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.sent, stats.queued), (1, 0));
}
