//! Text helpers the connectors share: HTML to readable text (posts, feed items and
//! review bodies arrive as HTML; sentiment models and emails want plain text), the
//! watch's keyword and language filters, and stable ids for items that have none.

use scraper::{ElementRef, Html, Node};
use sha2::{Digest, Sha256};

/// Elements that start a new line when rendered.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "hr",
    "dd",
    "dt",
];

/// Elements whose content is never shown.
const HIDDEN: &[&str] = &["script", "style", "noscript", "template", "head"];

/// Converts an HTML fragment to plain text: tags dropped, entities decoded, block
/// elements on their own lines, runs of spaces folded. Plain text goes through
/// unchanged apart from entity decoding and whitespace folding.
pub fn html_to_text(html: &str) -> String {
    if !html.contains('<') {
        return tidy(&html_escape::decode_html_entities(html));
    }
    let doc = Html::parse_fragment(html);
    let mut out = String::with_capacity(html.len());
    walk(doc.root_element(), &mut out, 0);
    tidy(&out)
}

/// The text of an element (for selectors and microdata), with the same rules.
pub fn element_text(el: ElementRef<'_>) -> String {
    let mut out = String::new();
    walk(el, &mut out, 0);
    tidy(&out)
}

fn walk(el: ElementRef<'_>, out: &mut String, depth: usize) {
    // Hostile markup can nest deeply; the parser already caps it, this is belt and braces.
    if depth > 256 {
        return;
    }
    for child in el.children() {
        match child.value() {
            Node::Text(t) => out.push_str(t),
            Node::Element(e) => {
                let name = e.name();
                if HIDDEN.contains(&name) {
                    continue;
                }
                let block = BLOCKS.contains(&name);
                if block {
                    out.push('\n');
                }
                if let Some(c) = ElementRef::wrap(child) {
                    walk(c, out, depth + 1);
                }
                if block && name != "br" {
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
}

/// Folds spaces within lines, trims lines and keeps at most one blank line in a row.
fn tidy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = 0;
    for line in s.lines() {
        let line = collapse_whitespace(line);
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 1 { "\n\n" } else { "\n" });
        }
        out.push_str(&line);
        blank = 0;
    }
    out
}

/// Folds every run of whitespace (including non-breaking spaces) into one space.
pub fn collapse_whitespace(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c == '\u{a0}')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any keyword occurs in any of the texts (case-insensitive); no keywords keeps
/// everything.
pub fn matches_keywords(keywords: &[String], texts: &[&str]) -> bool {
    let keywords: Vec<String> = keywords
        .iter()
        .map(|k| k.trim().to_lowercase())
        .filter(|k| !k.is_empty())
        .collect();
    if keywords.is_empty() {
        return true;
    }
    let hay: Vec<String> = texts.iter().map(|t| t.to_lowercase()).collect();
    keywords
        .iter()
        .any(|k| hay.iter().any(|h| h.contains(k.as_str())))
}

/// Whether a language passes the watch's filter. `en` admits `en-GB`; an item whose
/// language is unknown is kept, since dropping it would lose untagged posts.
pub fn language_allowed(languages: &[String], lang: Option<&str>) -> bool {
    let Some(lang) = lang.map(str::trim).filter(|l| !l.is_empty()) else {
        return true;
    };
    if languages.is_empty() {
        return true;
    }
    let primary = |l: &str| {
        l.split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let p = primary(lang);
    languages.iter().any(|l| primary(l) == p)
}

/// A stable id from parts (for items the source gives no id): the same review seen
/// again gets the same id, so the store recognises it.
pub fn hash_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.trim().as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The searches of a search-type source: its own query when set, else one per keyword of
/// the watch. None at all is a configuration error naming the missing setting.
pub fn search_queries(
    query: Option<&str>,
    keywords: &[String],
    kind: &str,
    setting: &str,
) -> Result<Vec<String>, super::FetchError> {
    let queries: Vec<String> = match query {
        Some(q) => vec![q.to_string()],
        None => keywords
            .iter()
            .filter(|k| !k.trim().is_empty())
            .cloned()
            .collect(),
    };
    if queries.is_empty() {
        return Err(super::FetchError::new(
            crate::domain::FetchErrorKind::Config,
            format!("{kind} source needs `{setting}` (or keywords on its watch)"),
        ));
    }
    Ok(queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_readable_text() {
        let html = "<p>Love it &amp; the <b>dark</b>&nbsp;mode 😍</p><p>Second<br>line</p>\
                    <script>alert(1)</script>";
        assert_eq!(
            html_to_text(html),
            "Love it & the dark mode 😍\nSecond\nline"
        );
        assert_eq!(html_to_text("a &lt; b"), "a < b");
    }

    #[test]
    fn keywords_and_languages() {
        let kw = vec!["Example Notes".to_string()];
        assert!(matches_keywords(&kw, &["I use example notes daily"]));
        assert!(!matches_keywords(&kw, &["other app"]));
        assert!(matches_keywords(&[], &["anything"]));
        let langs = vec!["en".to_string()];
        assert!(language_allowed(&langs, Some("en-GB")));
        assert!(!language_allowed(&langs, Some("de")));
        assert!(language_allowed(&langs, None));
    }
}
