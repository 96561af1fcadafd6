//! The `zmot` binary end to end, as a new user runs it: init, config check, import a CSV
//! of reviews, list them, status; on SQLite and, by changing only the URL, PostgreSQL.

use std::path::Path;
use std::process::{Command, Output};

fn zmot(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zmot"));
    cmd.current_dir(dir).args(args);
    // The tests' own variables must not leak into the configuration.
    for (k, _) in std::env::vars() {
        if k.starts_with("ZMOT__") || k == "ZMOT_CONFIG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("ZMOT__SENTIMENT__MODEL", "lexicon")
        .env("ZMOT__SENTIMENT__FETCH_MISSING", "false");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run zmot")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

const REVIEWS: &str = "id,author,rating,date,title,text\n\
r1,Ann,5,2026-11-01,Love it,Boils in two minutes and looks great\n\
r2,Bob,1,2026-11-02,Leaks,\"The lid leaks, <b>hot water</b> everywhere\"\n\
r3,Cy,7,2026-11-03,Odd,Seven stars is not a thing\n\
r4,Di,3,not a date,Meh,It is fine\n\
r5,Ed,4,2026-11-05T09:30:00Z,,Good value\n";

fn write_config(dir: &Path) {
    let o = zmot(dir, &["init"], &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(dir.join("config/zmot.toml").exists());
}

fn import_and_list(dir: &Path, env: &[(&str, &str)]) {
    std::fs::write(dir.join("reviews.csv"), REVIEWS).unwrap();
    let o = zmot(
        dir,
        &["import", "reviews.csv", "--watch", "Example Notes"],
        env,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("3 new"), "{out}");
    assert!(out.contains("2 rejected"), "{out}");
    assert!(
        err.contains("reviews.csv:4: rating 7 is outside 1-5"),
        "{err}"
    );
    assert!(err.contains("reviews.csv:5:"), "{err}");

    // Importing the same file again stores nothing twice.
    let o = zmot(
        dir,
        &["import", "reviews.csv", "--watch", "Example Notes"],
        env,
    );
    let (out, _) = text(&o);
    assert!(
        out.contains("0 new") && out.contains("3 unchanged"),
        "{out}"
    );

    let o = zmot(dir, &["mentions", "--watch", "Example Notes"], env);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[1].contains("Good value"), "newest first: {out}");
    assert!(lines[3].contains("Love it. Boils in two minutes"), "{out}");

    let o = zmot(
        dir,
        &[
            "mentions",
            "--watch",
            "Example Notes",
            "--since",
            "2026-11-02",
            "--json",
        ],
        env,
    );
    let (out, _) = text(&o);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["external_id"], "r2");
    assert_eq!(rows[1]["rating"], 1);
    assert_eq!(
        rows[1]["text"],
        "The lid leaks, <b>hot water</b> everywhere"
    );

    let o = zmot(dir, &["status"], env);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("import") && out.contains("(pushed)"), "{out}");
    assert!(out.contains("hacker-news"), "{out}");
}

#[test]
fn new_user_imports_and_lists_reviews_on_sqlite() {
    let dir = tempdir();
    write_config(dir.path());
    let o = zmot(dir.path(), &["config", "check"], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("OK (1 watch, 1 source, database sqlite://zmot.db"),
        "{out}"
    );
    import_and_list(dir.path(), &[]);
    assert!(dir.path().join("zmot.db").exists());
}

#[test]
fn the_same_on_postgres_by_changing_only_the_url() {
    let Some(admin) = std::env::var("ZMOT_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must set ZMOT_TEST_DATABASE_URL"
        );
        return;
    };
    // A database of its own, made through the store's test helper.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(zmot::testutil::postgres()).unwrap().unwrap();
    assert!(db.url.starts_with("postgres://"), "{admin}");
    let dir = tempdir();
    write_config(dir.path());
    import_and_list(dir.path(), &[("ZMOT__DATABASE__URL", &db.url)]);
    assert!(
        !dir.path().join("zmot.db").exists(),
        "SQLite was used instead"
    );
}

#[test]
fn config_check_names_file_line_and_problem() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/zmot.toml"),
        "[database]\nurl = \"sqlite://z.db\"\n\n[[watch]]\nname = \"A\"\nrecipients = [\"not an address\"]\n\n[[watch.source]]\nname = \"s\"\nkind = \"carrier-pigeon\"\n",
    )
    .unwrap();
    let o = zmot(dir.path(), &["config", "check"], &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("config/zmot.toml:6: watch[0].recipients[0]"),
        "{err}"
    );
    assert!(
        err.contains(
            "config/zmot.toml:10: watch[0].source[0].kind: unknown source kind `carrier-pigeon`"
        ),
        "{err}"
    );

    std::fs::write(
        dir.path().join("config/zmot.toml"),
        "[email]\nfrm = \"x\"\n",
    )
    .unwrap();
    let o = zmot(dir.path(), &["config", "check"], &[]);
    let (_, err) = text(&o);
    assert!(
        err.contains("config/zmot.toml:2:1: unknown field `frm`"),
        "{err}"
    );

    // An overriding variable with a bad value is named.
    std::fs::write(dir.path().join("config/zmot.toml"), "").unwrap();
    let o = zmot(
        dir.path(),
        &["config", "check"],
        &[("ZMOT__GENERAL__TIMEZONE", "Atlantis/Capital")],
    );
    let (_, err) = text(&o);
    assert!(
        err.contains("environment variable ZMOT__GENERAL__TIMEZONE"),
        "{err}"
    );
}

#[test]
fn a_second_daemon_on_one_sqlite_file_refuses_to_start() {
    let dir = tempdir();
    write_config(dir.path());
    let mut first = Command::new(env!("CARGO_BIN_EXE_zmot"))
        .current_dir(dir.path())
        .arg("run")
        .env("ZMOT__SENTIMENT__MODEL", "lexicon")
        .env("ZMOT__SENTIMENT__FETCH_MISSING", "false")
        .env("ZMOT__SERVER__LISTEN", "127.0.0.1:0")
        .env("ZMOT__WATCH__0__SOURCE__0__ENABLED", "false")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first one holds the lock.
    let lock = dir.path().join("zmot.db.lock");
    for _ in 0..100 {
        if lock.exists() && dir.path().join("zmot.db").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let o = zmot(
        dir.path(),
        &["run"],
        &[("ZMOT__SERVER__LISTEN", "127.0.0.1:0")],
    );
    let (_, err) = text(&o);
    let _ = first.kill();
    let _ = first.wait();
    assert!(!o.status.success());
    assert!(
        err.contains("another `zmot run` is already using zmot.db"),
        "{err}"
    );
}

#[test]
fn odd_dates_are_rejected_per_record_and_a_year_is_no_since_date() {
    let dir = tempdir();
    write_config(dir.path());
    std::fs::write(
        dir.path().join("odd.jsonl"),
        "{\"id\":\"ms\",\"text\":\"In milliseconds\",\"date\":1763000000000}\n\
         {\"id\":\"year\",\"text\":\"A year\",\"date\":2026}\n\
         {\"id\":\"ymd\",\"text\":\"Digits\",\"date\":\"20261103\"}\n\
         {\"id\":\"old\",\"text\":\"Negative\",\"date\":-99999999999}\n\
         {\"id\":\"ahead\",\"text\":\"Ahead\",\"date\":\"2099-01-01\"}\n",
    )
    .unwrap();
    let o = zmot(
        dir.path(),
        &["import", "odd.jsonl", "--watch", "Example Notes"],
        &[],
    );
    let (out, err) = text(&o);
    assert!(out.contains("1 new") && out.contains("4 rejected"), "{out}");
    assert!(
        err.contains(
            "odd.jsonl:2: date `2026` (read as Unix seconds): 1970-01-01 00:33 UTC is before 1990-01-01"
        ),
        "{err}"
    );
    assert!(err.contains("odd.jsonl:3: date `20261103`"), "{err}");
    assert!(err.contains("odd.jsonl:4: date `-99999999999`"), "{err}");
    assert!(
        err.contains(
            "odd.jsonl:5: date `2099-01-01`: 2099-01-01 00:00 UTC is more than a day in the future"
        ),
        "{err}"
    );
    let o = zmot(
        dir.path(),
        &["mentions", "--watch", "Example Notes", "--json"],
        &[],
    );
    let (out, _) = text(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("\"published_at\":\"2025-11-13T02:13:20"),
        "{out}"
    );

    let o = zmot(
        dir.path(),
        &["mentions", "--watch", "Example Notes", "--since", "2026"],
        &[],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(
            "--since `2026` (read as Unix seconds): 1970-01-01 00:33 UTC is before 1990-01-01"
        ),
        "{err}"
    );
}

#[test]
fn source_names_ignore_case_and_cannot_be_empty() {
    let dir = tempdir();
    write_config(dir.path());
    std::fs::write(dir.path().join("reviews.csv"), REVIEWS).unwrap();
    let import = |source: &str| {
        zmot(
            dir.path(),
            &[
                "import",
                "reviews.csv",
                "--watch",
                "Example Notes",
                "--source",
                source,
            ],
            &[],
        )
    };
    let o = import("import");
    assert!(text(&o).0.contains("3 new"), "{:?}", text(&o));
    let o = import("IMPORT");
    let (out, err) = text(&o);
    assert!(
        out.contains("import: 0 new, 0 updated, 3 unchanged"),
        "{out}{err}"
    );
    let o = import("Hacker-News");
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("`Hacker-News` is a configured hackernews source"),
        "{err}"
    );
    let o = import("");
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("the source name is empty"), "{err}");
}

#[test]
fn config_check_reports_digest_recipients_and_unusable_sqlite_urls() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    let write = |url: &str| {
        std::fs::write(
            dir.path().join("config/zmot.toml"),
            format!(
                "[database]\nurl = \"{url}\"\n\n[[watch]]\nname = \"A\"\n\n[watch.digest]\n\
                 recipients = [\"ok@example.com\", \"not an email\"]\n\n[email]\nfrom = \"zmot@\"\n"
            ),
        )
        .unwrap();
    };
    write("sqlite::memory:");
    let o = zmot(dir.path(), &["config", "check"], &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("config/zmot.toml:8: watch[0].digest.recipients[1]: `not an email` is not an email address"),
        "{err}"
    );
    assert!(
        err.contains("config/zmot.toml:11: email.from: `zmot@` is not an email address"),
        "{err}"
    );
    assert!(
        err.contains(
            "config/zmot.toml:2: database.url: `sqlite::memory:` is an in-memory database"
        ),
        "{err}"
    );
    write("sqlite:");
    let o = zmot(dir.path(), &["config", "check"], &[]);
    let (_, err) = text(&o);
    assert!(
        err.contains("config/zmot.toml:2: database.url: `sqlite:` names no file"),
        "{err}"
    );
}

#[test]
fn init_writes_where_config_points() {
    let dir = tempdir();
    let o = zmot(dir.path(), &["--config", "elsewhere/z.toml", "init"], &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(dir.path().join("elsewhere/z.toml").exists());
    assert!(!dir.path().join("config/zmot.toml").exists());
    let o = zmot(
        dir.path(),
        &["config", "check"],
        &[("ZMOT_CONFIG", "env.toml")],
    );
    assert!(!o.status.success());
    let o = zmot(dir.path(), &["init"], &[("ZMOT_CONFIG", "env.toml")]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = zmot(
        dir.path(),
        &["config", "check"],
        &[("ZMOT_CONFIG", "env.toml")],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.starts_with("env.toml: OK"), "{out}");
    // A path given to init itself still wins.
    let o = zmot(
        dir.path(),
        &["init", "own.toml"],
        &[("ZMOT_CONFIG", "env.toml")],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(dir.path().join("own.toml").exists());
}

#[test]
fn status_shows_a_source_next_run_on_its_watch_clock() {
    let dir = tempdir();
    write_config(dir.path());
    let env = [
        ("ZMOT__WATCH__0__TIMEZONE", "Asia/Tokyo"),
        ("ZMOT__WATCH__0__SOURCE__0__SCHEDULE", "0 8 * * *"),
    ];
    let o = zmot(dir.path(), &["status"], &env);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.contains("hacker-news"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(" 08:00 JST"), "{out}");
}

#[test]
fn an_import_that_gives_nothing_fails_and_every_record_is_counted() {
    let dir = tempdir();
    write_config(dir.path());
    let import = |name: &str, body: &[u8]| {
        std::fs::write(dir.path().join(name), body).unwrap();
        let o = zmot(
            dir.path(),
            &["import", name, "--watch", "Example Notes"],
            &[],
        );
        let (out, err) = text(&o);
        (o.status.success(), out, err)
    };
    let (ok, _, err) = import("empty.csv", b"");
    assert!(!ok);
    assert!(
        err.contains("nothing to import: empty.csv holds no records"),
        "{err}"
    );
    let (ok, _, err) = import("header.csv", b"id,date,text\n");
    assert!(!ok);
    assert!(err.contains("header.csv holds no records"), "{err}");
    let (ok, _, err) = import("semi.csv", b"id;date;text\nr1;2026-11-01;ok\n");
    assert!(!ok);
    assert!(
        err.contains("semi.csv: warning: the header line is one column, `id;date;text`: the file looks separated by semicolons"),
        "{err}"
    );
    assert!(
        err.contains("semi.csv:2: published_at (or date) is missing"),
        "{err}"
    );
    assert!(
        err.contains("nothing imported: every record of semi.csv was rejected (1 problem above)"),
        "{err}"
    );
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            "id,date,text\nr1,2026-11-01,ok\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    let (ok, _, err) = import("wide.csv", &utf16);
    assert!(!ok);
    assert!(err.contains("wide.csv:1: the file is UTF-16 text"), "{err}");

    // 6 records: 1 rejected, r1 three times (the last kept), 3 stored; unknown columns named.
    let (ok, out, err) = import(
        "repeats.csv",
        b"id,date,text,mood\nr1,2026-11-01,first,x\nr2,2026-11-02,two,x\nr1,2026-11-03,again,x\n\
          r3,2026-11-04,three,x\nr4,not a date,four,x\nr1,2026-11-05,last,x\n",
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("3 new, 0 updated, 0 unchanged, 2 repeated within the file (the last of each id kept), 1 rejected."),
        "{out}"
    );
    assert!(
        err.contains("repeats.csv: warning: column `mood` not recognised and ignored"),
        "{err}"
    );
    let o = zmot(
        dir.path(),
        &["mentions", "--watch", "Example Notes", "--json"],
        &[],
    );
    let (out, _) = text(&o);
    assert!(
        out.contains("\"text\":\"last\"") && !out.contains("\"again\""),
        "{out}"
    );
}

#[test]
fn database_passwords_are_never_printed() {
    let dir = tempdir();
    write_config(dir.path());
    // An sslmode sqlx does not know fails at once, where an unreachable server would be
    // retried for 30 seconds; both errors show the URL the same way.
    let url = "postgres://zmot:pw_user@127.0.0.1:1/zmot?password=qp_secret&sslmode=bogus";
    let o = zmot(
        dir.path(),
        &["mentions", "--watch", "Example Notes"],
        &[("ZMOT__DATABASE__URL", url)],
    );
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(
            "cannot open the database postgres://zmot:***@127.0.0.1:1/zmot?password=***&sslmode=bogus"
        ),
        "{err}"
    );
    for (url, problem) in [
        (
            "postgres://zmot:pw_user@127.0.0.1:notaport/zmot?password=qp_secret",
            "`postgres://zmot:***@127.0.0.1:notaport/zmot?password=***` is not a valid PostgreSQL URL",
        ),
        (
            "mysql://zmot:pw_user@127.0.0.1/zmot?password=qp_secret",
            "`mysql://zmot:***@127.0.0.1/zmot?password=***` is neither",
        ),
    ] {
        let o = zmot(
            dir.path(),
            &["config", "check"],
            &[("ZMOT__DATABASE__URL", url)],
        );
        let (out2, err2) = text(&o);
        assert!(!o.status.success());
        assert!(err2.contains(problem), "{err2}");
        assert!(!(out2 + &err2).contains("pw_user"), "{url}");
    }
    let all = format!("{out}{err}");
    assert!(
        !all.contains("qp_secret") && !all.contains("pw_user"),
        "{all}"
    );
}

#[test]
fn listing_into_a_closed_pipe_ends_quietly() {
    let dir = tempdir();
    write_config(dir.path());
    std::fs::write(dir.path().join("reviews.csv"), REVIEWS).unwrap();
    let o = zmot(
        dir.path(),
        &["import", "reviews.csv", "--watch", "Example Notes"],
        &[],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    for extra in [&["--json"][..], &[][..]] {
        // Like `| head -0`: the reader is gone before the first line is written.
        let mut child = Command::new(env!("CARGO_BIN_EXE_zmot"))
            .current_dir(dir.path())
            .args(["mentions", "--watch", "Example Notes"])
            .args(extra)
            .env_remove("ZMOT_CONFIG")
            .env("ZMOT__SENTIMENT__MODEL", "lexicon")
            .env("ZMOT__SENTIMENT__FETCH_MISSING", "false")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{extra:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{extra:?}: {err}");
    }
}

#[test]
fn status_lists_the_emails_that_missed_someone() {
    use zmot::store::{NewEmail, Refusal, Store};
    let dir = tempdir();
    write_config(dir.path());
    let url = format!("sqlite://{}/zmot.db", dir.path().display());
    let env = [("ZMOT__DATABASE__URL", url.as_str())];
    // Creates the database; nothing has missed anyone yet.
    let o = zmot(dir.path(), &["status"], &env);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(!out.contains("EMAILS THAT MISSED SOMEONE"), "{out}");

    // Three emails as the sender leaves them: one refused for one address and sent to
    // the other, one waiting to be retried, one given up; and one delivered to all.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::connect(&url, 1).await.unwrap();
        let recipients = ["lead@acme.test".to_string(), "old@acme.test".to_string()];
        for subject in [
            "[zmot] Acme: 1 new alert",
            "[zmot] Acme: weekly digest",
            "[zmot] Acme: rating under 4.3",
            "[zmot] Acme: all delivered",
        ] {
            store
                .enqueue_email(&NewEmail {
                    kind: "alert",
                    dedup_key: Some(subject),
                    watch_id: None,
                    recipients: &recipients,
                    subject,
                    message: "x",
                })
                .await
                .unwrap();
        }
        let claimed = store.claim_emails("w1", 10, 60_000).await.unwrap();
        assert_eq!(claimed.len(), 4);
        let refused = [Refusal {
            address: "old@acme.test".into(),
            // A server's reply may hold terminal escapes: not printed as they are.
            reason: "550 5.1.1 no such user\u{1b}[2J".into(),
        }];
        store
            .record_email_recipients(claimed[0].id, "w1", &recipients[..1], &refused)
            .await
            .unwrap();
        store
            .mark_email_sent(claimed[0].id, "w1", Some("refused: old@acme.test"))
            .await
            .unwrap();
        store
            .mark_email_failed(
                claimed[1].id,
                "w1",
                "connection refused (127.0.0.1:25)",
                Some(600_000),
            )
            .await
            .unwrap();
        store
            .mark_email_failed(claimed[2].id, "w1", "535 authentication failed", None)
            .await
            .unwrap();
        store
            .mark_email_sent(claimed[3].id, "w1", None)
            .await
            .unwrap();
    });

    let o = zmot(dir.path(), &["status"], &env);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let section: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("EMAILS THAT MISSED SOMEONE (last 14 days)"))
        .collect();
    assert!(!section.is_empty(), "{out}");
    let body = section.join("\n");
    // Newest first, each with what became of it and why.
    let at = |needle: &str| {
        body.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {body}"))
    };
    assert!(
        at("given up: [zmot] Acme: rating under 4.3") < at("retrying: [zmot] Acme: weekly digest")
    );
    assert!(
        at("retrying: [zmot] Acme: weekly digest")
            < at("sent to the others: [zmot] Acme: 1 new alert")
    );
    assert!(
        body.contains("last error: 535 authentication failed"),
        "{body}"
    );
    assert!(
        body.contains("last error: connection refused (127.0.0.1:25)"),
        "{body}"
    );
    assert!(
        body.contains("refused old@acme.test: 550 5.1.1 no such user[2J"),
        "{body}"
    );
    assert!(!out.contains('\u{1b}'), "{out:?}");
    // Sent to everyone who was not refused: no error line under it.
    let sent = &body[at("sent to the others")..];
    assert!(!sent.contains("last error"), "{body}");
    assert!(!body.contains("all delivered"), "{body}");

    // The same in JSON.
    let o = zmot(dir.path(), &["status", "--json"], &env);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let emails = v["undelivered_emails"].as_array().unwrap();
    let states: Vec<&str> = emails
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["failed", "queued", "sent"], "{v}");
    assert_eq!(emails[2]["refused"][0]["address"], "old@acme.test");
}

/// A watch on New York time: `zmot mentions` and `zmot alerts` show its times on New
/// York's clock, marked with the zone, not in UTC (03:30 UTC on 24 November is 22:30 on
/// the 23rd there) nor in the general zone.
#[test]
fn mentions_and_alerts_show_times_on_the_watchs_clock() {
    use chrono::{Duration, Utc};
    let dir = tempdir();
    write_config(dir.path());
    let path = dir.path().join("config/zmot.toml");
    // The watch's zone; the general one stays UTC.
    let config = std::fs::read_to_string(&path).unwrap().replacen(
        "recipients = [\"marketing@example.com\"]\ntimezone = \"UTC\"\n",
        "recipients = [\"marketing@example.com\"]\ntimezone = \"America/New_York\"\n",
        1,
    );
    assert!(config.contains("America/New_York"), "{config}");
    std::fs::write(&path, config).unwrap();
    // A review an hour old with a crisis term, so that `zmot check` opens an alert now.
    let recent = (Utc::now() - Duration::hours(1)).to_rfc3339();
    std::fs::write(
        dir.path().join("reviews.csv"),
        format!(
            "id,author,rating,date,text\n\
             n1,Ann,2,2026-11-24T03:30:00Z,Late night order went missing\n\
             n2,Bob,1,{recent},This is a scam\n"
        ),
    )
    .unwrap();
    let o = zmot(
        dir.path(),
        &["import", "reviews.csv", "--watch", "Example Notes"],
        &[],
    );
    assert!(o.status.success(), "{:?}", text(&o));

    let o = zmot(dir.path(), &["mentions", "--watch", "Example Notes"], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("Late night order"))
        .expect("listed");
    assert!(line.starts_with("2026-11-23 22:30 EST "), "{out}");
    // A day given to --since is a New York day: the 24th there starts after it.
    for (day, listed) in [("2026-11-24", false), ("2026-11-23", true)] {
        let o = zmot(
            dir.path(),
            &["mentions", "--watch", "Example Notes", "--since", day],
            &[],
        );
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert_eq!(
            out.contains("Late night order"),
            listed,
            "--since {day}: {out}"
        );
    }

    let before = Utc::now();
    let o = zmot(dir.path(), &["check", "--watch", "Example Notes"], &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    let after = Utc::now();
    let o = zmot(dir.path(), &["alerts"], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let shown =
        |t: chrono::DateTime<Utc>| t.with_timezone(&ny).format("%Y-%m-%d %H:%M %Z").to_string();
    let line = out.lines().find(|l| l.contains("scam")).expect("the alert");
    assert!(
        line.contains(&shown(before)) || line.contains(&shown(after)),
        "{out}"
    );
}

#[test]
fn an_imported_date_without_a_time_is_that_day_on_the_watch_s_clock() {
    let dir = tempdir();
    write_config(dir.path());
    let env = [("ZMOT__WATCH__0__TIMEZONE", "America/New_York")];
    std::fs::write(
        dir.path().join("r.csv"),
        "id,author,rating,date,text\n\
         r1,Ann,5,2026-11-22T23:30:00-05:00,Late on the 22nd\n\
         r2,Bob,1,2026-11-23,Dated the 23rd\n",
    )
    .unwrap();
    let o = zmot(
        dir.path(),
        &["import", "r.csv", "--watch", "Example Notes"],
        &env,
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = zmot(
        dir.path(),
        &[
            "mentions",
            "--watch",
            "Example Notes",
            "--since",
            "2026-11-23",
        ],
        &env,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    // The 23rd in New York, not 19:00 on the 22nd (midnight UTC).
    assert!(out.contains("2026-11-23 00:00 EST"), "{out}");
    assert!(out.contains("Dated the 23rd"), "{out}");
    assert!(!out.contains("Late on the 22nd"), "{out}");
}

#[test]
fn an_imported_date_without_a_time_is_that_day_on_the_clock_of_a_watch_no_longer_configured() {
    let dir = tempdir();
    write_config(dir.path());
    // Example Notes is watched on New York time, then taken out of the file (the file's
    // only watch is now another product): imports into it still read a bare date on the
    // clock it last had, as the push API does, not on the general zone's (UTC).
    let ny = [("ZMOT__WATCH__0__TIMEZONE", "America/New_York")];
    let o = zmot(dir.path(), &["status"], &ny);
    assert!(o.status.success(), "{:?}", text(&o));
    let other = [
        ("ZMOT__WATCH__0__NAME", "Other Product"),
        ("ZMOT__WATCH__0__SOURCE__0__PARAMS__QUERY", "other product"),
    ];
    std::fs::write(
        dir.path().join("r.csv"),
        "id,author,rating,date,text\nr1,Bob,1,2026-11-23,Dated the 23rd\n",
    )
    .unwrap();
    let o = zmot(
        dir.path(),
        &["import", "r.csv", "--watch", "Example Notes"],
        &other,
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = zmot(
        dir.path(),
        &["mentions", "--watch", "Example Notes"],
        &other,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("Dated the 23rd"), "{out}");
    assert!(out.contains("2026-11-23 00:00 EST"), "{out}");

    // Its alerts are listed on that clock too.
    let today = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let rows: String = (0..6)
        .map(|i| format!("low{i},Ann,1,{today},Broke again {i}\n"))
        .collect();
    std::fs::write(
        dir.path().join("low.csv"),
        format!("id,author,rating,date,text\n{rows}"),
    )
    .unwrap();
    let o = zmot(
        dir.path(),
        &["import", "low.csv", "--watch", "Example Notes"],
        &ny,
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = zmot(dir.path(), &["check"], &ny);
    let (out, err) = text(&o);
    assert!(out.contains("1 opened"), "{out}{err}");
    let o = zmot(dir.path(), &["alerts"], &other);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.contains("Example Notes"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(" EST "), "{out}");
}
