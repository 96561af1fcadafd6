//! Sources: each connector is one file behind the [`Connector`] trait. Given its settings
//! and the cursor it saved last time, a connector returns normalised mentions and the
//! next cursor. Connectors never write SQL and never send email.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{AggregateRating, FetchErrorKind, Mention};

pub mod appstore;
pub mod bluesky;
pub mod cursor;
pub mod feed;
pub mod googleplay;
pub mod hackernews;
pub mod http;
pub mod mastodon;
pub mod page;
pub mod robots;
pub mod schema;
pub mod text;

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
    /// Why items were skipped or may be missing, for the fetch run's record.
    pub note: Option<String>,
    /// Why this fetch may have missed items even though it kept what it read (a page
    /// that failed after others were read, items the service no longer serves): the
    /// run is recorded as partial with this kind.
    pub partial: Option<FetchErrorKind>,
    /// How long the source asked to be left alone when it rate-limited a page after
    /// others were read (`Retry-After` of that page's 429 or 503): the fetch keeps what
    /// was read, and the scheduler does not run the source again before this has passed,
    /// as for a fetch that failed as a whole (see [`FetchError::retry_after`]).
    pub retry_after: Option<std::time::Duration>,
    /// The source's own published rating, when it shows one.
    pub aggregate: Option<AggregateRating>,
}

/// A fetch that failed as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind_str}: {message}", kind_str = .kind.as_str())]
pub struct FetchError {
    pub kind: FetchErrorKind,
    pub message: String,
    /// How long the source asked to be left alone (`Retry-After` on a 429 or 503 whose
    /// wait was too long to sit out within the fetch): the scheduler does not ask again
    /// before it has passed.
    pub retry_after: Option<std::time::Duration>,
}

impl FetchError {
    pub fn new(kind: FetchErrorKind, message: impl Into<String>) -> Self {
        FetchError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, wait: Option<std::time::Duration>) -> Self {
        self.retry_after = wait;
        self
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

/// Builds the connector for a source from its settings. Building validates the settings
/// and touches no network, so [`check_params`] is the same code path.
pub fn build(kind: &str, params: &toml::Table) -> Result<Box<dyn Connector>, String> {
    build_with_defaults(kind, params, &http::HttpOptions::default())
}

/// [`build`] with `defaults` for the HTTP settings the source's params leave out (the
/// `[http]` section's, see [`http::HttpOptions::from_config`]).
pub fn build_with_defaults(
    kind: &str,
    params: &toml::Table,
    defaults: &http::HttpOptions,
) -> Result<Box<dyn Connector>, String> {
    let p = Params::new(kind, params).with_http_defaults(defaults.clone());
    Ok(match kind {
        "appstore" => Box::new(appstore::AppStore::from_params(&p)?),
        "googleplay" => Box::new(googleplay::GooglePlay::from_params(&p)?),
        "feed" => Box::new(feed::Feed::from_params(&p)?),
        "mastodon" => Box::new(mastodon::Mastodon::from_params(&p)?),
        "bluesky" => Box::new(bluesky::Bluesky::from_params(&p)?),
        "hackernews" => Box::new(hackernews::HackerNews::from_params(&p)?),
        "page" => Box::new(page::Page::from_params(&p)?),
        _ => return Err(unknown_kind(kind)),
    })
}

/// Checks a source's settings without building anything that touches the network.
pub fn check_params(kind: &str, params: &toml::Table) -> Result<(), String> {
    build(kind, params).map(|_| ())
}

/// Typed access to a source's free-form `params` table, with messages that name the
/// kind and the key, so `zmot config check` can say exactly what to fix.
pub struct Params<'a> {
    kind: &'static str,
    table: &'a toml::Table,
    http_defaults: http::HttpOptions,
}

impl<'a> Params<'a> {
    pub fn new(kind: &str, table: &'a toml::Table) -> Self {
        let kind = KINDS
            .iter()
            .copied()
            .find(|k| *k == kind)
            .unwrap_or("source");
        Params {
            kind,
            table,
            http_defaults: http::HttpOptions::default(),
        }
    }

    /// Uses `defaults` for the HTTP settings this source does not set itself.
    pub fn with_http_defaults(self, defaults: http::HttpOptions) -> Self {
        Params {
            http_defaults: defaults,
            ..self
        }
    }

    /// The HTTP settings that apply where the source's params say nothing.
    pub fn http_defaults(&self) -> &http::HttpOptions {
        &self.http_defaults
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Refuses keys the connector does not read: a typo (`app-id`) would otherwise be
    /// ignored silently and the source would fetch the wrong thing or nothing.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        let common = http::COMMON_PARAMS;
        for key in self.table.keys() {
            if !known.contains(&key.as_str()) && !common.contains(&key.as_str()) {
                let mut all: Vec<&str> = known.iter().chain(common).copied().collect();
                all.sort_unstable();
                return Err(format!(
                    "{} source has no setting `{key}`; known settings: {}",
                    self.kind,
                    all.join(", ")
                ));
            }
        }
        Ok(())
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.trim())),
            Some(_) => Err(format!("{} source: `{key}` must be a string", self.kind)),
        }
    }

    pub fn required_str(&self, key: &str) -> Result<&'a str, String> {
        self.str(key)?
            .ok_or_else(|| format!("{} source needs `{key}`", self.kind))
    }

    pub fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str, String> {
        Ok(self.str(key)?.unwrap_or(default))
    }

    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.table.get(key) {
            None => Ok(default),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(*i as u64),
            Some(_) => Err(format!(
                "{} source: `{key}` must be a whole number, 0 or more",
                self.kind
            )),
        }
    }

    /// A whole number within `range`, for page counts and sizes the service caps.
    pub fn u64_in(
        &self,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, String> {
        let v = self.u64_or(key, default)?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "{} source: `{key}` must be between {} and {}",
                self.kind,
                range.start(),
                range.end()
            ))
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.table.get(key) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(format!(
                "{} source: `{key}` must be true or false",
                self.kind
            )),
        }
    }

    /// An http(s) URL; every service address is a setting so tests and mirrors can
    /// point a connector elsewhere.
    pub fn url_or(&self, key: &str, default: &str) -> Result<url::Url, String> {
        let raw = self.str_or(key, default)?;
        let u = url::Url::parse(raw).map_err(|e| {
            format!(
                "{} source: `{key}` `{}` is not a URL: {e}",
                self.kind,
                crate::redact::source_url(raw)
            )
        })?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "{} source: `{key}` must be an http or https URL",
                self.kind
            ));
        }
        Ok(u)
    }

    pub fn required_url(&self, key: &str) -> Result<url::Url, String> {
        let raw = self.required_str(key)?;
        self.url_or(key, raw)
    }
}

fn unknown_kind(kind: &str) -> String {
    format!(
        "unknown source kind `{kind}`; known kinds: {}",
        KINDS.join(", ")
    )
}
