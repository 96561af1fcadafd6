//! On-device sentiment: one small interface, a batch of texts in, label + score +
//! confidence out. Nothing leaves the machine.

pub mod lexicon;

use anyhow::Result;

use crate::config::SentimentSettings;
use crate::domain::Sentiment;

pub use lexicon::LexiconAnalyzer;

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

/// Loads the configured model.
pub fn load(settings: &SentimentSettings) -> Result<Box<dyn Analyzer>> {
    let _ = settings;
    Ok(Box::new(LexiconAnalyzer))
}
