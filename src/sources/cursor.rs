//! Incremental fetching. The pipeline stores each source's cursor as an opaque string;
//! connectors keep a small JSON document in it. Most use a [`Watermark`]: the newest
//! timestamp seen plus the ids seen at exactly that timestamp, so an item published in
//! the same second as the last one fetched is neither lost (`>` alone) nor fetched twice
//! (`>=` alone).
//!
//! Services read newest first keep a [`NewestFirst`] cursor: the watermark plus, when a
//! walk stopped at its page limit (or at a failing page) before reaching the watermark,
//! the [`Gap`] it left. The next run reads the gap first, so a busy day is fetched over
//! several runs instead of its older part being jumped over.
//!
//! A source that runs one search per query (keyword) keeps the queries its cursor is
//! about: a query added later has read nothing yet, so [`Searches`] gives it a walk of
//! its own within the first-run look-back (a gap of its own when cut) until it has read
//! everything up to the present together with the others, and then joins them.

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

    /// Moves the mark back over an item (never forward): for the oldest item read.
    pub fn advance_back(&mut self, at: DateTime<Utc>, id: &str) {
        let further = self.at.is_none_or(|w| at < w);
        self.mark(at, id, further);
    }

    /// Moves the watermark forward over an item (never backward).
    pub fn advance(&mut self, at: DateTime<Utc>, id: &str) {
        let further = self.at.is_none_or(|w| at > w);
        self.mark(at, id, further);
    }

    /// An item at the mark joins its ids; one `further` (in the direction the mark
    /// moves) becomes the mark; any other leaves it.
    fn mark(&mut self, at: DateTime<Utc>, id: &str, further: bool) {
        if self.at == Some(at) {
            if !self.ids.iter().any(|i| i == id) {
                self.ids.push(id.to_string());
            }
        } else if further {
            self.at = Some(at);
            self.ids = vec![id.to_string()];
        }
    }
}

/// The cursor of a service read newest first. A bare [`Watermark`] (what older versions
/// wrote) reads as one without a gap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewestFirst {
    /// Everything newer than this has been read, except the gap.
    #[serde(flatten)]
    pub read: Watermark,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
    /// Of a source that runs one search per query, the queries `read` and `gap` are
    /// about. A cursor without the list (written before it was kept) is read as about
    /// the queries configured now, so an upgrade does not read everything again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<Vec<String>>,
    /// Queries added after the cursor was made, each on a walk of its own until it can
    /// join `queries`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<AddedQuery>,
}

/// A query added to a source that already has a cursor, with the cursor of its own walk
/// (a first run's within the look-back, then newer; a gap when the page limit cut it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AddedQuery {
    pub query: String,
    #[serde(flatten)]
    pub read: Watermark,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
}

/// What a walk newest first read before it stopped short of the watermark: everything
/// from `newest` down to `below`. The items between `below` and the watermark are still
/// to be read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// The oldest item read (its time and the ids at exactly that time).
    pub below: Watermark,
    /// The newest item read: the watermark once the gap is read.
    pub newest: Watermark,
    /// Where the service lets the walk go on (a page number or page token), when it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// Of a source that runs one search per keyword, the queries that were not cut: they
    /// read everything down to the watermark, so the runs reading the gap do not search
    /// them again (once the gap is read, every query searches above the new watermark).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub complete: Vec<String>,
}

impl Gap {
    /// Whether the walk that left this gap read the item already.
    fn has_read(&self, at: DateTime<Utc>, id: &str) -> bool {
        let Some(below) = self.below.at else {
            return false;
        };
        let above_bottom = at > below || (at == below && self.below.ids.iter().any(|i| i == id));
        above_bottom && !self.newest.is_new(at, id)
    }
}

/// How a walk through pages sorted newest first ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Walk {
    /// It reached the items read before, or the service's last page.
    Complete,
    /// It stopped before that (page limit, a failing page); `resume` is where the
    /// service lets the next run go on, if it does (else the next run starts at the
    /// newest again and skips what it has read).
    Cut { resume: Option<String> },
}

/// The window one fetch admits: after the previous watermark, or within the first-run
/// look-back when there is none, and not what the walk that left a gap has read already.
/// Tracks the next watermark, and the oldest item read, as items go by.
///
/// A source that runs one search per keyword walks each query through the same window
/// and ends each with [`Window::end_query`]: the gap a cut query leaves reaches down to
/// the oldest item *that query* read, not to the oldest any query read (a quiet keyword
/// reading far back would otherwise move the gap below what a busy one never read).
#[derive(Debug, Clone)]
pub struct Window {
    prev: Option<Watermark>,
    since: DateTime<Utc>,
    next: Watermark,
    gap: Option<Gap>,
    /// The oldest item read by the current query, starting from where the gap left off.
    oldest: Watermark,
    /// The bottom of the gap the queries cut so far leave: the newest of their oldest
    /// items read (unbounded, `at: None`, when one of them read nothing). `None` while no
    /// query was ended as cut.
    cut_bottom: Option<Watermark>,
    /// The queries that read everything down to the watermark: those of the gap, then
    /// the ones ended uncut by this fetch.
    complete: Vec<String>,
    /// Whether the walk starts at the newest item (no gap to read first): when it is not
    /// cut, it has read everything up to the present.
    from_top: bool,
}

impl Window {
    pub fn new(prev: Option<Watermark>, ctx: &FetchContext) -> Self {
        Window::newest_first(
            prev.map(|read| NewestFirst {
                read,
                ..NewestFirst::default()
            }),
            ctx,
        )
    }

    /// The window of a service read newest first, going on with the gap a cut walk left.
    pub fn newest_first(cursor: Option<NewestFirst>, ctx: &FetchContext) -> Self {
        let (prev, gap) = match cursor {
            Some(c) => (Some(c.read), c.gap),
            None => (None, None),
        };
        let next = match &gap {
            Some(g) => g.newest.clone(),
            None => prev.clone().unwrap_or_default(),
        };
        let oldest = gap.as_ref().map(|g| g.below.clone()).unwrap_or_default();
        let complete = gap.as_ref().map(|g| g.complete.clone()).unwrap_or_default();
        Window {
            from_top: gap.is_none(),
            prev,
            since: ctx.first_run_since,
            next,
            gap,
            oldest,
            cut_bottom: None,
            complete,
        }
    }

    /// The oldest time still of interest (for `since` query parameters).
    pub fn lower_bound(&self) -> DateTime<Utc> {
        self.prev.as_ref().and_then(|w| w.at).unwrap_or(self.since)
    }

    /// The newest time still to be read while a gap is open (for `until` query
    /// parameters; inclusive: items at that very time may not all have been read).
    pub fn gap_top(&self) -> Option<DateTime<Utc>> {
        self.gap.as_ref().and_then(|g| g.below.at)
    }

    /// Whether this fetch reads a gap that `query` has nothing in: the walk that left the
    /// gap (or a later run reading it) was not cut in that query, so it read everything
    /// down to the watermark. Searching it again would only spend requests.
    pub fn has_read_query(&self, query: &str) -> bool {
        self.gap.is_some() && self.complete.iter().any(|q| q == query)
    }

    /// Where the cut walk said the service lets this one go on.
    pub fn resume(&self) -> Option<&str> {
        self.gap.as_ref().and_then(|g| g.resume.as_deref())
    }

    /// Whether an item belongs in this fetch. Call [`Window::saw`] for every item read,
    /// admitted or not, so filtered items do not come back next time.
    pub fn admits(&self, at: DateTime<Utc>, id: &str) -> bool {
        let after_prev = match &self.prev {
            Some(w) if w.at.is_some() => w.is_new(at, id),
            _ => at >= self.since,
        };
        after_prev && !self.gap.as_ref().is_some_and(|g| g.has_read(at, id))
    }

    /// Whether items this old end the walk back through pages sorted newest first.
    pub fn is_behind(&self, at: DateTime<Utc>) -> bool {
        at < self.lower_bound()
    }

    pub fn saw(&mut self, at: DateTime<Utc>, id: &str) {
        self.next.advance(at, id);
        self.oldest.advance_back(at, id);
    }

    /// Moves the walk over an item that cannot be kept (malformed) but whose place in
    /// the order is known, as [`Window::saw`] does: a cut page holding nothing else still
    /// moves the gap on, instead of the next run stopping at the same page again. Returns
    /// whether the item is in this fetch's window, i.e. whether to count it as skipped
    /// (one the gap's walk already passed was counted by that run).
    pub fn passed_unreadable(&mut self, at: DateTime<Utc>, id: &str) -> bool {
        let in_window = self.admits(at, id);
        self.saw(at, id);
        in_window
    }

    pub fn watermark(&self) -> &Watermark {
        &self.next
    }

    /// The oldest item read so far by the current query, this run or by the walk that
    /// left the gap.
    pub fn oldest(&self) -> &Watermark {
        &self.oldest
    }

    /// Ends one query of several and starts the next from the top of the gap again. A
    /// query `cut` before reaching the watermark bounds the gap by the oldest item it
    /// read; one that reached the watermark (or the service's last page) read everything
    /// down to it, does not lower the gap and is not searched again while the gap is
    /// read (see [`Window::has_read_query`]).
    pub fn end_query(&mut self, query: &str, cut: bool) {
        let start = self
            .gap
            .as_ref()
            .map(|g| g.below.clone())
            .unwrap_or_default();
        let oldest = std::mem::replace(&mut self.oldest, start);
        if cut {
            self.cut_bottom = Some(match self.cut_bottom.take() {
                None => oldest,
                Some(bottom) => newer_bottom(bottom, oldest),
            });
        } else if !self.complete.iter().any(|q| q == query) {
            self.complete.push(query.to_string());
        }
    }

    /// Whether a query ended by [`Window::end_query`] was cut.
    pub fn was_cut(&self) -> bool {
        self.cut_bottom.is_some()
    }

    /// Whether this walk has read everything up to the present: it started at the newest
    /// item (no gap first) and no query was cut.
    fn read_to_now(&self) -> bool {
        self.from_top && !self.was_cut()
    }

    /// The cursor to save after a walk newest first: the new watermark when the walk is
    /// complete; else the old watermark and the gap still to read, down to the oldest
    /// item read by the queries that were cut (by the only query, for a source that
    /// does not call [`Window::end_query`]).
    pub fn finish(self, walk: Walk) -> NewestFirst {
        match walk {
            Walk::Complete => NewestFirst {
                read: self.next,
                ..NewestFirst::default()
            },
            Walk::Cut { resume } => NewestFirst {
                read: self.prev.unwrap_or_default(),
                gap: Some(Gap {
                    below: self.cut_bottom.unwrap_or(self.oldest),
                    newest: self.next,
                    resume,
                    complete: self.complete,
                }),
                ..NewestFirst::default()
            },
        }
    }
}

/// The windows of a source that runs one search per query: the cursor's own for the
/// queries it is about, and one per query added since, which starts as a first run does
/// (within the look-back, bounded by the page limit, leaving a gap when cut) and so
/// reads the mentions of a new keyword published before it was added.
///
/// An added query joins the others once its walk and theirs have both read everything
/// up to the present in the same fetch (neither read a gap first nor was cut): from then
/// on everything newer than the later of the two watermarks has been read for all of
/// them. Queries no longer configured are dropped, so a removed keyword leaves nothing.
#[derive(Debug)]
pub struct Searches {
    /// The configured queries the cursor's watermark and gap are about.
    covered: Vec<String>,
    window: Window,
    added: Vec<(String, Window)>,
}

impl Searches {
    pub fn new(cursor: Option<NewestFirst>, queries: &[String], ctx: &FetchContext) -> Self {
        let Some(mut cursor) = cursor else {
            return Searches {
                covered: queries.to_vec(),
                window: Window::newest_first(None, ctx),
                added: Vec::new(),
            };
        };
        let known = cursor.queries.take().unwrap_or_else(|| queries.to_vec());
        let mut walks = std::mem::take(&mut cursor.added);
        let (covered, new): (Vec<String>, Vec<String>) =
            queries.iter().cloned().partition(|q| known.contains(q));
        let added = new
            .into_iter()
            .map(|q| {
                let own = walks
                    .iter()
                    .position(|a| a.query == q)
                    .map(|i| walks.swap_remove(i))
                    .map(|a| NewestFirst {
                        read: a.read,
                        gap: a.gap,
                        ..NewestFirst::default()
                    });
                let window = Window::newest_first(own, ctx);
                (q, window)
            })
            .collect();
        Searches {
            covered,
            window: Window::newest_first(Some(cursor), ctx),
            added,
        }
    }

    /// The window `query` is searched in; end its walk with [`Window::end_query`].
    pub fn window(&mut self, query: &str) -> &mut Window {
        match self.added.iter_mut().find(|(q, _)| q == query) {
            Some((_, window)) => window,
            None => &mut self.window,
        }
    }

    /// The cursor to save: each window's walk is cut when one of its queries was.
    pub fn finish(self) -> NewestFirst {
        let walk = |w: &Window| {
            if w.was_cut() {
                Walk::Cut { resume: None }
            } else {
                Walk::Complete
            }
        };
        let joinable = self.window.read_to_now();
        let mut next = {
            let walk = walk(&self.window);
            self.window.finish(walk)
        };
        let mut covered = self.covered;
        let mut added = Vec::new();
        for (query, window) in self.added {
            let join = joinable && window.read_to_now();
            let own = {
                let walk = walk(&window);
                window.finish(walk)
            };
            if join {
                if let Some(at) = own.read.at {
                    for id in &own.read.ids {
                        next.read.advance(at, id);
                    }
                }
                covered.push(query);
            } else {
                added.push(AddedQuery {
                    query,
                    read: own.read,
                    gap: own.gap,
                });
            }
        }
        if let Some(gap) = next.gap.as_mut() {
            gap.complete.retain(|q| covered.contains(q));
        }
        next.queries = Some(covered);
        next.added = added;
        next
    }
}

/// Of the oldest items read by two cut queries, the newer: below it one of them has not
/// read. An unbounded bottom (a cut query that read nothing) stays unbounded. At the
/// same time, the ids read by either are read.
fn newer_bottom(a: Watermark, b: Watermark) -> Watermark {
    match (a.at, b.at) {
        (None, _) | (_, None) => Watermark::default(),
        (Some(x), Some(y)) if x > y => a,
        (Some(x), Some(y)) if x < y => b,
        _ => {
            let mut merged = a;
            for id in b.ids {
                if !merged.ids.contains(&id) {
                    merged.ids.push(id);
                }
            }
            merged
        }
    }
}

/// The note for a walk cut by `max_pages`: nothing is lost, but the user should know why
/// items arrive over several runs (and may raise the limit).
pub fn page_limit_note(max_pages: u32, what: &str) -> String {
    format!(
        "stopped at the page limit (max_pages = {max_pages}) before reaching the {what} read \
         before; the next run goes on from the oldest one read"
    )
}

/// Joins the notes of one fetch.
pub fn join_notes(notes: impl IntoIterator<Item = Option<String>>) -> Option<String> {
    let notes: Vec<String> = notes.into_iter().flatten().collect();
    (!notes.is_empty()).then(|| notes.join("; "))
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

    #[test]
    fn a_bare_watermark_reads_as_a_cursor_without_a_gap() {
        let old = r#"{"at":"2026-11-02T21:09:40Z","ids":["41248811"]}"#;
        let c: NewestFirst = serde_json::from_str(old).unwrap();
        assert_eq!(c.gap, None);
        assert_eq!(c.read.ids, vec!["41248811"]);
        assert_eq!(serde_json::to_string(&c).unwrap(), old);
    }

    #[test]
    fn the_gap_of_several_queries_ends_at_the_newest_bottom_of_those_cut() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let ctx = FetchContext {
            http: reqwest::Client::new(),
            keywords: Vec::new(),
            languages: Vec::new(),
            first_run_since: t("2026-01-01T00:00:00Z"),
            now: t("2026-11-05T00:00:00Z"),
        };
        let mut window = Window::newest_first(None, &ctx);
        // A busy query cut after reading down to 17:00; another cut at 12:00 with two
        // items at that second; a quiet one reading back to 2 November, complete.
        window.saw(t("2026-11-04T18:00:00Z"), "busy-1");
        window.saw(t("2026-11-04T17:00:00Z"), "busy-2");
        window.end_query("busy", true);
        window.saw(t("2026-11-04T12:00:00Z"), "other-1");
        window.end_query("other", true);
        window.saw(t("2026-11-02T09:00:00Z"), "quiet-1");
        window.end_query("quiet", false);
        assert!(
            !window.has_read_query("quiet"),
            "no gap is read by this fetch"
        );
        let cursor = window.finish(Walk::Cut { resume: None });
        let gap = cursor.gap.clone().unwrap();
        assert_eq!(gap.below.at, Some(t("2026-11-04T17:00:00Z")));
        assert_eq!(gap.below.ids, vec!["busy-2"]);
        assert_eq!(gap.newest.at, Some(t("2026-11-04T18:00:00Z")));
        assert_eq!(gap.complete, vec!["quiet"]);

        // The next fetch reads the gap in the cut queries only; "other" reads down to
        // the watermark this time and is not searched again either while "busy" is cut.
        let mut window = Window::newest_first(Some(cursor), &ctx);
        assert!(window.has_read_query("quiet"));
        assert!(!window.has_read_query("busy") && !window.has_read_query("other"));
        window.saw(t("2026-11-04T16:00:00Z"), "busy-3");
        window.end_query("busy", true);
        window.end_query("other", false);
        let gap = window.finish(Walk::Cut { resume: None }).gap.unwrap();
        assert_eq!(gap.complete, vec!["quiet", "other"]);
        assert_eq!(gap.below.at, Some(t("2026-11-04T16:00:00Z")));

        let at = t("2026-11-04T17:00:00Z");
        assert_eq!(
            newer_bottom(Watermark::default(), Watermark::default()),
            Watermark::default()
        );
        let (mut a, mut b) = (Watermark::default(), Watermark::default());
        a.advance(at, "a");
        b.advance(at, "b");
        assert_eq!(newer_bottom(a.clone(), b).ids, vec!["a", "b"]);
        assert_eq!(
            newer_bottom(a, Watermark::default()),
            Watermark::default(),
            "a cut query that read nothing leaves the gap open above"
        );
    }

    #[test]
    fn an_added_query_joins_only_when_both_walks_read_up_to_the_present() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let ctx = FetchContext {
            http: reqwest::Client::new(),
            keywords: Vec::new(),
            languages: Vec::new(),
            first_run_since: t("2026-10-29T00:00:00Z"),
            now: t("2026-11-05T00:00:00Z"),
        };
        let queries = vec!["old".to_string(), "new".to_string()];
        // The old query's walk left a gap below 4 November 12:00, newest read at 18:00.
        let (mut read, mut below, mut newest) = Default::default();
        Watermark::advance(&mut read, t("2026-11-02T00:00:00Z"), "r");
        Watermark::advance(&mut below, t("2026-11-04T12:00:00Z"), "b");
        Watermark::advance(&mut newest, t("2026-11-04T18:00:00Z"), "n");
        let cursor = NewestFirst {
            read,
            gap: Some(Gap {
                below,
                newest,
                ..Gap::default()
            }),
            queries: Some(vec!["old".into(), "gone".into()]),
            ..NewestFirst::default()
        };
        let mut searches = Searches::new(Some(cursor), &queries, &ctx);
        let new = searches.window("new");
        assert_eq!(
            new.lower_bound(),
            ctx.first_run_since,
            "a first run's look-back"
        );
        assert_eq!(new.gap_top(), None);
        new.saw(t("2026-11-04T20:00:00Z"), "new-1");
        new.saw(t("2026-11-01T00:00:00Z"), "new-2");
        new.end_query("new", false);
        let old = searches.window("old");
        assert_eq!(old.gap_top(), Some(t("2026-11-04T12:00:00Z")));
        old.end_query("old", false);
        // The old query read its gap, not what came after 18:00: the new one's watermark
        // at 20:00 is not yet one for both.
        let next = searches.finish();
        assert_eq!(next.gap, None);
        assert_eq!(next.read.at, Some(t("2026-11-04T18:00:00Z")));
        assert_eq!(
            next.queries,
            Some(vec!["old".to_string()]),
            "\"gone\" is dropped"
        );
        assert_eq!(next.added.len(), 1);
        assert_eq!(next.added[0].read.at, Some(t("2026-11-04T20:00:00Z")));

        // Next, both search from their watermarks up to the present, and join.
        let mut searches = Searches::new(Some(next), &queries, &ctx);
        assert_eq!(
            searches.window("new").lower_bound(),
            t("2026-11-04T20:00:00Z")
        );
        searches.window("new").end_query("new", false);
        searches.window("old").end_query("old", false);
        let next = searches.finish();
        assert_eq!(next.read.at, Some(t("2026-11-04T20:00:00Z")));
        assert_eq!(next.read.ids, vec!["new-1"]);
        assert_eq!(next.queries, Some(queries));
        assert!(next.added.is_empty());
    }

    #[test]
    fn a_gap_admits_only_what_its_walk_did_not_read() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut below = Watermark::default();
        below.advance(t("2026-11-04T12:00:00Z"), "b");
        let mut newest = Watermark::default();
        newest.advance(t("2026-11-04T18:00:00Z"), "n");
        let mut read = Watermark::default();
        read.advance(t("2026-11-02T00:00:00Z"), "old");
        let gap = Gap {
            below,
            newest,
            resume: None,
            complete: Vec::new(),
        };
        let ctx = FetchContext {
            http: reqwest::Client::new(),
            keywords: Vec::new(),
            languages: Vec::new(),
            first_run_since: t("2026-01-01T00:00:00Z"),
            now: t("2026-11-05T00:00:00Z"),
        };
        let window = Window::newest_first(
            Some(NewestFirst {
                read,
                gap: Some(gap),
                ..NewestFirst::default()
            }),
            &ctx,
        );
        assert_eq!(window.gap_top(), Some(t("2026-11-04T12:00:00Z")));
        assert!(window.admits(t("2026-11-03T00:00:00Z"), "in-gap"));
        assert!(window.admits(t("2026-11-04T12:00:00Z"), "same-second-unread"));
        assert!(!window.admits(t("2026-11-04T12:00:00Z"), "b"));
        assert!(!window.admits(t("2026-11-04T15:00:00Z"), "read-by-the-walk"));
        assert!(window.admits(t("2026-11-04T19:00:00Z"), "newer-than-the-walk"));
        assert!(!window.admits(t("2026-11-02T00:00:00Z"), "old"));
        let next = window.finish(Walk::Complete);
        assert_eq!(next.read.at, Some(t("2026-11-04T18:00:00Z")));
        assert_eq!(next.gap, None);
    }
}
