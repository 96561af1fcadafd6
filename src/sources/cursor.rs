//! Incremental fetching. The pipeline stores each source's cursor as an opaque string;
//! connectors keep a small JSON document in it. Most use a [`Watermark`]: the newest
//! timestamp seen plus the ids seen at exactly that timestamp, so an item published in
//! the same second as the last one fetched is neither lost (`>` alone) nor fetched twice
//! (`>=` alone).

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{FetchContext, FetchError};
use crate::domain::FetchErrorKind;

/// The newest item seen so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Ids of the items at exactly `at`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
}

impl Watermark {
    /// Whether an item is newer than the watermark.
    pub fn is_new(&self, at: DateTime<Utc>, id: &str) -> bool {
        match self.at {
            None => true,
            Some(w) => at > w || (at == w && !self.ids.iter().any(|i| i == id)),
        }
    }

    /// Moves the watermark forward over an item (never backward).
    pub fn advance(&mut self, at: DateTime<Utc>, id: &str) {
        match self.at {
            Some(w) if at < w => {}
            Some(w) if at == w => {
                if !self.ids.iter().any(|i| i == id) {
                    self.ids.push(id.to_string());
                }
            }
            _ => {
                self.at = Some(at);
                self.ids = vec![id.to_string()];
            }
        }
    }
}

/// The window one fetch admits: after the previous watermark, or within the first-run
/// look-back when there is none. Tracks the next watermark as items go by.
#[derive(Debug, Clone)]
pub struct Window {
    prev: Option<Watermark>,
    since: DateTime<Utc>,
    next: Watermark,
}

impl Window {
    pub fn new(prev: Option<Watermark>, ctx: &FetchContext) -> Self {
        let next = prev.clone().unwrap_or_default();
        Window {
            prev,
            since: ctx.first_run_since,
            next,
        }
    }

    /// The oldest time still of interest (for `since` query parameters).
    pub fn lower_bound(&self) -> DateTime<Utc> {
        self.prev.as_ref().and_then(|w| w.at).unwrap_or(self.since)
    }

    /// Whether an item belongs in this fetch. Call [`Window::saw`] for every item read,
    /// admitted or not, so filtered items do not come back next time.
    pub fn admits(&self, at: DateTime<Utc>, id: &str) -> bool {
        match &self.prev {
            Some(w) if w.at.is_some() => w.is_new(at, id),
            _ => at >= self.since,
        }
    }

    /// Whether items this old end the walk back through pages sorted newest first.
    pub fn is_behind(&self, at: DateTime<Utc>) -> bool {
        at < self.lower_bound()
    }

    pub fn saw(&mut self, at: DateTime<Utc>, id: &str) {
        self.next.advance(at, id);
    }

    pub fn watermark(&self) -> &Watermark {
        &self.next
    }
}

/// Reads a cursor this connector wrote. An unreadable cursor (written by an older
/// version, or edited by hand) starts over within the look-back rather than failing the
/// source forever; the store's upsert absorbs the overlap.
pub fn load<T: DeserializeOwned>(kind: &str, cursor: Option<&str>) -> Option<T> {
    let raw = cursor?.trim();
    if raw.is_empty() {
        return None;
    }
    match serde_json::from_str(raw) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(kind, "ignoring an unreadable cursor ({e}); starting over");
            None
        }
    }
}

/// Writes a cursor.
pub fn save<T: Serialize>(c: &T) -> Result<String, FetchError> {
    serde_json::to_string(c)
        .map_err(|e| FetchError::new(FetchErrorKind::Other, format!("cannot save cursor: {e}")))
}

/// Counts items left out and keeps the first few reasons for the fetch run's note.
#[derive(Debug, Default)]
pub struct Skips {
    pub count: u64,
    reasons: Vec<String>,
}

impl Skips {
    pub fn add(&mut self, reason: impl Into<String>) {
        self.count += 1;
        if self.reasons.len() < 5 {
            self.reasons.push(reason.into());
        }
    }

    pub fn note(&self) -> Option<String> {
        (self.count > 0).then(|| {
            let more = self.count as usize - self.reasons.len();
            let more = if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            };
            format!(
                "{} item(s) skipped: {}{more}",
                self.count,
                self.reasons.join("; ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn watermark_keeps_same_second_items_apart() {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let mut w = Watermark::default();
        w.advance(t, "a");
        assert!(!w.is_new(t, "a"));
        assert!(w.is_new(t, "b"));
        assert!(!w.is_new(t - chrono::Duration::seconds(1), "c"));
        w.advance(t, "b");
        w.advance(t - chrono::Duration::seconds(9), "old");
        assert_eq!(w.ids, vec!["a", "b"]);
        w.advance(t + chrono::Duration::seconds(1), "c");
        assert_eq!(w.ids, vec!["c"]);
    }
}
