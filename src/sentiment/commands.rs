//! The sentiment commands: `zmot analyze`, `zmot eval`, `zmot bench sentiment`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use super::head::{class_index, CLASSES, LABELS};
use super::Analyzer;
use crate::domain::{Label, Sentiment};

/// Texts scored together by `zmot analyze`.
const ANALYZE_BATCH: usize = 64;

/// One input line of `zmot analyze`, parsed or not.
enum Line {
    Text {
        id: serde_json::Value,
        text: String,
    },
    Bad {
        id: serde_json::Value,
        error: String,
    },
}

fn parse_line(raw: &str) -> Line {
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(o)) => {
            let id = o.get("id").cloned().unwrap_or(serde_json::Value::Null);
            match o.get("text") {
                Some(serde_json::Value::String(t)) => Line::Text {
                    id,
                    text: t.clone(),
                },
                Some(_) => Line::Bad {
                    id,
                    error: "\"text\" is not a string".into(),
                },
                None => Line::Bad {
                    id,
                    error: "no \"text\" field".into(),
                },
            }
        }
        Ok(_) => Line::Bad {
            id: serde_json::Value::Null,
            error: "not a JSON object".into(),
        },
        Err(e) => Line::Bad {
            id: serde_json::Value::Null,
            error: format!("invalid JSON: {e}"),
        },
    }
}

fn round4(x: f32) -> f64 {
    (f64::from(x) * 10_000.0).round() / 10_000.0
}

fn result_json(id: &serde_json::Value, s: &Sentiment) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "label": s.label.as_str(),
        // f32 to JSON via f64 would print 0.7384999990463257 for 0.7385.
        "score": round4(s.score),
        "confidence": round4(s.confidence),
    })
}

/// Reads JSON lines `{"id", "text"}` and writes one result line per input line, in the
/// same order. Bad lines get `{"id", "error"}`; the rest go on. Returns how many lines
/// were bad.
pub fn analyze(analyzer: &dyn Analyzer, input: impl BufRead, mut out: impl Write) -> Result<usize> {
    let mut bad = 0;
    let mut pending: Vec<Line> = Vec::with_capacity(ANALYZE_BATCH);
    let flush = |pending: &mut Vec<Line>, out: &mut dyn Write| -> Result<()> {
        let texts: Vec<&str> = pending
            .iter()
            .filter_map(|l| match l {
                Line::Text { text, .. } => Some(text.as_str()),
                Line::Bad { .. } => None,
            })
            .collect();
        let mut scores = analyzer.analyze(&texts)?.into_iter();
        for l in pending.drain(..) {
            let v = match l {
                Line::Text { id, .. } => {
                    let s = scores
                        .next()
                        .context("the model returned too few results")?;
                    result_json(&id, &s)
                }
                Line::Bad { id, error } => serde_json::json!({"id": id, "error": error}),
            };
            writeln!(out, "{v}")?;
        }
        out.flush()?;
        Ok(())
    };
    for (n, raw) in input.lines().enumerate() {
        let raw = match raw {
            Ok(r) => r,
            Err(e) => {
                // Not UTF-8: report this line and go on.
                bad += 1;
                pending.push(Line::Bad {
                    id: serde_json::Value::Null,
                    error: format!("line {}: {e}", n + 1),
                });
                continue;
            }
        };
        if raw.trim().is_empty() {
            continue;
        }
        let line = parse_line(&raw);
        if let Line::Bad { error, .. } = &line {
            bad += 1;
            tracing::warn!("input line {}: {error}", n + 1);
        }
        pending.push(line);
        if pending.len() >= ANALYZE_BATCH {
            flush(&mut pending, &mut out)?;
        }
    }
    flush(&mut pending, &mut out)?;
    Ok(bad)
}

/// Accuracy, macro-F1 and the confusion matrix of a model on labelled texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub n: usize,
    /// Binary when the gold labels have no neutral: the prediction is then positive
    /// when the score is above zero, negative otherwise.
    pub binary: bool,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// confusion[gold][predicted], negative/neutral/positive.
    pub confusion: [[usize; CLASSES]; CLASSES],
}

pub fn evaluate(gold: &[Label], predicted: &[Sentiment]) -> Evaluation {
    let binary = !gold.contains(&Label::Neutral);
    let mut confusion = [[0usize; CLASSES]; CLASSES];
    for (g, p) in gold.iter().zip(predicted) {
        let pred = if binary {
            if p.score > 0.0 {
                Label::Positive
            } else {
                Label::Negative
            }
        } else {
            p.label
        };
        confusion[class_index(*g)][class_index(pred)] += 1;
    }
    let n = gold.len();
    let correct: usize = (0..CLASSES).map(|c| confusion[c][c]).sum();
    let classes: Vec<usize> = if binary { vec![0, 2] } else { vec![0, 1, 2] };
    let f1s: Vec<f64> = classes
        .iter()
        .map(|&c| {
            let tp = confusion[c][c] as f64;
            let gold_c: usize = confusion[c].iter().sum();
            let pred_c: usize = (0..CLASSES).map(|g| confusion[g][c]).sum();
            if tp == 0.0 {
                0.0
            } else {
                let p = tp / pred_c as f64;
                let r = tp / gold_c as f64;
                2.0 * p * r / (p + r)
            }
        })
        .collect();
    Evaluation {
        n,
        binary,
        accuracy: correct as f64 / n.max(1) as f64,
        macro_f1: f1s.iter().sum::<f64>() / f1s.len() as f64,
        confusion,
    }
}

impl std::fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} texts, {} labels",
            self.n,
            if self.binary {
                "binary (score > 0 is positive)"
            } else {
                "three-class"
            }
        )?;
        writeln!(f, "accuracy  {:.4}", self.accuracy)?;
        writeln!(f, "macro-F1  {:.4}", self.macro_f1)?;
        writeln!(
            f,
            "confusion (rows: gold, columns: predicted)\n{:>10} {:>9} {:>9} {:>9}",
            "", "negative", "neutral", "positive"
        )?;
        for (g, label) in LABELS.iter().enumerate() {
            if self.binary && *label == Label::Neutral {
                continue;
            }
            writeln!(
                f,
                "{:>10} {:>9} {:>9} {:>9}",
                label.as_str(),
                self.confusion[g][0],
                self.confusion[g][1],
                self.confusion[g][2]
            )?;
        }
        Ok(())
    }
}

/// `zmot eval FILE`.
pub fn eval_file(analyzer: &dyn Analyzer, path: &Path) -> Result<Evaluation> {
    let data = super::train::read_labelled(path)?;
    anyhow::ensure!(!data.is_empty(), "{}: no labelled texts", path.display());
    let texts: Vec<&str> = data.iter().map(|(t, _)| t.as_str()).collect();
    let gold: Vec<Label> = data.iter().map(|(_, l)| *l).collect();
    let (predicted, _) = score_timed(&texts, |t| analyzer.analyze(t))?;
    Ok(evaluate(&gold, &predicted))
}

/// Scores many texts in chunks of 256 (so a large file does not make one huge batch);
/// returns the results in order and the texts per second.
pub fn score_timed(
    texts: &[&str],
    score: impl Fn(&[&str]) -> Result<Vec<Sentiment>>,
) -> Result<(Vec<Sentiment>, f64)> {
    let started = Instant::now();
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        out.extend(score(chunk)?);
    }
    Ok((out, texts.len() as f64 / started.elapsed().as_secs_f64()))
}

/// The models folder of the settings, with the encoder files fetched when missing and
/// allowed (a failure is a warning: what can load still does).
fn models_dir(settings: &crate::config::SentimentSettings) -> std::path::PathBuf {
    let dir = super::resolve_models_dir(&settings.models_dir);
    if settings.fetch_missing {
        if let Err(e) = super::ensure_models(&dir) {
            tracing::warn!("cannot fetch the model files: {e:#}");
        }
    }
    dir
}

/// `zmot eval FILE --compare`: lexicon, frozen head, LoRA and LoRA + lexicon fusion side
/// by side (accuracy, macro-F1, texts/s), then each confusion matrix. The fusion weight
/// is the one stored in `models/lora.json` (chosen on the dev set when training).
pub fn compare(settings: &crate::config::SentimentSettings, path: &Path) -> Result<()> {
    let dir = models_dir(settings);
    let data = super::train::read_labelled(path)?;
    anyhow::ensure!(!data.is_empty(), "{}: no labelled texts", path.display());
    let texts: Vec<&str> = data.iter().map(|(t, _)| t.as_str()).collect();
    let gold: Vec<Label> = data.iter().map(|(_, l)| *l).collect();
    let frozen = super::MiniLmAnalyzer::load(&dir)
        .map_err(|e| tracing::warn!("frozen head not loaded: {e:#}"))
        .ok();
    let lora = super::finetune::load_analyzer(&dir)
        .map_err(|e| tracing::warn!("LoRA adapter not loaded: {e:#}"))
        .ok();
    let weight = super::finetune::fusion_weight(&dir).unwrap_or_else(|e| {
        tracing::warn!("{e:#}; fusing at 0.65");
        0.65
    });
    let fused = lora.as_ref().map(|l| super::finetune::FusedAnalyzer {
        model: l,
        weight,
        id: format!("minilm-fused (w {weight:.2})"),
    });
    let mut variants: Vec<&dyn Analyzer> = vec![&super::LexiconAnalyzer];
    if let Some(f) = &frozen {
        variants.push(f);
    }
    if let Some(l) = &lora {
        variants.push(l);
    }
    if let Some(f) = &fused {
        variants.push(f);
    }
    let mut rows = Vec::new();
    for a in variants {
        let (predicted, rate) = score_timed(&texts, |t| a.analyze(t))?;
        rows.push((a.model_id().to_string(), evaluate(&gold, &predicted), rate));
    }
    println!("{}: {} texts", path.display(), texts.len());
    println!(
        "{:<32} {:>9} {:>9} {:>10}",
        "model", "accuracy", "macro-F1", "texts/s"
    );
    for (id, e, rate) in &rows {
        println!(
            "{id:<32} {:>9.4} {:>9.4} {rate:>10.1}",
            e.accuracy, e.macro_f1
        );
    }
    for (id, e, _) in &rows {
        println!("\n{id}\n{e}");
    }
    Ok(())
}

/// `zmot eval --long-reviews N`: `n` whole IMDB reviews never trained on
/// ([`super::train::held_out_reviews`]), their length in tokens, and every long-text
/// strategy with the frozen head and the LoRA encoder (binary accuracy, macro-F1,
/// texts/s), the lexicon for reference.
pub fn long_reviews(
    settings: &crate::config::SentimentSettings,
    data_dir: &Path,
    n: usize,
) -> Result<()> {
    use super::windows::{LongTexts, BUDGET};
    let dir = models_dir(settings);
    let train = super::train::TrainSettings {
        data_dir: data_dir.to_path_buf(),
        models_dir: dir.clone(),
        ..Default::default()
    };
    let (_, dev) = super::train::dev_set(data_dir)?;
    let data = super::train::held_out_reviews(&train, &dev, n)?;
    anyhow::ensure!(
        !data.is_empty(),
        "no held-out reviews in {}",
        data_dir.display()
    );
    let texts: Vec<&str> = data.iter().map(|(t, _)| t.as_str()).collect();
    let gold: Vec<Label> = data.iter().map(|(_, l)| *l).collect();

    let frozen = super::MiniLmAnalyzer::load(&dir)?;
    let lora = super::finetune::load_analyzer(&dir)
        .map_err(|e| tracing::warn!("LoRA adapter not loaded: {e:#}"))
        .ok();

    // Each review's length in tokens and how many pieces it is scored in.
    let sizes: Vec<(usize, usize)> = texts
        .iter()
        .map(|t| {
            let toks = frozen.encoder().tokenize(t)?;
            let pieces = if toks.ids.len() <= BUDGET {
                1
            } else {
                super::windows::windows(t, &toks.spans, BUDGET).len()
            };
            Ok((toks.ids.len(), pieces))
        })
        .collect::<Result<_>>()?;
    let mut lengths: Vec<usize> = sizes.iter().map(|&(l, _)| l).collect();
    let windows: usize = sizes.iter().map(|&(_, p)| p).sum();
    let over = |k: usize| lengths.iter().filter(|&&l| l > k).count();
    let (w126, w128, w254, w256) = (over(BUDGET), over(128), over(254), over(256));
    lengths.sort_unstable();
    let negatives = gold.iter().filter(|&&g| g == Label::Negative).count();
    println!(
        "{} held-out whole IMDB reviews ({} negative, {} positive; seed {}, after the first {} + {} of the shuffle)",
        texts.len(),
        negatives,
        texts.len() - negatives,
        train.seed,
        train.imdb_reviews,
        train.imdb_sentence_reviews
    );
    println!(
        "tokens without [CLS]/[SEP]: median {}, mean {:.0}, max {}; over {BUDGET} (windowed): {w126}, \
         over 128: {w128}, over 254 (cut by head+tail 256): {w254}, over 256: {w256}; {windows} pieces \
         ({:.2} per review)",
        lengths[lengths.len() / 2],
        lengths.iter().sum::<usize>() as f64 / lengths.len() as f64,
        lengths.last().copied().unwrap_or(0),
        windows as f64 / texts.len() as f64
    );

    let run = |f: &dyn Fn(&[&str]) -> Result<Vec<Sentiment>>| -> Result<(Evaluation, f64)> {
        let (predicted, rate) = score_timed(&texts, f)?;
        Ok((evaluate(&gold, &predicted), rate))
    };
    println!(
        "\n{:<12} {:<26} {:>9} {:>9} {:>9}",
        "model", "long texts", "accuracy", "macro-F1", "texts/s"
    );
    let (e, rate) = run(&|t| super::LexiconAnalyzer.analyze(t))?;
    println!(
        "{:<12} {:<26} {:>9.4} {:>9.4} {rate:>9.1}",
        "lexicon", "whole text", e.accuracy, e.macro_f1
    );
    let mut models: Vec<&super::MiniLmAnalyzer> = vec![&frozen];
    if let Some(l) = &lora {
        models.push(l);
    }
    for m in models {
        for how in LongTexts::ALL {
            let (e, rate) = run(&|t| m.analyze_with(t, how))?;
            println!(
                "{:<12} {:<26} {:>9.4} {:>9.4} {rate:>9.1}{}",
                m.model_id(),
                how.as_str(),
                e.accuracy,
                e.macro_f1,
                if how == super::windows::DEFAULT {
                    "  (default)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

const SHORT: &[&str] = &[
    "Loving the new update, so much faster now! 🔥",
    "@support three days and still no reply. Not impressed.",
    "Anyone else's order stuck in 'processing' since Monday?",
    "Best kettle I've owned, boils in two minutes flat",
    "ugh, the app logged me out AGAIN",
    "Delivery was quick and the box was well packed.",
];

const MEDIUM: &[&str] = &[
    "The battery easily lasts a full day, but the charger stopped working after a week.",
    "I waited forty minutes on hold and nobody could explain the extra charge.",
    "Staff were friendly, the room was spotless and breakfast was excellent.",
    "The fabric feels cheap and the stitching came loose after the first wash.",
    "Setup took five minutes and the app walked me through every step.",
    "Arrived two days late and the box was crushed, but the kettle itself is fine.",
];

/// Long texts: about 150 words, the length of a typical full review.
const LONG_PARTS: &[&str] = &[
    "I bought this after reading dozens of reviews and I wanted to share my experience after three months of daily use.",
    "The first impression was great: it looks premium, the packaging was careful and setup was straightforward.",
    "After a few weeks, though, the lid started to stick and the light on the base began to flicker.",
    "Customer support answered within a day and sent a replacement part, which was quick and friendly.",
    "The replacement fixed the lid, but the flickering light came back after another fortnight.",
    "For the price I expected better quality control, and I would think twice before buying it again.",
];

fn long_text() -> String {
    LONG_PARTS.join(" ")
}

/// Texts per second and peak memory for batch sizes 1 and 32 on short, medium and long
/// texts, for each model given.
pub fn bench(analyzers: &[(&str, &dyn Analyzer)], seconds: f64) -> Result<()> {
    let long = long_text();
    let kinds: [(&str, Vec<&str>); 3] = [
        ("short (post)", SHORT.to_vec()),
        ("medium (review sentence)", MEDIUM.to_vec()),
        ("long (full review)", vec![long.as_str()]),
    ];
    println!(
        "{:<12} {:<26} {:>10} {:>6} {:>12} {:>14}",
        "model", "texts", "words/text", "batch", "texts/s", "peak RSS MiB"
    );
    for (name, analyzer) in analyzers {
        for (kind, pool) in &kinds {
            for batch_size in [1usize, 32] {
                let batch: Vec<&str> = (0..batch_size).map(|i| pool[i % pool.len()]).collect();
                analyzer.analyze(&batch)?; // warm-up
                let started = Instant::now();
                let mut done = 0usize;
                while started.elapsed().as_secs_f64() < seconds || done == 0 {
                    analyzer.analyze(&batch)?;
                    done += batch.len();
                }
                let rate = done as f64 / started.elapsed().as_secs_f64();
                let words = pool
                    .iter()
                    .map(|t| t.split_whitespace().count())
                    .sum::<usize>() as f64
                    / pool.len() as f64;
                println!(
                    "{:<12} {:<26} {:>10.0} {:>6} {:>12.1} {:>14.1}",
                    name,
                    kind,
                    words,
                    batch_size,
                    rate,
                    crate::bench::peak_rss_mib().unwrap_or(f64::NAN)
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentiment::LexiconAnalyzer;

    #[test]
    fn analyze_keeps_order_and_reports_bad_lines() {
        let input = "{\"id\": 1, \"text\": \"I love this, works perfectly\"}\n\
                     not json\n\
                     {\"id\": \"b\"}\n\
                     \n\
                     {\"id\": 3, \"text\": \"Terrible. It broke and support never answered.\"}\n";
        let mut out = Vec::new();
        let bad = analyze(&LexiconAnalyzer, input.as_bytes(), &mut out).unwrap();
        assert_eq!(bad, 2);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["id"], 1);
        assert_eq!(lines[0]["label"], "positive");
        assert!(lines[1]["error"].as_str().unwrap().contains("invalid JSON"));
        assert_eq!(lines[2]["id"], "b");
        assert!(lines[2]["error"].as_str().unwrap().contains("no \"text\""));
        assert_eq!(lines[3]["id"], 3);
        assert_eq!(lines[3]["label"], "negative");
        assert!(lines[3]["score"].as_f64().unwrap() < 0.0);
    }

    fn s(label: Label, score: f32) -> Sentiment {
        Sentiment {
            label,
            score,
            confidence: 1.0,
        }
    }

    #[test]
    fn binary_evaluation_uses_the_sign_of_the_score() {
        let gold = [
            Label::Positive,
            Label::Negative,
            Label::Positive,
            Label::Negative,
        ];
        let pred = [
            s(Label::Neutral, 0.2),
            s(Label::Negative, -0.9),
            s(Label::Negative, -0.1),
            s(Label::Negative, -0.5),
        ];
        let e = evaluate(&gold, &pred);
        assert!(e.binary);
        assert_eq!(e.accuracy, 0.75);
        assert_eq!(e.confusion[2], [1, 0, 1]);
        // negative: p 2/3, r 1 -> 0.8; positive: p 1, r 1/2 -> 2/3
        assert!((e.macro_f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn three_class_evaluation_uses_the_label() {
        let gold = [Label::Neutral, Label::Negative, Label::Positive];
        let pred = [
            s(Label::Neutral, 0.3),
            s(Label::Neutral, -0.2),
            s(Label::Positive, 0.8),
        ];
        let e = evaluate(&gold, &pred);
        assert!(!e.binary);
        assert!((e.accuracy - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(e.confusion[0], [0, 1, 0]);
        let shown = e.to_string();
        assert!(shown.contains("three-class") && shown.contains("accuracy  0.6667"));
    }
}
