//! URLs with their secrets hidden, for logs and error messages: database URLs (their
//! passwords) and the URLs sources fetch (every query value). Worked on the text rather
//! than a parsed URL, so that a URL too broken to parse is hidden too; a password holding
//! `@` or `/` may hide more than itself, never less.

/// A database URL with its passwords hidden, for logs and errors: the one in the user
/// information (`user:pw@`) and any in the query (`?password=`, `sslpassword=`).
pub fn database_url(url: &str) -> String {
    redact(url, is_secret_param)
}

/// A source's URL with its secrets hidden, for errors and logs (which reach the warn log,
/// the fetch runs, the dashboard and the CLI): the password in the user information and
/// the value of every query parameter, whatever its name. Private feeds put their key in
/// the query under names no list foresees (`?token=`, `?key=`, `?k=`); the names stay, so
/// the message still says which URL it was. Path segments that look like keys are hidden
/// too: a private feed's URL may be its only secret, kept in the path (Google Alerts:
/// `/alerts/feeds/<20-digit user>/<19-digit alert>`).
pub fn source_url(url: &str) -> String {
    let redacted = redact(url, |_| true);
    let Some(i) = redacted.find("://") else {
        return redacted;
    };
    let (scheme, rest) = redacted.split_at(i + 3);
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (authority_and_path, tail) = rest.split_at(end);
    let path: Vec<&str> = authority_and_path
        .split('/')
        .enumerate()
        .map(|(n, segment)| match n > 0 && looks_like_a_key(segment) {
            true => "***",
            false => segment,
        })
        .collect();
    format!("{scheme}{}{tail}", path.join("/"))
}

/// A path segment that reads as a key or an account number rather than a name: 16 or
/// more letters, digits, `-` and `_` with at least 6 digits among them
/// (`00641234567890123456`, `a1b2c3d4e5f6a7b8c9d0`), where names (`reviews-2024.xml`,
/// `search_by_date`, an app's `id389801252`) are shorter or mostly letters.
fn looks_like_a_key(segment: &str) -> bool {
    segment.len() >= 16
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && segment.chars().filter(char::is_ascii_digit).count() >= 6
}

/// `url` with the password of its user information and the values of the query
/// parameters `hide` names replaced by `***`.
fn redact(url: &str, hide: fn(&str) -> bool) -> String {
    let Some(i) = url.find("://") else {
        // Not a URL: perhaps a keyword string (`host=db password=secret`).
        return hide_params(url, ' ', hide);
    };
    let (scheme, rest) = url.split_at(i + 3);
    // The user information ends at the last `@` before the query (an `@` in the query is
    // not one), unless no `/` comes before the `?`: then the `?` is in a password
    // (`u:pw?x@host`), and the last `@` of all ends it.
    let before_query = rest.split_once('?').map_or(rest, |(b, _)| b);
    let at = match before_query.rfind('@') {
        Some(at) => Some(at),
        None if !before_query.contains('/') => rest.rfind('@'),
        None => None,
    };
    let mut out = String::from(scheme);
    let host_and_rest = match at {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match host_and_rest.split_once('?') {
        None => out.push_str(host_and_rest),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            out.push_str(&hide_params(query, '&', hide));
        }
    }
    out
}

/// `key=value` pairs split by `sep`, with the values of the keys `hide` names hidden.
fn hide_params(pairs: &str, sep: char, hide: fn(&str) -> bool) -> String {
    pairs
        .split(sep)
        .map(|param| match param.split_once('=') {
            Some((key, _)) if hide(key) => format!("{key}=***"),
            _ => param.to_string(),
        })
        .collect::<Vec<_>>()
        .join(&sep.to_string())
}

/// Query parameters that carry a secret (`password`, `sslpassword`, a token).
fn is_secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::{database_url, source_url};

    #[test]
    fn database_url_hides_passwords_in_userinfo_and_query_even_in_broken_urls() {
        for (url, shown) in [
            (
                "postgres://zmot:pw@127.0.0.1:1/zmot?password=qp_secret&sslmode=disable",
                "postgres://zmot:***@127.0.0.1:1/zmot?password=***&sslmode=disable",
            ),
            (
                "postgres://db/zmot?user=zmot&sslpassword=k3y",
                "postgres://db/zmot?user=zmot&sslpassword=***",
            ),
            (
                "postgres://zmot:p@ss/w@host:notaport/zmot",
                "postgres://zmot:***@host:notaport/zmot",
            ),
            ("mysql://root:hunter2@db/x", "mysql://root:***@db/x"),
            ("postgres://zmot@db/zmot", "postgres://zmot@db/zmot"),
            ("sqlite://zmot.db?mode=rwc", "sqlite://zmot.db?mode=rwc"),
            // An `@` in the query is not the end of user information.
            (
                "postgres://zmot@db/zmot?password=p@ss",
                "postgres://zmot@db/zmot?password=***",
            ),
            (
                "postgres://db/x?password=s3cr@t",
                "postgres://db/x?password=***",
            ),
            // A `?` in a password is not the start of a query.
            ("postgres://u:pw?x@host/db", "postgres://u:***@host/db"),
            // Not a URL at all: a keyword string.
            (
                "host=db user=zmot password=secret",
                "host=db user=zmot password=***",
            ),
        ] {
            assert_eq!(database_url(url), shown, "{url}");
        }
    }

    #[test]
    fn source_url_hides_every_query_value_and_the_password() {
        for (url, shown) in [
            (
                "https://feeds.example.com/private/reviews.rss?token=SECRET123&lang=en",
                "https://feeds.example.com/private/reviews.rss?token=***&lang=***",
            ),
            (
                "https://reader:hunter2@feeds.example.com/rss?k=abc",
                "https://reader:***@feeds.example.com/rss?k=***",
            ),
            (
                "http://127.0.0.1:8080/api/v1/search_by_date?query=example+notes&page=0",
                "http://127.0.0.1:8080/api/v1/search_by_date?query=***&page=***",
            ),
            // A parameter without a value and a URL without a query stay as they are.
            (
                "https://example.com/feed?raw",
                "https://example.com/feed?raw",
            ),
            (
                "https://example.com/feed.xml",
                "https://example.com/feed.xml",
            ),
            // A feed whose key is its path: the account and the alert are hidden.
            (
                "https://www.google.com/alerts/feeds/00641234567890123456/1234567890123456789",
                "https://www.google.com/alerts/feeds/***/***",
            ),
            (
                "https://feeds.example.com/u/a1b2c3d4e5f6a7b8c9d0/reviews.atom?x=1#top",
                "https://feeds.example.com/u/***/reviews.atom?x=***",
            ),
            // Names, short ids and the host stay.
            (
                "https://apps.example.com/us/app/id389801252/reviews-2024.xml",
                "https://apps.example.com/us/app/id389801252/reviews-2024.xml",
            ),
            (
                "http://127.0.0.1:8080/api/v1/search_by_date_and_more",
                "http://127.0.0.1:8080/api/v1/search_by_date_and_more",
            ),
            (
                "https://1234567890123456789.example.com/feed",
                "https://1234567890123456789.example.com/feed",
            ),
        ] {
            assert_eq!(source_url(url), shown, "{url}");
        }
    }
}
