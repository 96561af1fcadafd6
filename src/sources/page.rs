//! A web page that shows reviews: a product page, a shop's testimonials, a listing on a
//! review site. Two ways to read it:
//! - schema mode (default): the schema.org `Review` and `AggregateRating` the page
//!   embeds for search engines, in JSON-LD or microdata (see [`super::schema`]);
//! - selector mode, when `review_selector` is set: CSS selectors given by the user for
//!   the review block and, inside it, the text, rating, author, date and title.
//!
//! Either way the page's published aggregate (stars and count) is recorded on every
//! fetch, which is how zmot charts the headline rating a buyer sees over time.
//! This is the connector that reads pages rather than APIs, so it honours robots.txt.
//! Pages are not ordered feeds: the cursor remembers the review ids on the page, and a
//! review is new when its id was not there last time. An id that does not tell the
//! page's reviews apart (the page's own URL, or one several reviews share) is replaced
//! by a hash of the review, so no review is taken for another. A review the
//! last run saw under the id an older version gave it keeps that id (see
//! `legacy_ids_seen_last_run`), so an upgrade stores no review twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use scraper::{ElementRef, Html, Selector};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::cursor::{self, Skips};
use super::http::{shown, Http, HttpOptions, Validators};
use super::schema::{self, parse_number, scale_rating, Found, RawReview};
use super::text::element_text;
use super::{Connector, FetchContext, FetchError, Fetched, Params};
use crate::domain::{FetchErrorKind, Mention};

/// Review ids remembered between fetches; far more than any page shows.
const MAX_SEEN: usize = 2000;

#[derive(Debug, Clone)]
pub struct Page {
    url: Url,
    respect_robots: bool,
    selectors: Option<Selectors>,
    http: HttpOptions,
}

/// Selector mode settings, checked when the source is built.
#[derive(Debug, Clone)]
struct Selectors {
    review: String,
    text: String,
    rating: Option<String>,
    author: Option<String>,
    date: Option<String>,
    title: Option<String>,
    /// The best rating on the page's scale (5 stars, 10 points, 100 %).
    rating_scale: f64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PageCursor {
    seen: Vec<String>,
    /// Reviews stored under the id an older version gave them: their id now -> the id
    /// they are stored under. Written by every version since (empty when none), so a
    /// cursor without it comes from an older version: only then are old ids looked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stored_as: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    validators: Validators,
}

fn selector(s: &str) -> Selector {
    Selector::parse(s).expect("checked when the source was built")
}

impl Page {
    pub fn from_params(p: &Params) -> Result<Self, String> {
        p.only(&[
            "url",
            "respect_robots",
            "review_selector",
            "text_selector",
            "rating_selector",
            "author_selector",
            "date_selector",
            "title_selector",
            "rating_scale",
        ])?;
        let css = |key: &str| -> Result<Option<String>, String> {
            let Some(s) = p.str(key)? else {
                return Ok(None);
            };
            Selector::parse(s)
                .map_err(|e| format!("page source: `{key}` is not a valid CSS selector: {e}"))?;
            Ok(Some(s.to_string()))
        };
        let selectors = match css("review_selector")? {
            None => {
                for key in [
                    "text_selector",
                    "rating_selector",
                    "author_selector",
                    "date_selector",
                    "title_selector",
                ] {
                    if p.str(key)?.is_some() {
                        return Err(format!(
                            "page source: `{key}` needs `review_selector` as well"
                        ));
                    }
                }
                None
            }
            Some(review) => Some(Selectors {
                review,
                text: css("text_selector")?
                    .ok_or("page source needs `text_selector` when `review_selector` is set")?,
                rating: css("rating_selector")?,
                author: css("author_selector")?,
                date: css("date_selector")?,
                title: css("title_selector")?,
                rating_scale: p.u64_in("rating_scale", 5, 1..=100)? as f64,
            }),
        };
        Ok(Page {
            url: p.required_url("url")?,
            respect_robots: p.bool_or("respect_robots", true)?,
            selectors,
            http: HttpOptions::from_params(p)?,
        })
    }

    /// Reads the page. Synchronous: the parsed document is not `Send` and must not be
    /// held across an await.
    fn extract(&self, html: &str) -> Result<Found, FetchError> {
        let doc = Html::parse_document(html);
        let mut found = Found::default();
        match &self.selectors {
            Some(s) => {
                if !s.read(&doc, &mut found) {
                    return Err(FetchError::new(
                        FetchErrorKind::Malformed,
                        format!(
                            "`review_selector` {:?} matched nothing on {}; has the page changed?",
                            s.review,
                            shown(&self.url)
                        ),
                    ));
                }
                let mut embedded = Found::default();
                schema::json_ld(&doc, &mut embedded);
                schema::microdata(&doc, &self.url, &mut embedded);
                found.aggregate = embedded.aggregate;
            }
            None => {
                schema::json_ld(&doc, &mut found);
                // Pages often repeat their JSON-LD as microdata; read it only as a fallback.
                if found.reviews.is_empty() {
                    let mut md = Found::default();
                    schema::microdata(&doc, &self.url, &mut md);
                    found.reviews = md.reviews;
                    found.skipped.extend(md.skipped);
                    found.aggregate = found.aggregate.or(md.aggregate);
                }
                if found.reviews.is_empty() && found.aggregate.is_none() && !found.errors.is_empty()
                {
                    return Err(FetchError::new(
                        FetchErrorKind::Malformed,
                        format!(
                            "{}: no readable reviews ({})",
                            shown(&self.url),
                            found.errors.join("; ")
                        ),
                    ));
                }
            }
        }
        Ok(found)
    }
}

impl Selectors {
    /// Fills `found` from the review blocks; false when the block selector matched nothing.
    fn read(&self, doc: &Html, found: &mut Found) -> bool {
        let blocks: Vec<ElementRef> = doc.select(&selector(&self.review)).collect();
        for block in &blocks {
            let first =
                |sel: &Option<String>| sel.as_ref().and_then(|s| block.select(&selector(s)).next());
            let text = block.select(&selector(&self.text)).next().map(element_text);
            let rating = first(&self.rating).and_then(|el| {
                let stars = element_text(el).chars().filter(|c| *c == '★').count();
                let value = [
                    "content",
                    "data-rating",
                    "data-score",
                    "aria-label",
                    "title",
                    "alt",
                ]
                .iter()
                .find_map(|a| el.attr(a).and_then(parse_number))
                .or_else(|| parse_number(&element_text(el)))
                .or((stars > 0).then_some(stars as f64))?;
                scale_rating(value, Some(self.rating_scale))
            });
            let date = first(&self.date).map(|el| {
                ["datetime", "content", "title"]
                    .iter()
                    .find_map(|a| el.attr(a).map(str::to_string))
                    .unwrap_or_else(|| element_text(el))
            });
            let id = ["data-review-id", "id"]
                .iter()
                .find_map(|a| block.attr(a))
                .map(str::to_string);
            match schema::review(
                id,
                first(&self.author).map(element_text),
                first(&self.title).map(element_text),
                text,
                rating,
                date.as_deref(),
            ) {
                Ok(r) => found.reviews.push(r),
                Err(why) => found.skipped.push(why),
            }
        }
        !blocks.is_empty()
    }
}

#[async_trait]
impl Connector for Page {
    fn kind(&self) -> &'static str {
        "page"
    }

    async fn fetch(&self, ctx: &FetchContext, cursor: Option<&str>) -> Result<Fetched, FetchError> {
        let http = Http::new(&ctx.http, &self.http);
        if self.respect_robots {
            super::robots::check(&http, &self.url).await?;
        }
        let prev: Option<PageCursor> = cursor::load("page", cursor);
        let validators = prev
            .as_ref()
            .map(|c| c.validators.clone())
            .unwrap_or_default();
        let Some(resp) = http.get_conditional(&self.url, &validators).await? else {
            return Ok(Fetched::default()); // 304: the page has not changed
        };
        // Parsing is CPU work on up to `max_body_bytes` of markup: off the async workers,
        // and a parser panic on hostile markup becomes an error instead of a crash.
        let (page, html) = (self.clone(), resp.text());
        let found = tokio::task::spawn_blocking(move || page.extract(&html))
            .await
            .map_err(|e| {
                FetchError::new(
                    FetchErrorKind::Other,
                    format!("{}: parsing failed: {e}", shown(&self.url)),
                )
            })??;

        let first_run = prev.is_none();
        let (prev_seen, stored_as): (HashSet<String>, Option<BTreeMap<String, String>>) = prev
            .map(|c| (c.seen.into_iter().collect(), c.stored_as))
            .unwrap_or_default();
        let from_older_version = !first_run && stored_as.is_none();
        let mut stored_as = stored_as.unwrap_or_default();
        let mut skips = Skips::default();
        for why in &found.skipped {
            skips.add(why.clone());
        }
        let mut reviews = found.reviews;
        self.drop_ids_that_do_not_identify(&mut reviews);
        let mut found_mentions: Vec<(Mention, Option<String>)> = reviews
            .into_iter()
            .map(|r| {
                let legacy_id = r.legacy_id.clone();
                (self.mention(r, ctx), legacy_id)
            })
            .collect();
        if from_older_version {
            stored_as = legacy_ids_seen_last_run(&found_mentions, &prev_seen);
        }
        for (m, _) in found_mentions.iter_mut() {
            if let Some(id) = stored_as.get(&m.external_id) {
                m.external_id = id.clone();
            }
        }
        let mut seen = Vec::new();
        let mut mentions = Vec::new();
        for (m, _) in found_mentions {
            if seen.contains(&m.external_id) {
                continue; // the same review twice on the page (same author, date and text)
            }
            seen.push(m.external_id.clone());
            let new = if first_run {
                m.published_at >= ctx.first_run_since
            } else {
                !prev_seen.contains(&m.external_id)
            };
            if new {
                mentions.push(m);
            }
        }
        seen.truncate(MAX_SEEN);
        let next = PageCursor {
            seen,
            stored_as: Some(stored_as),
            validators: resp.validators(),
        };
        Ok(Fetched {
            mentions,
            cursor: Some(cursor::save(&next)?),
            skipped: skips.count,
            note: skips.note(),
            aggregate: found.aggregate,
            partial: None,
            retry_after: None,
        })
    }
}

/// On the first run after an upgrade: the reviews the last run (an older version) saw
/// under the id that version gave them (see [`RawReview::legacy_id`]), as their id now
/// -> that id, so each is matched to the review stored under it rather than stored again
/// (the store knows a review by its id alone). Kept in the cursor from then on, tied to
/// the review's id now, so no later review can inherit an old id. Only an old id that
/// tells the page's reviews apart is used: one several reviews share ("Permalink") or
/// that another review now has as its id would merge them.
fn legacy_ids_seen_last_run(
    found: &[(Mention, Option<String>)],
    prev_seen: &HashSet<String>,
) -> BTreeMap<String, String> {
    let mut legacy_uses: HashMap<&str, usize> = HashMap::new();
    for id in found.iter().filter_map(|(_, legacy)| legacy.as_deref()) {
        *legacy_uses.entry(id).or_default() += 1;
    }
    let current: HashSet<&str> = found.iter().map(|(m, _)| m.external_id.as_str()).collect();
    found
        .iter()
        .filter_map(|(m, legacy)| {
            let legacy = legacy.as_deref()?;
            (legacy != m.external_id
                && prev_seen.contains(legacy)
                && legacy_uses.get(legacy) == Some(&1)
                && !current.contains(legacy))
            .then(|| (m.external_id.clone(), legacy.to_string()))
        })
        .collect()
}

impl Page {
    /// Clears the ids that cannot tell one review from another, so those reviews fall
    /// back to the hashed id: the page's own URL (a "link to this review" that links to
    /// the page) and any id two or more reviews on the page share (a site template
    /// giving each review the same anchor). Keeping the first and dropping the rest as
    /// repeats would lose those reviews for good.
    fn drop_ids_that_do_not_identify(&self, reviews: &mut [RawReview]) {
        let mut uses: HashMap<String, usize> = HashMap::new();
        for id in reviews.iter().filter_map(|r| r.id.clone()) {
            *uses.entry(id).or_default() += 1;
        }
        for r in reviews.iter_mut() {
            let Some(id) = r.id.as_deref() else { continue };
            let is_the_page = self.url.join(id).is_ok_and(|u| u == self.url);
            if is_the_page || uses.get(id).is_some_and(|n| *n > 1) {
                // Versions before this one stored the review under that id.
                if r.legacy_id.is_none() {
                    r.legacy_id = r.id.clone();
                }
                r.id = None;
            }
        }
    }

    fn mention(&self, r: RawReview, ctx: &FetchContext) -> Mention {
        let external_id = r.id.clone().unwrap_or_else(|| r.hashed_id());
        let url = match &r.id {
            Some(id) if id.starts_with("http://") || id.starts_with("https://") => id.clone(),
            Some(id) if id.starts_with('#') => format!("{}{id}", self.url),
            _ => self.url.to_string(),
        };
        Mention {
            external_id,
            url: Some(url),
            author: r.author,
            title: r.title,
            text: r.text,
            rating: r.rating,
            engagement: Default::default(),
            language: None,
            published_at: r.date.unwrap_or(ctx.now),
            owner_reply: None,
            owner_reply_at: None,
            extra: Some(json!({ "page": self.url.as_str(), "dated": r.date.is_some() })),
        }
    }
}
