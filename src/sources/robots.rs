//! robots.txt (RFC 9309) for the `page` connector, the one that reads arbitrary web
//! pages rather than an API: a site that asks crawlers to keep out of a path is obeyed.
//! Rules are cached per site for an hour, so a page polled every few minutes costs the
//! site one robots.txt request an hour.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use url::Url;

use super::http::{shown, Http};
use super::FetchError;
use crate::domain::FetchErrorKind;

/// The product token zmot looks for in `User-agent:` lines.
pub const AGENT: &str = "zmot";
const TTL: Duration = Duration::from_secs(3600);

/// The rules that apply to zmot on one site: (allow?, pattern).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules(Vec<(bool, String)>);

impl Rules {
    /// Parses robots.txt and keeps the group for `agent`, or the `*` group when no
    /// group names it.
    pub fn parse(text: &str, agent: &str) -> Rules {
        let agent = agent.to_ascii_lowercase();
        let (mut mine, mut star) = (Vec::new(), Vec::new());
        let mut named_mine = false;
        // The user agents of the group being read, and whether rules started.
        let mut agents: Vec<String> = Vec::new();
        let mut in_rules = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "user-agent" => {
                    if in_rules {
                        agents.clear();
                        in_rules = false;
                    }
                    agents.push(product_token(value));
                }
                "allow" | "disallow" => {
                    in_rules = true;
                    let for_me = agents.contains(&agent);
                    // A group naming zmot is zmot's even when its only rule is an empty
                    // Disallow (allow everything): the `*` group no longer applies.
                    named_mine |= for_me;
                    if value.is_empty() {
                        continue; // an empty Disallow allows everything: no rule to keep
                    }
                    let rule = (key == "allow", value.to_string());
                    if for_me {
                        mine.push(rule.clone());
                    }
                    if agents.iter().any(|a| a == "*") {
                        star.push(rule);
                    }
                }
                _ => {}
            }
        }
        Rules(if named_mine { mine } else { star })
    }

    /// Whether a path (with its query) may be fetched: the longest matching rule
    /// wins, and Allow wins a tie.
    pub fn allows(&self, path: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.0 {
            if matches(pattern, path) {
                let len = pattern.len();
                if best.is_none_or(|(l, a)| len > l || (len == l && *allow && !a)) {
                    best = Some((len, *allow));
                }
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// The product token a `User-agent:` line names, lower-cased: its leading letters, `-`
/// and `_` (RFC 9309), so `zmot/1.0` names zmot while `z` or `zmotbot` do not; `*`
/// stays `*`.
fn product_token(value: &str) -> String {
    if value == "*" || value.starts_with("* ") {
        return "*".to_string();
    }
    value
        .chars()
        .take_while(|c| c.is_ascii_alphabetic() || *c == '-' || *c == '_')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Glob match with `*` (any run) and a trailing `$` (end of path).
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let Some(rest) = path.strip_prefix(parts[0]) else {
        return false;
    };
    let mut pos = path.len() - rest.len();
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate().skip(1) {
        if i == last && anchored {
            return path.len() >= pos + part.len() && path.ends_with(part);
        }
        match path[pos..].find(part) {
            Some(at) => pos += at + part.len(),
            None => return false,
        }
    }
    !anchored || pos == path.len()
}

/// Whether `url` may be fetched, reading (or recalling) the site's robots.txt. A
/// missing robots.txt (4xx) allows everything; a failing one (5xx, network) allows
/// nothing this time, as RFC 9309 asks.
pub async fn check(http: &Http<'_>, url: &Url) -> Result<(), FetchError> {
    static CACHE: OnceLock<Mutex<HashMap<String, (Instant, Rules)>>> = OnceLock::new();
    let origin = url.origin().ascii_serialization();
    let cached = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&origin)
        .filter(|(at, _)| at.elapsed() < TTL)
        .map(|(_, r)| r.clone());
    let rules = match cached {
        Some(r) => r,
        None => {
            let robots_url = url.join("/robots.txt").map_err(|e| {
                FetchError::new(FetchErrorKind::Config, format!("{}: {e}", shown(url)))
            })?;
            let resp = http
                .execute(&robots_url, || http.client().get(robots_url.clone()))
                .await
                .map_err(|e| {
                    FetchError::new(
                        e.kind,
                        format!(
                            "cannot read robots.txt, so not fetching the page: {}",
                            e.message
                        ),
                    )
                })?;
            let rules = if resp.status.is_success() {
                Rules::parse(&resp.text(), AGENT)
            } else {
                Rules::default()
            };
            CACHE
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(origin, (Instant::now(), rules.clone()));
            rules
        }
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    if rules.allows(&path) {
        Ok(())
    } else {
        Err(FetchError::new(
            FetchErrorKind::Blocked,
            format!(
                "{} is disallowed for zmot by the site's robots.txt",
                shown(url)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_longest_match() {
        let txt = "User-agent: *\nDisallow: /private\nAllow: /private/reviews$\n\n\
                   User-agent: BadBot\nDisallow: /\n";
        let r = Rules::parse(txt, AGENT);
        assert!(r.allows("/products/1"));
        assert!(!r.allows("/private/x"));
        assert!(r.allows("/private/reviews"));
        assert!(!r.allows("/private/reviews?page=2"));
        let named = Rules::parse(
            "User-agent: zmot\nDisallow: /*.json\nUser-agent: *\nDisallow: /\n",
            AGENT,
        );
        assert!(named.allows("/page"));
        assert!(!named.allows("/api/x.json"));
    }

    #[test]
    fn a_group_naming_zmot_with_an_empty_disallow_allows_everything() {
        let txt = "User-agent: zmot\nDisallow:\n\nUser-agent: *\nDisallow: /\n";
        let r = Rules::parse(txt, AGENT);
        assert!(r.allows("/products/1"), "{r:?}");
        assert!(!Rules::parse(txt, "otherbot").allows("/products/1"));
    }

    #[test]
    fn a_group_is_zmot_s_only_when_it_names_zmot_as_its_product_token() {
        let only = |agent_line: &str| {
            let txt = format!(
                "User-agent: {agent_line}\nDisallow: /\n\nUser-agent: *\nDisallow: /cart\n"
            );
            Rules::parse(&txt, AGENT).allows("/products/1")
        };
        // Other crawlers whose names are parts of zmot's, or contain it, are not zmot.
        assert!(only("z"));
        assert!(only("mot"));
        assert!(only("zmotbot"));
        // zmot in any case, with a version or a comment after its token, is.
        assert!(!only("zmot"));
        assert!(!only("ZMOT"));
        assert!(!only("zmot/1.0"));
        assert!(!only("Zmot (+https://example.com/bot)"));
        // Groups naming zmot are combined.
        let txt = "User-agent: zmot\nDisallow: /a\n\nUser-agent: other\nDisallow: /\n\n\
                   User-agent: zmot/2\nDisallow: /b\n";
        let r = Rules::parse(txt, AGENT);
        assert!(
            !r.allows("/a") && !r.allows("/b") && r.allows("/c"),
            "{r:?}"
        );
    }

    #[test]
    fn globs() {
        assert!(matches("/a*b", "/a/x/b/c"));
        assert!(matches("/a*b$", "/a/x/b"));
        assert!(!matches("/a*b$", "/a/x/bc"));
        assert!(matches("/", "/anything"));
    }
}
