//! The shared layout, the embedded stylesheet and small formatting helpers. Every
//! piece of text that did not come from this file goes through [`esc`].

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Escapes text for HTML content and double-quoted attribute values (the only kind
/// these pages use): `&`, `<`, `>` and `"`.
pub fn esc(s: &str) -> Cow<'_, str> {
    html_escape::encode_double_quoted_attribute(s)
}

/// The stylesheet, served from `/assets/zmot.css` (the CSP allows no inline style).
pub const CSS: &str = r#"
:root{--fg:#1d2330;--muted:#5b6472;--line:#d9dee6;--bg:#f6f7f9;--card:#fff;
--green:#1f7a3a;--green-bg:#e3f4e8;--amber:#8a5a00;--amber-bg:#fff1d6;--red:#a61b1b;--red-bg:#fde4e4;
--accent:#2456a6}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header.top{background:#1d2330;color:#fff}
header.top nav{max-width:1240px;margin:0 auto;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:center}
header.top a{color:#fff;text-decoration:none}
header.top a.brand{font-weight:700;letter-spacing:.02em}
header.top a.here{text-decoration:underline}
header.top form{margin-left:auto}
main{max-width:1240px;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.2rem 0 .8rem}
h2{font-size:1.15rem;margin:1.6rem 0 .6rem}
h3{font-size:1rem;margin:.8rem 0 .4rem}
a{color:var(--accent)}
.muted{color:var(--muted)}
.small{font-size:.85rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:1rem;min-width:0}
.card.green{border-top:6px solid var(--green)}
.card.amber{border-top:6px solid var(--amber)}
.card.red{border-top:6px solid var(--red)}
.card h2{margin:0 0 .4rem;font-size:1.15rem}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.8rem;font-weight:600;border:1px solid transparent;white-space:nowrap}
.badge.green,.sent-positive{background:var(--green-bg);color:var(--green)}
.badge.amber,.sent-neutral{background:var(--amber-bg);color:var(--amber)}
.badge.red,.sent-negative,.badge.failed{background:var(--red-bg);color:var(--red)}
.badge.ok{background:var(--green-bg);color:var(--green)}
.badge.partial,.badge.running{background:var(--amber-bg);color:var(--amber)}
.badge.status{background:#e8eefb;color:var(--accent)}
.reasons{margin:.3rem 0 .6rem;padding-left:1.1rem}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.5rem;margin:.5rem 0}
.figure{background:var(--bg);border-radius:6px;padding:.4rem .6rem}
.figure b{display:block;font-size:1.2rem}
.figure span{font-size:.8rem;color:var(--muted)}
.below{color:var(--red);font-weight:600}
.above{color:var(--green);font-weight:600}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.8rem;color:var(--muted);font-weight:600}
tr.fail td{background:var(--red-bg)}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:1rem}
.chart{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.6rem}
.chart svg{width:100%;height:auto;display:block}
.chart h3{margin:0 0 .3rem}
.mention{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.8rem;margin:.6rem 0}
.mention.negative{border-left:5px solid var(--red)}
.mention.positive{border-left:5px solid var(--green)}
.mention.neutral{border-left:5px solid var(--amber)}
.mention .meta{font-size:.85rem;color:var(--muted);display:flex;flex-wrap:wrap;gap:.2rem .8rem}
.mention .text{white-space:pre-wrap;overflow-wrap:anywhere;margin:.4rem 0}
.reply{border-left:3px solid var(--line);padding-left:.6rem;margin:.4rem 0;color:var(--muted);white-space:pre-wrap;overflow-wrap:anywhere}
.stars{color:#b07800;letter-spacing:.05em}
form.inline{display:flex;flex-wrap:wrap;gap:.4rem;align-items:flex-end;margin:.4rem 0}
form.inline label{display:flex;flex-direction:column;font-size:.8rem;color:var(--muted)}
input,select,textarea,button{font:inherit;padding:.3rem .45rem;border:1px solid var(--line);border-radius:5px;background:#fff;max-width:100%}
button{background:var(--accent);color:#fff;border-color:var(--accent);cursor:pointer}
button.quiet{background:#fff;color:var(--accent)}
.filters{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.6rem}
.pager{display:flex;gap:1rem;align-items:center;margin:1rem 0}
.error{background:var(--red-bg);color:var(--red);padding:.8rem;border-radius:8px}
details summary{cursor:pointer}
@media (max-width:600px){
body{font-size:14px}
main{padding:.6rem}
.cards,.charts{grid-template-columns:1fr}
.figures{grid-template-columns:repeat(2,1fr)}
form.inline{flex-direction:column;align-items:stretch}
form.inline label{width:100%}
th,td{padding:.3rem}
}
"#;

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Mentions,
    Sources,
    None,
}

/// A whole page: header, navigation and `body` (already escaped HTML).
pub fn page(title: &str, nav: Nav, body: &str) -> String {
    let link = |href: &str, label: &str, n: Nav| {
        format!(
            r#"<a href="{href}"{}>{label}</a>"#,
            if n == nav {
                r#" class="here" aria-current="page""#
            } else {
                ""
            }
        )
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · zmot</title>
<link rel="stylesheet" href="/assets/zmot.css">
</head><body>
<header class="top"><nav><a class="brand" href="/">zmot</a>{}{}{}</nav></header>
<main>
{body}
</main>
</body></html>
"#,
        link("/", "Overview", Nav::Overview),
        link("/mentions", "Mentions", Nav::Mentions),
        link("/sources", "Sources", Nav::Sources),
        title = esc(title),
    )
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        r#"<h1>{}</h1><p class="error">{}</p><p><a href="/">Back to the overview</a></p>"#,
        status.as_u16(),
        esc(message)
    );
    (
        status,
        Html(page(
            status.canonical_reason().unwrap_or("Error"),
            Nav::None,
            &body,
        )),
    )
        .into_response()
}

/// A time on the clock of `tz` (the watch's), marked with the zone then in force, as a
/// reader of the dashboard may be on another clock: `2026-11-23 22:30 EST`.
pub fn fmt_time(t: DateTime<Utc>, tz: Tz) -> String {
    crate::clock::minute_zoned(t, tz)
}

pub fn fmt_pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.0}%", v * 100.0))
        .unwrap_or_else(|| "–".into())
}

pub fn fmt_rating(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

pub fn fmt_hours(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(h) if h < 1.0 => format!("{:.0} min", h * 60.0),
        Some(h) if h < 48.0 => format!("{h:.1} h"),
        Some(h) => format!("{:.1} days", h / 24.0),
    }
}

/// Filled and empty stars, with the number for screen readers.
pub fn stars(n: Option<u8>) -> String {
    match n {
        None => String::new(),
        Some(n) => {
            let n = n.min(5) as usize;
            format!(
                r#"<span class="stars" title="{n} of 5 stars" aria-label="{n} of 5 stars">{}{}</span>"#,
                "★".repeat(n),
                "☆".repeat(5 - n)
            )
        }
    }
}

/// A link to an original only when it is an http(s) URL; otherwise nothing.
pub fn original_link(url: Option<&str>) -> String {
    match url.map(str::trim) {
        Some(u) if is_http(u) => format!(
            r#"<a href="{}" rel="noopener noreferrer nofollow" target="_blank">original</a>"#,
            esc(u)
        ),
        _ => String::new(),
    }
}

pub fn is_http(u: &str) -> bool {
    url::Url::parse(u)
        .map(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some())
        .unwrap_or(false)
}

/// Hidden fields every form carries: the CSRF token and where to come back to.
pub fn form_fields(csrf: &str, back: &str) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}"><input type="hidden" name="back" value="{}">"#,
        esc(csrf),
        esc(back)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_links() {
        assert_eq!(esc("<script>\"&"), "&lt;script&gt;&quot;&amp;");
        assert!(original_link(Some("javascript:alert(1)")).is_empty());
        assert!(original_link(Some("https://x.test/a?b=\"c")).contains("&quot;"));
    }
}
