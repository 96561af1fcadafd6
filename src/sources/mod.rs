//! Sources: each connector is one file behind the [`Connector`] trait. Given its settings
//! and the cursor it saved last time, a connector returns normalised mentions and the
//! next cursor. Connectors never write SQL and never send email.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{AggregateRating, FetchErrorKind, Mention};

/// Every kind of source zmot knows, as written in the configuration.
pub const KINDS: &[&str] = &[
    "appstore",
    "googleplay",
    "feed",
    "mastodon",
    "bluesky",
    "hackernews",
    "page",
];

/// What a connector needs to know about the watch and the moment.
#[derive(Debug, Clone)]
pub struct FetchContext {
    pub http: reqwest::Client,
    /// The watch's keywords (case-insensitive); empty keeps everything.
    pub keywords: Vec<String>,
    /// Language tags to keep; empty keeps every language.
    pub languages: Vec<String>,
    /// On a first fetch (no cursor), items older than this are not fetched.
    pub first_run_since: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// What one fetch brought.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub mentions: Vec<Mention>,
    /// Where to start next time; `None` keeps the previous cursor.
    pub cursor: Option<String>,
    /// Items that could not be read and were left out.
    pub skipped: u64,
    /// Why items were skipped, for the fetch run's record.
    pub note: Option<String>,
    /// The source's own published rating, when it shows one.
    pub aggregate: Option<AggregateRating>,
}

/// A fetch that failed as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind_str}: {message}", kind_str = .kind.as_str())]
pub struct FetchError {
    pub kind: FetchErrorKind,
    pub message: String,
}

impl FetchError {
    pub fn new(kind: FetchErrorKind, message: impl Into<String>) -> Self {
        FetchError {
            kind,
            message: message.into(),
        }
    }
}

#[async_trait]
pub trait Connector: Send + Sync {
    /// The kind name, as in [`KINDS`].
    fn kind(&self) -> &'static str;

    /// Fetches what is new since `cursor` (everything within the look-back when `None`).
    async fn fetch(&self, ctx: &FetchContext, cursor: Option<&str>) -> Result<Fetched, FetchError>;
}

pub fn is_known_kind(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// Builds the connector for a source from its settings.
pub fn build(kind: &str, params: &toml::Table) -> Result<Box<dyn Connector>, String> {
    let _ = params;
    if !is_known_kind(kind) {
        return Err(unknown_kind(kind));
    }
    Err(format!(
        "the `{kind}` connector is not available in this build"
    ))
}

/// Checks a source's settings without building anything that touches the network.
pub fn check_params(kind: &str, params: &toml::Table) -> Result<(), String> {
    if !is_known_kind(kind) {
        return Err(unknown_kind(kind));
    }
    let _ = params;
    Ok(())
}

fn unknown_kind(kind: &str) -> String {
    format!(
        "unknown source kind `{kind}`; known kinds: {}",
        KINDS.join(", ")
    )
}
