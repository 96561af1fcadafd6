//! schema.org `Review` and `AggregateRating` as web pages embed them, for the `page`
//! connector: JSON-LD (`<script type="application/ld+json">`, with `@graph`, arrays,
//! reviews nested under a `Product` or `LocalBusiness`, numbers written as strings) and
//! microdata (`itemscope` / `itemtype` / `itemprop`).
//!
//! Real pages are sloppy, so everything is optional until a review is assembled: a
//! review needs only a text (or a title); a rating on another scale is brought to 1-5.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use scraper::{ElementRef, Html, Selector};
use serde_json::{Map, Value};
use url::Url;

use super::text::{element_text, hash_id, html_to_text};
use crate::domain::AggregateRating;

/// JSON-LD deeper than this is not a review page; stops hostile nesting early.
const MAX_DEPTH: usize = 48;

/// A review as found on a page, before it becomes a mention.
#[derive(Debug, Clone, PartialEq)]
pub struct RawReview {
    pub id: Option<String>,
    pub author: Option<String>,
    pub title: Option<String>,
    pub text: String,
    pub rating: Option<u8>,
    pub date: Option<DateTime<Utc>>,
    /// For microdata, the external id versions before URL-valued properties gave this
    /// review (the raw `itemid`, a `url` property's text, or the hash of what they read
    /// as its author, date and text): the reviews they stored carry it.
    pub legacy_id: Option<String>,
}

impl RawReview {
    /// The external id of a review without an id of its own: a hash of its author, date
    /// and text.
    pub fn hashed_id(&self) -> String {
        let date = self.date.map(|d| d.to_rfc3339()).unwrap_or_default();
        format!(
            "h:{}",
            hash_id(&[self.author.as_deref().unwrap_or(""), &date, &self.text])
        )
    }
}

/// What one page holds.
#[derive(Debug, Default)]
pub struct Found {
    pub reviews: Vec<RawReview>,
    pub aggregate: Option<AggregateRating>,
    /// Reviews that could not be assembled, with why.
    pub skipped: Vec<String>,
    /// JSON-LD blocks that could not be parsed.
    pub errors: Vec<String>,
}

/// Assembles a review from its parts; `Err` says what is missing.
pub fn review(
    id: Option<String>,
    author: Option<String>,
    title: Option<String>,
    text: Option<String>,
    rating: Option<u8>,
    date: Option<&str>,
) -> Result<RawReview, String> {
    let clean = |s: Option<String>| s.map(|s| html_to_text(&s)).filter(|s| !s.is_empty());
    let title = clean(title);
    let text = clean(text)
        .or_else(|| title.clone())
        .ok_or("review without text")?;
    Ok(RawReview {
        id: id.filter(|i| !i.trim().is_empty()),
        author: clean(author),
        title,
        text,
        rating,
        date: date.and_then(parse_date),
        legacy_id: None,
    })
}

/// Reads every JSON-LD block of the page.
pub fn json_ld(doc: &Html, found: &mut Found) {
    let sel = Selector::parse(r#"script[type="application/ld+json"]"#).expect("constant selector");
    for (i, script) in doc.select(&sel).enumerate() {
        let raw: String = script.text().collect();
        let raw = raw
            .trim()
            .trim_start_matches("<![CDATA[")
            .trim_end_matches("]]>");
        match serde_json::from_str::<Value>(raw) {
            Ok(v) => walk(&v, None, 0, found),
            Err(e) => found.errors.push(format!("JSON-LD block {}: {e}", i + 1)),
        }
    }
}

/// The local type names of `@type` ("Review", "schema:Review", "https://schema.org/Review").
fn types(v: Option<&Value>) -> Vec<&str> {
    fn local(s: &str) -> &str {
        s.rsplit(['/', ':', '#']).next().unwrap_or(s)
    }
    match v {
        Some(Value::String(s)) => vec![local(s)],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(local).collect(),
        _ => Vec::new(),
    }
}

fn walk(v: &Value, hint: Option<&str>, depth: usize, found: &mut Found) {
    if depth > MAX_DEPTH {
        found.errors.push("JSON-LD nested too deeply".into());
        return;
    }
    match v {
        Value::Array(a) => a.iter().for_each(|x| walk(x, hint, depth + 1, found)),
        Value::Object(o) => {
            let t = types(o.get("@type"));
            let is = |name: &str| t.contains(&name) || (t.is_empty() && hint == Some(name));
            if is("Review") {
                match ld_review(o) {
                    Ok(r) => found.reviews.push(r),
                    Err(why) => found.skipped.push(why),
                }
            }
            if is("AggregateRating") && found.aggregate.is_none() {
                found.aggregate = ld_aggregate(o);
            }
            for (k, val) in o {
                // A review's own rating is a `Rating`, not something to look into.
                let hint = match k.as_str() {
                    "review" | "reviews" => Some("Review"),
                    "aggregateRating" => Some("AggregateRating"),
                    "@context" | "reviewRating" => continue,
                    _ => None,
                };
                walk(val, hint, depth + 1, found);
            }
        }
        _ => {}
    }
}

/// A number written as a number or a string ("4.5", "4,5", "12,480").
pub fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number(s),
        _ => None,
    }
}

/// The first number in a text: "4.5", "4,5 von 5", "Rated 4 out of 5".
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let tail = &s[start..];
    let end = tail
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(tail.len());
    let n = tail[..end].trim_end_matches(['.', ',']);
    // One comma and no dot is a decimal comma; otherwise commas group thousands.
    let n = if n.matches(',').count() == 1 && !n.contains('.') && n.len() - n.find(',')? <= 3 {
        n.replace(',', ".")
    } else {
        n.replace(',', "")
    };
    n.parse().ok()
}

/// A rating on a `worst`..`best` scale, brought to whole stars 1-5.
pub fn scale_rating(value: f64, best: Option<f64>) -> Option<u8> {
    let best = best.filter(|b| *b > 0.0).unwrap_or(5.0);
    if !value.is_finite() || value < 0.0 || value > best {
        return None;
    }
    Some(((value / best * 5.0).round() as u8).clamp(1, 5))
}

fn text_of(o: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| o.get(*k).and_then(Value::as_str))
        .map(str::to_string)
}

/// An author as a string, a `Person`, or a list of them.
fn ld_name(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => text_of(o, &["name", "alternateName"]),
        Value::Array(a) => a.first().and_then(|x| ld_name(Some(x))),
        _ => None,
    }
}

fn ld_review(o: &Map<String, Value>) -> Result<RawReview, String> {
    let rating = o.get("reviewRating").and_then(|r| {
        let value = number(r.get("ratingValue")).or(number(Some(r)))?;
        scale_rating(value, number(r.get("bestRating")))
    });
    review(
        text_of(o, &["@id", "url"]),
        ld_name(o.get("author")),
        text_of(o, &["name", "headline"]),
        text_of(o, &["reviewBody", "description", "text"]),
        rating,
        text_of(o, &["datePublished", "dateCreated", "dateModified"]).as_deref(),
    )
}

fn ld_aggregate(o: &Map<String, Value>) -> Option<AggregateRating> {
    aggregate(
        number(o.get("ratingValue"))?,
        number(o.get("bestRating")),
        number(o.get("ratingCount")).or(number(o.get("reviewCount"))),
    )
}

/// An aggregate on a 5-point scale; the count is ratings when given, else reviews.
fn aggregate(value: f64, best: Option<f64>, count: Option<f64>) -> Option<AggregateRating> {
    let best = best.filter(|b| *b > 0.0).unwrap_or(5.0);
    if !(0.0..=best).contains(&value) {
        return None;
    }
    Some(AggregateRating {
        rating: (value / best * 5.0 * 100.0).round() / 100.0,
        count: count.map(|c| c as i64),
    })
}

/// Reads microdata items of type Review and AggregateRating; `base` is the page's URL,
/// against which relative URLs in it resolve.
pub fn microdata(doc: &Html, base: &Url, found: &mut Found) {
    let sel = Selector::parse("[itemscope]").expect("constant selector");
    for el in doc.select(&sel) {
        let local = |t: &'_ str| t.rsplit(['/', ':', '#']).next().unwrap_or("").to_string();
        let t: Vec<String> = el
            .attr("itemtype")
            .map(|t| t.split_whitespace().map(local).collect())
            .unwrap_or_default();
        let hint = el.attr("itemprop");
        // The declared type decides; an untyped item is read by the property it fills.
        let is = |name: &str, prop: &str| match t.is_empty() {
            false => t.iter().any(|x| x == name),
            true => hint.is_some_and(|h| h.split_whitespace().any(|p| p == prop)),
        };
        if is("Review", "review") {
            match md_review(el, base) {
                Ok(r) => found.reviews.push(r),
                Err(why) => found.skipped.push(why),
            }
        } else if is("AggregateRating", "aggregateRating") && found.aggregate.is_none() {
            let p = props(el, base);
            found.aggregate = aggregate(
                p.num("ratingValue").unwrap_or(f64::NAN),
                p.num("bestRating"),
                p.num("ratingCount").or(p.num("reviewCount")),
            );
        }
    }
}

/// The properties of one microdata item (not of the items nested in it).
struct Props<'a, 'u> {
    named: Vec<(String, ElementRef<'a>)>,
    base: &'u Url,
}

fn props<'a, 'u>(scope: ElementRef<'a>, base: &'u Url) -> Props<'a, 'u> {
    fn visit<'a>(el: ElementRef<'a>, out: &mut Vec<(String, ElementRef<'a>)>, depth: usize) {
        if depth > 128 {
            return;
        }
        for child in el.child_elements() {
            if let Some(names) = child.attr("itemprop") {
                out.extend(names.split_whitespace().map(|n| (n.to_string(), child)));
            }
            if child.attr("itemscope").is_none() {
                visit(child, out, depth + 1);
            }
        }
    }
    let mut out = Vec::new();
    visit(scope, &mut out, 0);
    Props { named: out, base }
}

impl<'a> Props<'a, '_> {
    fn el(&self, name: &str) -> Option<ElementRef<'a>> {
        self.named.iter().find(|(n, _)| n == name).map(|(_, e)| *e)
    }

    /// A property's value as the microdata spec reads it from its element; for a nested
    /// item (an author `Person`), its `name`.
    fn get(&self, name: &str) -> Option<String> {
        let el = self.el(name)?;
        if el.attr("itemscope").is_some() {
            return props(el, self.base).get("name");
        }
        property_value(el, self.base).filter(|s| !s.trim().is_empty())
    }

    /// A property meant as words (an author's name, a title, the review's text): marked
    /// on a link, the spec's value is the link's URL, but the page means its text
    /// (`<a itemprop="author" href="/u/7">Jane D.</a>` is by Jane D.).
    fn text(&self, name: &str) -> Option<String> {
        let el = self.el(name)?;
        if el.attr("itemscope").is_some() {
            // A nested item (an author `Person`): its name, read as words too.
            return props(el, self.base).text("name");
        }
        if matches!(el.value().name(), "a" | "area") {
            let text = element_text(el);
            if !text.trim().is_empty() {
                return Some(text);
            }
        }
        self.get(name)
    }

    fn num(&self, name: &str) -> Option<f64> {
        parse_number(&self.get(name)?)
    }

    /// A property's value as versions before URL-valued properties read it: `content`,
    /// `datetime`, else the element's text (a link's text, nothing for `<link>`).
    fn legacy_get(&self, name: &str) -> Option<String> {
        let el = self.el(name)?;
        if el.attr("itemscope").is_some() {
            return props(el, self.base).legacy_get("name");
        }
        el.attr("content")
            .or(el.attr("datetime"))
            .map(str::to_string)
            .or_else(|| Some(element_text(el)))
            .filter(|s| !s.trim().is_empty())
    }
}

/// The value of a microdata property (HTML "microdata" § property values): an element
/// that links or embeds gives its URL, resolved against the page (`<a itemprop="url"
/// href="/r/1">Permalink</a>` is "https://site/r/1", not "Permalink"); `meta` its
/// `content`; `time` its `datetime`; `data` and `meter` their `value`; any other
/// element its text. `content` and `datetime` on other elements are honoured too:
/// pages put them on `span`s for search engines, which read them there.
fn property_value(el: ElementRef<'_>, base: &Url) -> Option<String> {
    let url_attr = match el.value().name() {
        "a" | "area" | "link" => Some("href"),
        "audio" | "embed" | "iframe" | "img" | "source" | "track" | "video" => Some("src"),
        "object" => Some("data"),
        _ => None,
    };
    if let Some(attr) = url_attr {
        // Without the attribute the value is the empty string.
        let raw = el.attr(attr)?.trim();
        return Some(match base.join(raw) {
            Ok(u) => u.to_string(),
            Err(_) => raw.to_string(),
        });
    }
    let attr = match el.value().name() {
        "meta" => Some("content"),
        "time" => Some("datetime"),
        "data" | "meter" => Some("value"),
        _ => None,
    };
    match attr {
        Some(a) => el
            .attr(a)
            .map(str::to_string)
            .or_else(|| (a != "content").then(|| element_text(el))),
        None => el
            .attr("content")
            .or(el.attr("datetime"))
            .map(str::to_string)
            .or_else(|| Some(element_text(el))),
    }
}

fn md_review(el: ElementRef<'_>, base: &Url) -> Result<RawReview, String> {
    let p = props(el, base);
    let rating = match p.el("reviewRating") {
        Some(r) if r.attr("itemscope").is_some() => {
            let rp = props(r, base);
            rp.num("ratingValue")
                .and_then(|v| scale_rating(v, rp.num("bestRating")))
        }
        _ => p
            .num("ratingValue")
            .and_then(|v| scale_rating(v, p.num("bestRating"))),
    };
    // `itemid` is a URL as well.
    let itemid = el.attr("itemid").map(|i| {
        base.join(i.trim())
            .map_or_else(|_| i.to_string(), |u| u.to_string())
    });
    let mut r = review(
        itemid.or(p.get("url")),
        p.text("author"),
        p.text("name").or(p.text("headline")),
        p.text("reviewBody").or(p.text("description")),
        rating,
        p.get("datePublished").as_deref(),
    )?;
    r.legacy_id = legacy_md_review_id(el, &p);
    Ok(r)
}

/// The external id the microdata reader gave a review before it read URL-valued
/// properties as URLs: the `itemid` as written, else the `url` property's text, else
/// (none, or blank) the hash of the author, date and text as it read them.
fn legacy_md_review_id(el: ElementRef<'_>, p: &Props<'_, '_>) -> Option<String> {
    let legacy = review(
        el.attr("itemid")
            .map(str::to_string)
            .or(p.legacy_get("url")),
        p.legacy_get("author"),
        p.legacy_get("name").or(p.legacy_get("headline")),
        p.legacy_get("reviewBody").or(p.legacy_get("description")),
        None,
        p.legacy_get("datePublished").as_deref(),
    )
    .ok()?;
    Some(legacy.id.clone().unwrap_or_else(|| legacy.hashed_id()))
}

/// Dates as pages write them: RFC 3339, plain ISO dates, RFC 2822, "March 5, 2026",
/// "5 March 2026".
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = DateTime::parse_from_rfc2822(s) {
        return Some(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, f) {
            return Some(d.and_utc());
        }
    }
    let s = s.replace(',', "");
    for f in ["%Y-%m-%d", "%B %d %Y", "%b %d %Y", "%d %B %Y", "%d %b %Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(&s, f) {
            return d.and_hms_opt(0, 0, 0).map(|d| d.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_scales() {
        assert_eq!(parse_number("4,5 von 5"), Some(4.5));
        assert_eq!(parse_number("12,480 ratings"), Some(12480.0));
        assert_eq!(parse_number("Rated 4 out of 5"), Some(4.0));
        assert_eq!(scale_rating(8.0, Some(10.0)), Some(4));
        assert_eq!(scale_rating(4.0, None), Some(4));
        assert_eq!(scale_rating(11.0, Some(10.0)), None);
        assert_eq!(scale_rating(0.0, Some(5.0)), Some(1));
    }

    #[test]
    fn property_values_follow_the_microdata_spec() {
        let html = r#"<div itemscope itemtype="https://schema.org/Review">
            <a itemprop="url" href="../r/7?lang=en">Permalink</a>
            <img itemprop="image" src="/img/7.jpg" alt="photo">
            <meta itemprop="inLanguage" content="en-GB">
            <time itemprop="datePublished">2026-11-01</time>
            <time itemprop="dateModified" datetime="2026-11-02T10:00:00Z">yesterday</time>
            <data itemprop="ratingValue" value="4">★★★★☆</data>
            <link itemprop="sameAs">
            <span itemprop="reviewBody">Fine.</span>
        </div>"#;
        let doc = Html::parse_document(html);
        let base = Url::parse("https://shop.example.com/p/kettle").unwrap();
        let item = doc
            .select(&Selector::parse("[itemscope]").unwrap())
            .next()
            .unwrap();
        let p = props(item, &base);
        let get = |name: &str| p.get(name);
        assert_eq!(
            get("url").as_deref(),
            Some("https://shop.example.com/r/7?lang=en")
        );
        assert_eq!(
            get("image").as_deref(),
            Some("https://shop.example.com/img/7.jpg")
        );
        assert_eq!(get("inLanguage").as_deref(), Some("en-GB"));
        assert_eq!(get("datePublished").as_deref(), Some("2026-11-01"));
        assert_eq!(get("dateModified").as_deref(), Some("2026-11-02T10:00:00Z"));
        assert_eq!(get("ratingValue").as_deref(), Some("4"));
        assert_eq!(get("sameAs"), None, "a link without href has no value");
        assert_eq!(get("reviewBody").as_deref(), Some("Fine."));
    }

    #[test]
    fn an_author_marked_on_a_link_is_its_name() {
        let html = r#"<div itemscope itemtype="https://schema.org/Review">
            <a itemprop="author" href="/u/7">Jane D.</a>
            <a itemprop="name" href="/r/7">Boils fast</a>
            <meta itemprop="datePublished" content="2026-11-01">
            <span itemprop="reviewBody">Quiet and quick.</span>
        </div>"#;
        let doc = Html::parse_document(html);
        let base = Url::parse("https://shop.example.com/p/kettle").unwrap();
        let item = doc
            .select(&Selector::parse("[itemscope]").unwrap())
            .next()
            .unwrap();
        let r = md_review(item, &base).unwrap();
        assert_eq!(r.author.as_deref(), Some("Jane D."));
        // The same as a nested Person whose name is the link.
        let nested = html.replace(
            r#"<a itemprop="author" href="/u/7">Jane D.</a>"#,
            r#"<span itemprop="author" itemscope itemtype="https://schema.org/Person"><a itemprop="name" href="/u/7">Jane D.</a></span>"#,
        );
        let doc = Html::parse_document(&nested);
        let item = doc
            .select(&Selector::parse("[itemtype='https://schema.org/Review']").unwrap())
            .next()
            .unwrap();
        let r = md_review(item, &base).unwrap();
        assert_eq!(r.author.as_deref(), Some("Jane D."));
        assert_eq!(r.title.as_deref(), Some("Boils fast"));
        assert_eq!(r.text, "Quiet and quick.");
    }

    #[test]
    fn dates() {
        assert!(parse_date("2026-03-05").is_some());
        assert!(parse_date("March 5, 2026").is_some());
        assert!(parse_date("2026-03-05T10:00:00+01:00").is_some());
        assert!(parse_date("yesterday").is_none());
    }
}
