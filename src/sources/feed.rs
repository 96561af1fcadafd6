//! Any RSS 2.0, RSS 1.0, Atom or JSON Feed: Google Alerts, Google News searches, Reddit
//! search `.rss`, YouTube channel feeds, a company's own review feed.
//!
//! Feeds are a sliding window of recent items in no guaranteed order, so every item is
//! checked against the watermark rather than stopping at the first old one. A feed is not
//! a search: the watch's keywords filter its items (unless `filter_keywords = false`,
//! for feeds that are about the product by construction). Conditional requests make an
//! unchanged feed cost one 304.

use std::collections::HashSet;

use async_trait::async_trait;
use feed_rs::model::{Entry, Link};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::cursor::{self, Skips, Watermark, Window};
use super::http::{shown, Http, HttpOptions, Validators};
use super::text::{hash_id, html_to_text, language_allowed, matches_keywords};
use super::{Connector, FetchContext, FetchError, Fetched, Params};
use crate::domain::{FetchErrorKind, Mention};

/// Undated items remembered so they are not re-emitted; feeds rarely hold more.
const MAX_UNDATED: usize = 500;

#[derive(Debug, Clone)]
pub struct Feed {
    url: Url,
    filter_keywords: bool,
    http: HttpOptions,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FeedCursor {
    #[serde(flatten)]
    newest: Watermark,
    /// Ids of items without a date that were already emitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    undated: Vec<String>,
    #[serde(flatten)]
    validators: Validators,
}

impl Feed {
    pub fn from_params(p: &Params) -> Result<Self, String> {
        p.only(&["url", "filter_keywords"])?;
        Ok(Feed {
            url: p.required_url("url")?,
            filter_keywords: p.bool_or("filter_keywords", true)?,
            http: HttpOptions::from_params(p)?,
        })
    }
}

#[async_trait]
impl Connector for Feed {
    fn kind(&self) -> &'static str {
        "feed"
    }

    async fn fetch(&self, ctx: &FetchContext, cursor: Option<&str>) -> Result<Fetched, FetchError> {
        let prev: Option<FeedCursor> = cursor::load("feed", cursor);
        let validators = prev
            .as_ref()
            .map(|c| c.validators.clone())
            .unwrap_or_default();
        let http = Http::new(&ctx.http, &self.http);
        let Some(resp) = http.get_conditional(&self.url, &validators).await? else {
            return Ok(Fetched::default()); // 304: nothing new, cursor unchanged
        };
        let parsed = feed_rs::parser::Builder::new()
            .base_uri(Some(self.url.as_str()))
            .id_generator(stable_id)
            .build()
            .parse(resp.body.as_slice())
            .map_err(|e| {
                FetchError::new(
                    FetchErrorKind::Malformed,
                    format!(
                        "{} is not a readable RSS or Atom feed: {e}",
                        shown(&self.url)
                    ),
                )
            })?;

        let prev_undated: HashSet<String> = prev
            .as_ref()
            .map(|c| c.undated.iter().cloned().collect())
            .unwrap_or_default();
        let first_run = prev.is_none();
        let mut window = Window::new(prev.map(|c| c.newest), ctx);
        let mut undated = Vec::new();
        let mut skips = Skips::default();
        let mut mentions = Vec::new();
        let feed_title = parsed.title.as_ref().map(|t| html_to_text(&t.content));
        let keywords: &[String] = if self.filter_keywords {
            &ctx.keywords
        } else {
            &[]
        };

        for (i, entry) in parsed.entries.iter().enumerate() {
            let Some(mut m) = mention(entry, ctx) else {
                skips.add(format!("item {} ({}): no title or text", i + 1, entry.id));
                continue;
            };
            let new = match entry.published.or(entry.updated) {
                Some(at) => {
                    let new = window.admits(at, &m.external_id);
                    window.saw(at, &m.external_id);
                    new
                }
                None => {
                    if undated.len() < MAX_UNDATED {
                        undated.push(m.external_id.clone());
                    }
                    first_run || !prev_undated.contains(&m.external_id)
                }
            };
            let lang = entry.language.as_deref().or(parsed.language.as_deref());
            if !new
                || !language_allowed(&ctx.languages, lang)
                || !matches_keywords(keywords, &[m.title.as_deref().unwrap_or(""), &m.text])
            {
                continue;
            }
            m.language = lang.map(str::to_string);
            if let Some(extra) = m.extra.as_mut() {
                extra["feed"] = json!(feed_title);
            }
            mentions.push(m);
        }

        let next = FeedCursor {
            newest: window.watermark().clone(),
            undated,
            validators: resp.validators(),
        };
        Ok(Fetched {
            mentions,
            cursor: Some(cursor::save(&next)?),
            skipped: skips.count,
            note: skips.note(),
            aggregate: None,
            partial: None,
        })
    }
}

/// An id for items that carry none, from their link and title, so the same item gets
/// the same id on every fetch (the parser's default is a random UUID).
fn stable_id(links: &[Link], title: &Option<feed_rs::model::Text>, _base: Option<&str>) -> String {
    let link = links.first().map(|l| l.href.as_str()).unwrap_or("");
    let title = title.as_ref().map(|t| t.content.as_str()).unwrap_or("");
    format!("h:{}", hash_id(&[link, title]))
}

fn mention(e: &Entry, ctx: &FetchContext) -> Option<Mention> {
    let title = e
        .title
        .as_ref()
        .map(|t| html_to_text(&t.content))
        .filter(|t| !t.is_empty());
    let body = e
        .content
        .as_ref()
        .and_then(|c| c.body.as_deref())
        .or(e.summary.as_ref().map(|s| s.content.as_str()))
        // YouTube puts the video description in media:group.
        .or_else(|| {
            e.media
                .iter()
                .find_map(|m| m.description.as_ref().map(|d| d.content.as_str()))
        })
        .map(html_to_text)
        .filter(|t| !t.is_empty());
    let text = body.or_else(|| title.clone())?;
    let link = e
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .or(e.links.first())
        .map(|l| unwrap_redirect(&l.href));
    let at = e.published.or(e.updated).unwrap_or(ctx.now);
    let categories: Vec<&str> = e.categories.iter().map(|c| c.term.as_str()).collect();
    Some(Mention {
        external_id: e.id.clone(),
        url: link,
        author: e
            .authors
            .first()
            .map(|a| a.name.trim().to_string())
            // The parser names an Atom author with an empty <name> "unknown".
            .filter(|a| !a.is_empty() && a != "unknown"),
        title,
        text,
        rating: None,
        engagement: Default::default(),
        language: None,
        published_at: at,
        owner_reply: None,
        owner_reply_at: None,
        extra: Some(json!({ "categories": categories })),
    })
}

/// Google Alerts and Google News link through `google.com/url?...&url=<real>`; keep the
/// real address so links in emails go where the reader expects and do not track.
pub fn unwrap_redirect(href: &str) -> String {
    let Ok(u) = Url::parse(href) else {
        return href.to_string();
    };
    let is_google = u
        .host_str()
        .is_some_and(|h| h == "google.com" || h.ends_with(".google.com"));
    if is_google && u.path() == "/url" {
        if let Some((_, real)) = u.query_pairs().find(|(k, _)| k == "url" || k == "q") {
            if real.starts_with("http://") || real.starts_with("https://") {
                return real.into_owned();
            }
        }
    }
    href.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_redirects_are_unwrapped() {
        let href = "https://www.google.com/url?rct=j&sa=t&url=https://example.com/a%3Fb%3D1&ct=ga&cd=CAIyGg&usg=AOvVaw";
        assert_eq!(unwrap_redirect(href), "https://example.com/a?b=1");
        assert_eq!(
            unwrap_redirect("https://example.com/url?url=https://x"),
            "https://example.com/url?url=https://x"
        );
    }
}
