//! The words of the domain, as types: a mention is one review or post, normalised
//! so that every source, the store, the rules and the emails speak of the same thing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Engagement counts as the source reports them. Zero when the source has no such count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Engagement {
    /// Likes, favourites, thumbs-up, "helpful" votes.
    pub likes: i64,
    /// Replies or comments under the post.
    pub replies: i64,
    /// Reposts, boosts, shares.
    pub reposts: i64,
}

impl Engagement {
    pub fn total(&self) -> i64 {
        self.likes + self.replies + self.reposts
    }
}

/// One review or post, normalised. Connectors produce these; the store keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    /// The id the source gives the item; unique within one source.
    pub external_id: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    pub text: String,
    /// Star rating 1 to 5, when the source has one.
    #[serde(default)]
    pub rating: Option<u8>,
    #[serde(default)]
    pub engagement: Engagement,
    /// BCP 47 language tag when known ("en", "fr").
    #[serde(default)]
    pub language: Option<String>,
    pub published_at: DateTime<Utc>,
    /// The business's public answer, when the source shows one.
    #[serde(default)]
    pub owner_reply: Option<String>,
    #[serde(default)]
    pub owner_reply_at: Option<DateTime<Utc>>,
    /// Source-specific details worth keeping (app version, subreddit, ...), as JSON.
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
}

impl Mention {
    /// Hash of what a reader sees (title and text, whitespace and case folded).
    /// Equal hashes across sources link cross-posted duplicates.
    pub fn content_hash(&self) -> String {
        content_hash(self.title.as_deref(), &self.text)
    }

    /// Hash of what an author or the business can edit (title, text, rating, reply);
    /// a change makes a new revision and keeps the old one. Engagement counts are not
    /// part of it: they move all the time and are updated in place.
    pub fn revision_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.title.as_deref().unwrap_or(""),
            &self.text,
            &self.rating.map(|r| r.to_string()).unwrap_or_default(),
            self.owner_reply.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        hex::encode(&h.finalize()[..16])
    }

    /// Whether any text of the mention has unwanted control characters.
    pub fn has_controls(&self) -> bool {
        let opt = |o: &Option<String>| {
            o.as_deref()
                .is_some_and(|s| s.contains(is_unwanted_control))
        };
        self.external_id.contains(is_unwanted_control)
            || self.text.contains(is_unwanted_control)
            || opt(&self.url)
            || opt(&self.author)
            || opt(&self.title)
            || opt(&self.language)
            || opt(&self.owner_reply)
            || self.extra.as_ref().is_some_and(json_has_controls)
    }

    /// The mention with unwanted control characters removed from every text, the
    /// `extra` details included (the store keeps only such mentions).
    pub fn without_controls(&self) -> Mention {
        let opt = |o: &Option<String>| o.as_deref().map(|s| without_controls(s).into_owned());
        Mention {
            external_id: without_controls(&self.external_id).into_owned(),
            url: opt(&self.url),
            author: opt(&self.author),
            title: opt(&self.title),
            text: without_controls(&self.text).into_owned(),
            language: opt(&self.language),
            owner_reply: opt(&self.owner_reply),
            extra: self.extra.as_ref().map(json_without_controls),
            ..self.clone()
        }
    }

    /// Checks the invariants the store relies on; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.external_id.trim().is_empty() {
            return Err("external_id is empty".into());
        }
        // Judged as the store will keep them, without control characters.
        let blank = |s: &str| without_controls(s).trim().is_empty();
        if blank(&self.text) && blank(self.title.as_deref().unwrap_or("")) {
            return Err("text and title are both empty".into());
        }
        if let Some(r) = self.rating {
            if !(1..=5).contains(&r) {
                return Err(format!("rating {r} is outside 1-5"));
            }
        }
        Ok(())
    }
}

/// Whether `c` is a control character text must not carry into the store: C0 controls
/// other than tab and line breaks. PostgreSQL refuses U+0000 in text outright (and with
/// it the whole batch); the others are invisible and only confuse display and search.
/// Carriage returns stay: CRLF line breaks are common in reviews, and removing them
/// would change the revision hash of mentions stored before, as if they were edited.
pub fn is_unwanted_control(c: char) -> bool {
    c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{7f}')
}

/// `s` without unwanted control characters (see [`is_unwanted_control`]), borrowed when
/// there were none.
pub fn without_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(is_unwanted_control) {
        std::borrow::Cow::Owned(s.chars().filter(|c| !is_unwanted_control(*c)).collect())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn json_has_controls(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains(is_unwanted_control),
        serde_json::Value::Array(a) => a.iter().any(json_has_controls),
        serde_json::Value::Object(o) => o
            .iter()
            .any(|(k, v)| k.contains(is_unwanted_control) || json_has_controls(v)),
        _ => false,
    }
}

fn json_without_controls(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(without_controls(s).into()),
        serde_json::Value::Array(a) => a.iter().map(json_without_controls).collect(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, v)| (without_controls(k).into_owned(), json_without_controls(v)))
            .collect(),
        other => other.clone(),
    }
}

/// What text search looks in: title and text, lowercased with Unicode's rules (done
/// here rather than by the database, whose `lower()` may fold ASCII only).
pub fn search_text(title: Option<&str>, text: &str) -> String {
    match title {
        Some(t) if !t.is_empty() => format!("{}\n{}", t.to_lowercase(), text.to_lowercase()),
        _ => text.to_lowercase(),
    }
}

/// Whitespace- and case-folded hash of a title and text.
pub fn content_hash(title: Option<&str>, text: &str) -> String {
    let mut h = Sha256::new();
    let fold = |s: &str| {
        s.split_whitespace()
            .map(|w| w.to_lowercase())
            .collect::<Vec<_>>()
            .join(" ")
    };
    h.update(fold(title.unwrap_or("")).as_bytes());
    h.update([0u8]);
    h.update(fold(text).as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Sentiment of a text: three classes plus a continuous score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Negative,
    Neutral,
    Positive,
}

impl Label {
    pub fn as_str(&self) -> &'static str {
        match self {
            Label::Negative => "negative",
            Label::Neutral => "neutral",
            Label::Positive => "positive",
        }
    }

    pub fn parse(s: &str) -> Option<Label> {
        match s.trim().to_ascii_lowercase().as_str() {
            "negative" | "neg" | "0" => Some(Label::Negative),
            "neutral" | "neu" => Some(Label::Neutral),
            "positive" | "pos" | "1" => Some(Label::Positive),
            _ => None,
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sentiment of one text as a model scored it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    pub label: Label,
    /// -1 (very negative) to 1 (very positive).
    pub score: f32,
    /// 0 to 1: how sure the model is of the label.
    pub confidence: f32,
}

/// A mention together with the sentiment scored for it, ready for the store.
#[derive(Debug, Clone)]
pub struct ScoredMention {
    pub mention: Mention,
    pub sentiment: Option<Sentiment>,
}

/// Why a fetch failed, in words a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchErrorKind {
    /// A bot-protection or access-denied page (HTTP 403, captcha).
    Blocked,
    /// HTTP 429 or a throttling answer.
    RateLimited,
    /// HTTP 404 or an id that does not exist.
    NotFound,
    /// The answer could not be understood.
    Malformed,
    /// Timeout, DNS, connection refused, TLS.
    Network,
    /// Wrong or missing settings or credentials.
    Config,
    /// The answer was larger than `max_body_bytes`.
    TooLarge,
    /// Anything else.
    Other,
}

impl FetchErrorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FetchErrorKind::Blocked => "blocked",
            FetchErrorKind::RateLimited => "rate_limited",
            FetchErrorKind::NotFound => "not_found",
            FetchErrorKind::Malformed => "malformed",
            FetchErrorKind::Network => "network",
            FetchErrorKind::Config => "config",
            FetchErrorKind::TooLarge => "too_large",
            FetchErrorKind::Other => "other",
        }
    }
}

/// A source's own published aggregate (for example "4.6 stars from 12,480 ratings").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AggregateRating {
    pub rating: f64,
    pub count: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mention(text: &str) -> Mention {
        Mention {
            external_id: "1".into(),
            url: None,
            author: None,
            title: None,
            text: text.into(),
            rating: Some(4),
            engagement: Engagement::default(),
            language: None,
            published_at: Utc::now(),
            owner_reply: None,
            owner_reply_at: None,
            extra: None,
        }
    }

    #[test]
    fn content_hash_folds_case_and_whitespace() {
        assert_eq!(
            mention("Great  kettle\n").content_hash(),
            mention("great kettle").content_hash()
        );
        assert_ne!(
            mention("great kettle").content_hash(),
            mention("bad kettle").content_hash()
        );
    }

    #[test]
    fn revision_hash_sees_rating_and_reply_changes() {
        let a = mention("ok");
        let mut b = a.clone();
        b.rating = Some(1);
        assert_ne!(a.revision_hash(), b.revision_hash());
        let mut c = a.clone();
        c.owner_reply = Some("Sorry to hear".into());
        assert_ne!(a.revision_hash(), c.revision_hash());
        let mut d = a.clone();
        d.engagement.likes = 40;
        assert_eq!(a.revision_hash(), d.revision_hash());
    }

    #[test]
    fn validate_rejects_bad_rating_and_empty() {
        let mut m = mention("fine");
        m.rating = Some(6);
        assert!(m.validate().unwrap_err().contains("rating 6"));
        let m = mention("  ");
        assert!(m.validate().is_err());
        let m = mention("\u{0}\u{1b} ");
        assert!(m.validate().is_err());
    }

    #[test]
    fn control_characters_are_removed_but_tab_and_line_breaks_kept() {
        let mut m = mention("nul \u{0}here\tand\r\nthere\u{7}");
        m.title = Some("t\u{0}".into());
        m.extra = Some(serde_json::json!({"k\u{0}": ["v\u{1}", 3]}));
        assert!(m.has_controls());
        let clean = m.without_controls();
        assert_eq!(clean.text, "nul here\tand\r\nthere");
        assert!(!mention("two\r\nlines").has_controls());
        assert_eq!(clean.title.as_deref(), Some("t"));
        assert_eq!(clean.extra, Some(serde_json::json!({"k": ["v", 3]})));
        assert!(!clean.has_controls());
        assert!(!mention("plain text, é and 漢字").has_controls());
    }
}
