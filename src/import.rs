//! Reading mentions that arrive without polling: `zmot import` files (CSV or JSON lines)
//! and the ingest API share this code. A bad record is reported with its line and
//! left out; the good ones are kept.

use std::io::BufRead;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use crate::domain::{Engagement, Mention};

/// A record that could not be read, with where it was.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BadRecord {
    /// 1-based line in the file (for CSV, the line the record starts on).
    pub line: u64,
    pub error: String,
}

/// What a file held.
#[derive(Debug, Default)]
pub struct Parsed {
    pub mentions: Vec<Mention>,
    pub bad: Vec<BadRecord>,
    /// Problems with the file as a whole that lose no record by themselves, such as
    /// columns that are not read.
    pub warnings: Vec<String>,
}

impl Parsed {
    /// Drops all but the last record of each external id (the last is the freshest, and
    /// the store would keep only it anyway), so that counts add up; returns how many
    /// were dropped.
    pub fn keep_last_of_repeated(&mut self) -> usize {
        let mut last: std::collections::HashMap<&str, usize> = Default::default();
        for (i, m) in self.mentions.iter().enumerate() {
            last.insert(m.external_id.as_str(), i);
        }
        let keep: Vec<bool> = self
            .mentions
            .iter()
            .enumerate()
            .map(|(i, m)| last[m.external_id.as_str()] == i)
            .collect();
        let before = self.mentions.len();
        let mut flags = keep.into_iter();
        self.mentions.retain(|_| flags.next().unwrap_or(true));
        before - self.mentions.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// Guesses from the file name: `.csv` is CSV, anything else JSON lines.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// Reads a whole file's records.
///
/// `zone` is the watch's: a date written without a time (`2026-11-23`) is that day on
/// its clock, as the export that wrote it meant it.
pub fn parse_reader(mut reader: impl std::io::Read, format: Format, zone: Tz) -> Parsed {
    let mut bytes = Vec::new();
    if let Err(e) = reader.read_to_end(&mut bytes) {
        return Parsed {
            bad: vec![BadRecord {
                line: 1,
                error: format!("cannot read the file: {e}"),
            }],
            ..Default::default()
        };
    }
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Parsed {
            bad: vec![BadRecord {
                line: 1,
                error: "the file is UTF-16 text; save it as UTF-8".into(),
            }],
            ..Default::default()
        };
    }
    // Editors on Windows start UTF-8 files with a byte-order mark; it is no part of the
    // first record.
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    match format {
        Format::Csv => parse_csv(body, zone),
        Format::Jsonl => parse_jsonl(body, zone),
    }
}

fn parse_jsonl(body: &[u8], zone: Tz) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in body.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                out.bad.push(BadRecord {
                    line: line_no,
                    error: format!("cannot read the line: {e}"),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let result = serde_json::from_str::<Value>(&line)
            .map_err(|e| format!("not valid JSON: {e}"))
            .and_then(|v| match v {
                Value::Object(map) => mention_from_map(&map, zone),
                _ => Err("not a JSON object".to_string()),
            });
        match result {
            Ok(m) => out.mentions.push(m),
            Err(error) => out.bad.push(BadRecord {
                line: line_no,
                error,
            }),
        }
    }
    out
}

/// The 1-based line of the first non-empty line at or after byte `at`. The csv crate's
/// own line count is off after blank lines and with CRLF line ends, so lines are counted
/// here from byte positions, which it keeps exactly.
struct LineCounter<'a> {
    body: &'a [u8],
    at: usize,
    line: u64,
}

impl LineCounter<'_> {
    fn line_of(&mut self, byte: u64) -> u64 {
        let mut target = (byte as usize).min(self.body.len());
        while target < self.body.len() && matches!(self.body[target], b'\r' | b'\n') {
            target += 1;
        }
        if target < self.at {
            // Positions only move forward; restart if one does not.
            self.at = 0;
            self.line = 1;
        }
        self.line += self.body[self.at..target]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        self.at = target;
        self.line
    }
}

fn parse_csv(body: &[u8], zone: Tz) -> Parsed {
    let mut out = Parsed::default();
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(body);
    let headers: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_ascii_lowercase()).collect(),
        Err(e) => {
            out.bad.push(BadRecord {
                line: 1,
                error: format!("cannot read the header line: {e}"),
            });
            return out;
        }
    };
    out.warnings.extend(header_warning(&headers));
    let mut lines = LineCounter {
        body,
        at: 0,
        line: 1,
    };
    for record in rdr.records() {
        match record {
            Ok(rec) => {
                let line = lines.line_of(rec.position().map(|p| p.byte()).unwrap_or(0));
                let map: Map<String, Value> = headers
                    .iter()
                    .zip(rec.iter())
                    .filter(|(_, v)| !v.trim().is_empty())
                    .map(|(h, v)| (h.clone(), Value::String(v.to_string())))
                    .collect();
                match mention_from_map(&map, zone) {
                    Ok(m) => out.mentions.push(m),
                    Err(error) => out.bad.push(BadRecord { line, error }),
                }
            }
            Err(e) => {
                let line = lines.line_of(e.position().map(|p| p.byte()).unwrap_or(0));
                out.bad.push(BadRecord {
                    line,
                    error: format!("not a valid CSV record: {e}"),
                });
            }
        }
    }
    out
}

/// Columns of a CSV header that no field is read from. A header that is one column
/// holding `;` or tabs is a file with another delimiter: every row would then lack its
/// date, so that is said first.
fn header_warning(headers: &[String]) -> Option<String> {
    if let [only] = headers {
        for (delimiter, name) in [(';', "semicolons"), ('\t', "tabs")] {
            if only.contains(delimiter) {
                return Some(format!(
                    "the header line is one column, `{only}`: the file looks separated by \
                     {name}, but only commas separate columns; save it as comma-separated CSV"
                ));
            }
        }
    }
    let unknown: Vec<String> = headers
        .iter()
        .filter(|h| !h.is_empty() && !FIELDS.iter().any(|names| names.contains(&h.as_str())))
        .map(|h| format!("`{h}`"))
        .collect();
    (!unknown.is_empty()).then(|| {
        format!(
            "column{} {} not recognised and ignored (see the accepted field names in the README)",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", ")
        )
    })
}

/// The first of several accepted names present in a record.
fn field<'a>(map: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    named_field(map, names).map(|(_, v)| v)
}

/// The same with the name it was found under, for errors that quote the record.
fn named_field<'a, 'n>(
    map: &'a Map<String, Value>,
    names: &[&'n str],
) -> Option<(&'n str, &'a Value)> {
    names
        .iter()
        .find_map(|n| map.get(*n).map(|v| (*n, v)))
        .filter(|(_, v)| !v.is_null())
}

fn string(map: &Map<String, Value>, names: &[&str]) -> Option<String> {
    field(map, names).and_then(|v| match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn integer(map: &Map<String, Value>, names: &[&str]) -> Result<Option<i64>, String> {
    match field(map, names) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.round() as i64))
            .map(Some)
            .ok_or_else(|| format!("`{}` is not a whole number", n)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(|f| Some(f.round() as i64))
            .map_err(|_| format!("`{}` in {} is not a number", s, names[0])),
        Some(v) => Err(format!("{} should be a number, not {v}", names[0])),
    }
}

/// How a date was written; integers say which unit they were read in, so that a
/// rejected one can be explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Text,
    /// A calendar date without a time, read as midnight UTC.
    Date,
    UnixSeconds,
    UnixMilliseconds,
}

impl Reading {
    fn note(self) -> &'static str {
        match self {
            Reading::Text | Reading::Date => "",
            Reading::UnixSeconds => " (read as Unix seconds)",
            Reading::UnixMilliseconds => " (read as Unix milliseconds)",
        }
    }
}

/// An integer date: Unix seconds, or Unix milliseconds when it has 13 digits (what
/// JavaScript's `Date.now()` and many exports give; 13 digits of seconds would be more
/// than 30,000 years from now).
fn from_unix(n: i64) -> Option<(DateTime<Utc>, Reading)> {
    if n.unsigned_abs().checked_ilog10() == Some(12) {
        Some((
            Utc.timestamp_millis_opt(n).single()?,
            Reading::UnixMilliseconds,
        ))
    } else {
        Some((Utc.timestamp_opt(n, 0).single()?, Reading::UnixSeconds))
    }
}

fn read_time(s: &str) -> Option<(DateTime<Utc>, Reading)> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some((t.with_timezone(&Utc), Reading::Text));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(s) {
        return Some((t.with_timezone(&Utc), Reading::Text));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some((Utc.from_utc_datetime(&t), Reading::Text));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some((
            Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?),
            Reading::Date,
        ));
    }
    from_unix(s.parse::<i64>().ok()?)
}

/// Reads a date: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` (UTC), `YYYY-MM-DD`, Unix seconds, or
/// Unix milliseconds (13 digits). Says nothing about whether the date is plausible: see
/// [`parse_plausible_time`].
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    read_time(s).map(|(t, _)| t)
}

/// The earliest date a mention may carry. Anything older is taken for a misread value
/// (a year or `20261103` read as Unix seconds lands in 1970) rather than stored where it
/// would distort trends.
pub fn earliest_date() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1990, 1, 1, 0, 0, 0).unwrap()
}

/// How far past now a date may be: clocks and time zones differ by hours, not days, so a
/// date further ahead is a misread value that would sit first in every list until then.
pub const FUTURE_SLACK_HOURS: i64 = 24;

/// Why `t` is not a plausible date for a mention, if it is not.
fn implausible(t: DateTime<Utc>, now: DateTime<Utc>) -> Option<String> {
    let shown = t.format("%Y-%m-%d %H:%M UTC");
    if t < earliest_date() {
        Some(format!("{shown} is before 1990-01-01"))
    } else if t > now + chrono::Duration::hours(FUTURE_SLACK_HOURS) {
        Some(format!("{shown} is more than a day in the future"))
    } else {
        None
    }
}

/// Reads a date as [`parse_time`] does and refuses one before 1990 or more than a day
/// after `now`, saying how it was read.
pub fn parse_plausible_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let (t, reading) =
        read_time(s).ok_or_else(|| format!("`{}` is not a date (use 2026-11-23)", s.trim()))?;
    match implausible(t, now) {
        None => Ok(t),
        Some(why) => Err(format!(
            "`{}`{}: {why} (use a date like 2026-11-23)",
            s.trim(),
            reading.note()
        )),
    }
}

/// A record's time as written (a date alone: midnight UTC) and how it was read.
fn time(
    map: &Map<String, Value>,
    names: &[&str],
) -> Result<Option<(DateTime<Utc>, Reading)>, String> {
    let Some((key, value)) = named_field(map, names) else {
        return Ok(None);
    };
    let (t, reading, shown) = match value {
        Value::Number(n) => {
            let (t, reading) = n
                .as_i64()
                .and_then(from_unix)
                .ok_or_else(|| format!("{key} `{n}` is not a Unix time"))?;
            (t, reading, n.to_string())
        }
        Value::String(s) => {
            let (t, reading) = read_time(s).ok_or_else(|| {
                format!("{key} `{s}` is not a date (use 2026-11-23T14:05:00Z or 2026-11-23)")
            })?;
            (t, reading, s.trim().to_string())
        }
        v => return Err(format!("{key} should be a date, not {v}")),
    };
    match implausible(t, Utc::now()) {
        None => Ok(Some((t, reading))),
        Some(why) => Err(format!(
            "{key} `{shown}`{}: {why}; use a date like 2026-11-23T14:05:00Z",
            reading.note()
        )),
    }
}

/// A time as read, with a date alone moved to the start of that day on `zone`'s clock.
fn on_the_clock(t: DateTime<Utc>, reading: Reading, zone: Tz) -> DateTime<Utc> {
    match reading {
        Reading::Date => crate::trends::local_midnight(zone, t.date_naive()),
        _ => t,
    }
}

// The names a record's fields are accepted under, first preferred.
const TEXT: &[&str] = &["text", "body", "content", "review"];
const TITLE: &[&str] = &["title", "subject"];
const PUBLISHED_AT: &[&str] = &["published_at", "date", "created_at", "published"];
const RATING: &[&str] = &["rating", "stars"];
const AUTHOR: &[&str] = &["author", "user", "username"];
const ID: &[&str] = &["external_id", "id"];
const URL: &[&str] = &["url", "link"];
const LIKES: &[&str] = &["likes", "helpful"];
const REPLIES: &[&str] = &["replies", "comments"];
const REPOSTS: &[&str] = &["reposts", "shares"];
const LANGUAGE: &[&str] = &["language", "lang"];
const OWNER_REPLY: &[&str] = &["owner_reply", "reply"];
const OWNER_REPLY_AT: &[&str] = &["owner_reply_at", "reply_at"];
const EXTRA: &[&str] = &["extra"];

/// Every accepted field name, to point out the columns of a file that are not read.
const FIELDS: &[&[&str]] = &[
    TEXT,
    TITLE,
    PUBLISHED_AT,
    RATING,
    AUTHOR,
    ID,
    URL,
    LIKES,
    REPLIES,
    REPOSTS,
    LANGUAGE,
    OWNER_REPLY,
    OWNER_REPLY_AT,
    EXTRA,
];

/// Builds a mention from a record's fields. Accepted names (first wins):
/// `external_id`/`id`, `url`/`link`, `author`/`user`, `title`, `text`/`body`/`content`/`review`,
/// `rating`/`stars`, `likes`, `replies`, `reposts`, `language`/`lang`,
/// `published_at`/`date`/`created_at`, `owner_reply`/`reply`, `owner_reply_at`/`reply_at`.
/// Without an id, one is derived from author, date and text so re-importing is idempotent.
///
/// A date without a time is the start of that day on `zone`'s clock (the watch's), so a
/// review dated 23 November counts on the 23rd there, not on the evening before.
pub fn mention_from_map(map: &Map<String, Value>, zone: Tz) -> Result<Mention, String> {
    let text = string(map, TEXT).unwrap_or_default();
    let title = string(map, TITLE);
    let (as_written, reading) =
        time(map, PUBLISHED_AT)?.ok_or("published_at (or date) is missing")?;
    let published_at = on_the_clock(as_written, reading, zone);
    let rating = match integer(map, RATING)? {
        None => None,
        Some(r) if (1..=5).contains(&r) => Some(r as u8),
        Some(r) => return Err(format!("rating {r} is outside 1-5")),
    };
    let author = string(map, AUTHOR);
    let external_id = match string(map, ID) {
        Some(id) => id,
        None => {
            let key = format!(
                "{}|{}|{}",
                author.as_deref().unwrap_or(""),
                // As written (a date alone at midnight UTC), as earlier versions derived
                // it: re-importing a file gives its records the ids they have.
                as_written.timestamp(),
                text
            );
            format!(
                "derived:{}",
                crate::domain::content_hash(title.as_deref(), &key)
            )
        }
    };
    let count = |names: &[&str]| -> Result<i64, String> {
        let v = integer(map, names)?.unwrap_or(0);
        if v < 0 {
            return Err(format!("{} cannot be negative", names[0]));
        }
        Ok(v)
    };
    let m = Mention {
        external_id,
        url: string(map, URL),
        author,
        title,
        text,
        rating,
        engagement: Engagement {
            likes: count(LIKES)?,
            replies: count(REPLIES)?,
            reposts: count(REPOSTS)?,
        },
        language: string(map, LANGUAGE),
        published_at,
        owner_reply: string(map, OWNER_REPLY),
        owner_reply_at: time(map, OWNER_REPLY_AT)?
            .map(|(t, reading)| on_the_clock(t, reading, zone)),
        extra: field(map, EXTRA).cloned(),
    };
    m.validate()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_keeps_good_rows_and_reports_bad_ones_by_line() {
        let csv = "id,author,rating,date,text\n\
                   r1,Ann,5,2026-11-01,Lovely kettle\n\
                   r2,Bob,9,2026-11-02,Broke after a week\n\
                   r3,Cy,2,yesterday,Meh\n\
                   r4,Di,1,2026-11-03T10:00:00Z,\"Leaks, \"\"badly\"\"\"\n";
        let p = parse_reader(csv.as_bytes(), Format::Csv, chrono_tz::UTC);
        assert_eq!(p.mentions.len(), 2);
        assert_eq!(p.mentions[1].text, "Leaks, \"badly\"");
        assert_eq!(p.bad.len(), 2);
        assert_eq!(p.bad[0].line, 3);
        assert!(p.bad[0].error.contains("rating 9"));
        assert_eq!(p.bad[1].line, 4);
        assert!(p.bad[1].error.contains("yesterday"));
    }

    #[test]
    fn jsonl_reports_malformed_lines() {
        let data = "{\"id\":\"a\",\"text\":\"ok\",\"published_at\":\"2026-11-01T00:00:00Z\"}\n\
                    {\"id\":\"b\",\"text\":\n\
                    \n\
                    [1,2]\n\
                    {\"text\":\"no id\",\"date\":1763000000,\"likes\":\"3\"}\n";
        let p = parse_reader(data.as_bytes(), Format::Jsonl, chrono_tz::UTC);
        assert_eq!(p.mentions.len(), 2);
        assert!(p.mentions[1].external_id.starts_with("derived:"));
        assert_eq!(p.mentions[1].engagement.likes, 3);
        let lines: Vec<u64> = p.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![2, 4]);
    }

    #[test]
    fn derived_ids_are_stable() {
        let data = "{\"text\":\"same\",\"date\":\"2026-11-01\",\"author\":\"x\"}\n";
        let a = parse_reader(data.as_bytes(), Format::Jsonl, chrono_tz::UTC);
        let b = parse_reader(data.as_bytes(), Format::Jsonl, chrono_tz::UTC);
        assert_eq!(a.mentions[0].external_id, b.mentions[0].external_id);
    }

    fn jsonl_dates(dates: &[&str]) -> Parsed {
        let data: String = dates
            .iter()
            .enumerate()
            .map(|(i, d)| format!("{{\"id\":\"m{i}\",\"text\":\"t\",\"date\":{d}}}\n"))
            .collect();
        parse_reader(data.as_bytes(), Format::Jsonl, chrono_tz::UTC)
    }

    #[test]
    fn thirteen_digit_integers_are_milliseconds() {
        let p = jsonl_dates(&["1763000000000", "\"1763000000000\"", "1763000000"]);
        assert!(p.bad.is_empty(), "{:?}", p.bad);
        assert_eq!(p.mentions.len(), 3);
        for m in &p.mentions {
            assert_eq!(m.published_at.timestamp(), 1_763_000_000);
        }
    }

    #[test]
    fn implausible_dates_are_rejected_with_the_field_and_value() {
        let tomorrow_and_more = (Utc::now() + chrono::Duration::hours(30)).to_rfc3339();
        let in_an_hour = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let p = jsonl_dates(&[
            "20261103",
            "\"2026\"",
            "-99999999999",
            "1763000000000000",
            &format!("\"{tomorrow_and_more}\""),
            "\"1989-12-31\"",
            &format!("\"{in_an_hour}\""),
            "\"1990-01-01\"",
        ]);
        let lines: Vec<u64> = p.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6], "{:?}", p.bad);
        assert_eq!(p.mentions.len(), 2);
        assert_eq!(
            p.bad[0].error,
            "date `20261103` (read as Unix seconds): 1970-08-23 12:05 UTC is before 1990-01-01; \
             use a date like 2026-11-23T14:05:00Z"
        );
        assert!(p.bad[1]
            .error
            .starts_with("date `2026` (read as Unix seconds): 1970-01-01"));
        assert_eq!(p.bad[3].error, "date `1763000000000000` is not a Unix time");
        assert!(
            p.bad[4].error.contains("more than a day in the future"),
            "{:?}",
            p.bad[4]
        );
        assert!(p.bad[5]
            .error
            .starts_with("date `1989-12-31`: 1989-12-31 00:00 UTC is before"));
    }

    #[test]
    fn a_reply_date_is_checked_too() {
        let data = "{\"id\":\"a\",\"text\":\"t\",\"date\":\"2026-11-01\",\"reply_at\":2026}\n";
        let p = parse_reader(data.as_bytes(), Format::Jsonl, chrono_tz::UTC);
        assert!(
            p.bad[0]
                .error
                .starts_with("reply_at `2026` (read as Unix seconds)"),
            "{:?}",
            p.bad
        );
    }

    #[test]
    fn a_bare_year_is_not_a_since_date() {
        let now = Utc::now();
        let e = parse_plausible_time("2026", now).unwrap_err();
        assert!(
            e.contains("`2026` (read as Unix seconds): 1970-01-01"),
            "{e}"
        );
        assert!(parse_plausible_time("2026-11-01", now).is_ok());
        assert!(parse_plausible_time("yesterday", now)
            .unwrap_err()
            .contains("not a date"));
    }

    #[test]
    fn a_byte_order_mark_is_no_part_of_the_first_record() {
        let data = "\u{feff}{\"id\":\"a\",\"text\":\"first\",\"date\":\"2026-11-01\"}\n\
                    {\"id\":\"b\",\"text\":\"second\",\"date\":\"2026-11-02\"}\n";
        let p = parse_reader(data.as_bytes(), Format::Jsonl, chrono_tz::UTC);
        assert!(p.bad.is_empty(), "{:?}", p.bad);
        assert_eq!(p.mentions.len(), 2);
        let csv = "\u{feff}id,date,text\nr1,2026-11-01,first\n";
        let p = parse_reader(csv.as_bytes(), Format::Csv, chrono_tz::UTC);
        assert_eq!(p.mentions[0].external_id, "r1");
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn a_utf16_file_is_one_clear_problem() {
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("id,date,text\n".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let p = parse_reader(utf16.as_slice(), Format::Csv, chrono_tz::UTC);
        assert!(p.mentions.is_empty());
        assert_eq!(p.bad.len(), 1);
        assert!(p.bad[0].error.contains("UTF-16"), "{:?}", p.bad);
    }

    #[test]
    fn csv_lines_count_blank_lines_and_crlf() {
        let rows = [
            "id,date,rating,text",
            "r1,2026-11-01,9,bad rating",
            "",
            "r2,2026-11-02,5,\"two",
            "lines\"",
            "",
            "",
            "r3,2026-11-03,7,bad again",
            "r4,2026-11-04,1,fine",
            "r5,2026-11-05,1",
        ];
        for end in ["\n", "\r\n"] {
            let data = rows.join(end) + end;
            let p = parse_reader(data.as_bytes(), Format::Csv, chrono_tz::UTC);
            let lines: Vec<u64> = p.bad.iter().map(|b| b.line).collect();
            assert_eq!(lines, vec![2, 8, 10], "{end:?}: {:?}", p.bad);
            assert_eq!(p.mentions.len(), 2);
        }
    }

    #[test]
    fn a_date_alone_is_that_day_on_the_watch_s_clock_and_keeps_its_derived_id() {
        let data = "{\"author\":\"Ann\",\"date\":\"2026-11-23\",\"text\":\"ok\",\"reply\":\"thanks\",\"reply_at\":\"2026-11-24\"}\n\
                    {\"id\":\"r2\",\"date\":\"2026-11-23T14:05:00Z\",\"text\":\"ok\"}\n\
                    {\"id\":\"r3\",\"date\":\"2026-11-23 14:05\",\"text\":\"ok\"}\n";
        let utc = parse_reader(data.as_bytes(), Format::Jsonl, chrono_tz::UTC);
        let ny = parse_reader(data.as_bytes(), Format::Jsonl, chrono_tz::America::New_York);
        let tokyo = parse_reader(data.as_bytes(), Format::Jsonl, chrono_tz::Asia::Tokyo);
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(utc.mentions[0].published_at, t("2026-11-23T00:00:00Z"));
        // Midnight in New York (EST) and in Tokyo.
        assert_eq!(ny.mentions[0].published_at, t("2026-11-23T05:00:00Z"));
        assert_eq!(tokyo.mentions[0].published_at, t("2026-11-22T15:00:00Z"));
        assert_eq!(
            ny.mentions[0].owner_reply_at,
            Some(t("2026-11-24T05:00:00Z"))
        );
        // A record without an id keeps the id earlier versions derived for it, whatever
        // the zone, so a file imported before is not stored again.
        assert_eq!(utc.mentions[0].external_id, ny.mentions[0].external_id);
        assert_eq!(utc.mentions[0].external_id, tokyo.mentions[0].external_id);
        // Times are read as written (with a zone, or UTC without one).
        for p in [&utc, &ny, &tokyo] {
            assert_eq!(p.mentions[1].published_at, t("2026-11-23T14:05:00Z"));
            assert_eq!(p.mentions[2].published_at, t("2026-11-23T14:05:00Z"));
        }
    }

    #[test]
    fn unread_columns_and_other_delimiters_are_pointed_out() {
        let p = parse_reader(
            "id,date,text,Stars,sentiment,Notes\nr1,2026-11-01,ok,5,pos,x\n".as_bytes(),
            Format::Csv,
            chrono_tz::UTC,
        );
        assert_eq!(
            p.warnings,
            vec![
                "columns `sentiment`, `notes` not recognised and ignored \
                 (see the accepted field names in the README)"
            ]
        );
        let p = parse_reader(
            "id;date;text\nr1;2026-11-01;ok\n".as_bytes(),
            Format::Csv,
            chrono_tz::UTC,
        );
        assert_eq!(p.warnings.len(), 1);
        assert!(
            p.warnings[0].contains("separated by semicolons"),
            "{:?}",
            p.warnings
        );
        let p = parse_reader(
            "id\tdate\ttext\nr1\t2026-11-01\tok\n".as_bytes(),
            Format::Csv,
            chrono_tz::UTC,
        );
        assert!(
            p.warnings[0].contains("separated by tabs"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn repeated_ids_keep_the_last_and_are_counted() {
        let csv = "id,date,text\nr1,2026-11-01,old\nr2,2026-11-01,b\nr1,2026-11-02,new\nr1,2026-11-03,newest\n";
        let mut p = parse_reader(csv.as_bytes(), Format::Csv, chrono_tz::UTC);
        assert_eq!(p.keep_last_of_repeated(), 2);
        let texts: Vec<&str> = p.mentions.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, vec!["b", "newest"]);
    }
}
