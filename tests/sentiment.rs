//! The MiniLM sentiment model end to end: the model files fetched by
//! `scripts/fetch-models.sh` (CI runs it), the committed head, and `zmot analyze` and
//! `zmot eval` as a user runs them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use zmot::domain::Label;
use zmot::sentiment::{Analyzer, MiniLmAnalyzer};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn model() -> MiniLmAnalyzer {
    MiniLmAnalyzer::load(&models_dir()).expect(
        "the MiniLM model loads from models/ (run scripts/fetch-models.sh to fetch the encoder)",
    )
}

fn zmot(args: &[&str], stdin: &str) -> (String, String, bool) {
    zmot_with_env(args, stdin, &[])
}

/// Runs zmot in an empty folder (no configuration file), with these `ZMOT__` overrides.
fn zmot_with_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (String, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zmot"));
    cmd.current_dir(dir.path())
        .args(args)
        .env_remove("ZMOT_CONFIG")
        .env("ZMOT__SENTIMENT__FETCH_MISSING", "false")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run zmot");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn analyze_gets_the_obvious_ones_right_in_order() {
    // Loading directly proves the model files are there: `zmot analyze` would otherwise
    // fall back to the lexicon and this test would not test the MiniLM model.
    let _ = model();
    let input = [
        r#"{"id": 1, "text": "Absolutely love this app, it works perfectly and support was fantastic!"}"#,
        r#"{"id": "two", "text": "Terrible product. It broke after two days and they refused a refund."}"#,
        r#"{"id": 3, "text": "The package arrived on Tuesday."}"#,
        r#"not json at all"#,
        r#"{"id": 5}"#,
        r#"{"id": 6, "text": "Not good at all, a complete waste of money 😡"}"#,
        r#"{"id": 7, "text": "Best purchase I've made this year 😍🔥"}"#,
        r#"{"id": 8, "text": "I was worried it would be flimsy, but it is solid, quiet and beautifully made."}"#,
    ]
    .join("\n");
    let (out, err, ok) = zmot(&["analyze", "--model", "minilm"], &input);
    assert!(ok, "{err}");
    assert!(!err.contains("lexicon model"), "fell back: {err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "{out}");
    let label = |i: usize| lines[i]["label"].as_str().unwrap_or("(none)").to_string();
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(label(0), "positive");
    assert_eq!(lines[1]["id"], "two");
    assert_eq!(label(1), "negative");
    assert_ne!(label(2), "negative", "{}", lines[2]);
    assert!(lines[3]["error"].is_string());
    assert_eq!(lines[4]["id"], 5);
    assert!(lines[4]["error"].is_string());
    assert_eq!(label(5), "negative");
    assert_eq!(label(6), "positive");
    assert_eq!(label(7), "positive");
    for l in lines.iter().filter(|l| l.get("label").is_some()) {
        let score = l["score"].as_f64().unwrap();
        let confidence = l["confidence"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&score), "{l}");
        assert!((0.0..=1.0).contains(&confidence), "{l}");
    }
}

#[test]
fn without_a_configuration_file_the_environment_still_sets_the_model() {
    let _ = model();
    let input = [
        r#"{"id": 1, "text": "It broke after two days and they refused a refund."}"#,
        r#"{"id": 2, "text": "Would buy again, works great."}"#,
        r#"{"id": 3, "text": "The box contained a charger and a cable."}"#,
    ]
    .join("\n");
    let (lexicon, err, ok) = zmot(&["analyze", "--model", "lexicon"], &input);
    assert!(ok, "{err}");
    let (minilm, err, ok) = zmot(&["analyze"], &input);
    assert!(ok, "{err}");
    assert_ne!(
        minilm, lexicon,
        "the two models score these texts differently"
    );
    let (from_env, err, ok) = zmot_with_env(
        &["analyze"],
        &input,
        &[("ZMOT__SENTIMENT__MODEL", "lexicon")],
    );
    assert!(ok, "{err}");
    assert_eq!(from_env, lexicon);
    // A models folder without the model files, and fetching them switched off (by the
    // environment too): the lexicon, with a warning that says so.
    let empty = tempfile::tempdir().unwrap();
    let (out, err, ok) = zmot_with_env(
        &["analyze"],
        &input,
        &[(
            "ZMOT__SENTIMENT__MODELS_DIR",
            empty.path().to_str().unwrap(),
        )],
    );
    assert!(ok, "{err}");
    assert!(err.contains("using the lexicon model"), "{err}");
    assert_eq!(out, lexicon);
    // A bad value is named with its variable.
    let (_, err, ok) = zmot_with_env(&["analyze"], &input, &[("ZMOT__SENTIMENT__MODEL", "gpt-9")]);
    assert!(!ok);
    assert!(err.contains("ZMOT__SENTIMENT__MODEL"), "{err}");
}

#[test]
fn the_same_text_scores_the_same_in_any_batch() {
    let m = model();
    let target = "The screen is lovely but the battery barely lasts a morning.";
    let alone = m.analyze(&[target]).unwrap()[0];
    let long = "word ".repeat(300);
    let batch = [
        "ok",
        target,
        long.as_str(),
        "Shipping took three weeks and nobody answered my emails.",
    ];
    let together = m.analyze(&batch).unwrap()[1];
    assert_eq!(alone, together);
}

#[test]
fn edge_cases_score_without_error() {
    let m = model();
    let long = "The kettle is fine. ".repeat(600); // ~12,000 characters
    let texts = [
        "",
        "😡😡😡",
        long.as_str(),
        "Produit excellent, livraison rapide, je recommande !",
        "Great value &amp; fast delivery &lt;3",
    ];
    let out = m.analyze(&texts).unwrap();
    assert_eq!(out.len(), texts.len());
    // Emoji alone carry sentiment through the lexicon signals ([UNK] to the encoder).
    assert_eq!(out[1].label, Label::Negative, "{:?}", out[1]);
    assert_eq!(out[3].label, Label::Positive, "{:?}", out[3]);
    assert_eq!(out[4].label, Label::Positive, "{:?}", out[4]);
}

#[test]
fn eval_reports_accuracy_and_confusion() {
    let _ = model();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gold.jsonl");
    std::fs::write(
        &file,
        [
            r#"{"text": "I love it, five stars", "label": "positive"}"#,
            r#"{"text": "Awful, it stopped working and I want my money back", "label": "negative"}"#,
            r#"{"text": "Wonderful staff and a spotless room", "label": "positive"}"#,
            r#"{"text": "The worst customer service I have ever had", "label": "negative"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    // `minilm` is the shipped LoRA adapter when it is there; the fused model is a model
    // like the others.
    for (asked, used) in [
        ("minilm", "minilm-lora"),
        ("minilm-head", "minilm-head"),
        ("minilm-fused", "minilm-fused"),
    ] {
        let (out, err, ok) = zmot(&["eval", file.to_str().unwrap(), "--model", asked], "");
        assert!(ok, "{err}");
        assert!(out.contains(&format!("model {used}")), "{asked}: {out}");
        assert!(out.contains("binary"), "{out}");
        assert!(out.contains("accuracy  1.0000"), "{asked}: {out}\n{err}");
    }
    let (out, err, ok) = zmot(&["eval", file.to_str().unwrap(), "--compare"], "");
    assert!(ok, "{err}");
    for variant in ["lexicon", "minilm-head", "minilm-lora", "minilm-fused"] {
        assert!(out.contains(variant), "{variant} missing:\n{out}");
    }
    assert!(out.contains("texts/s"), "{out}");
}
