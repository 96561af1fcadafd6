//! Configuration: one TOML file (default `config/zmot.toml`), overridable key by key
//! from the environment, validated at start with errors that name file, line and problem.
//!
//! Environment overrides: a variable named `ZMOT__` followed by the key path in capitals,
//! segments joined by a double underscore, replaces that key. Array elements are addressed
//! by index. Examples: `ZMOT__DATABASE__URL=postgres://...`,
//! `ZMOT__EMAIL__SMTP__HOST=mail.example.com`, `ZMOT__WATCH__0__SOURCE__1__ENABLED=false`.
//! Values are read as TOML (`false`, `42`, `["a", "b"]`) and otherwise as plain strings.
//! Secrets never live in the file: the SMTP password is read from the variable named by
//! `email.smtp.password_env` (default `ZMOT_SMTP_PASSWORD`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Prefix of the variables that override configuration keys.
pub const ENV_PREFIX: &str = "ZMOT__";
/// The configuration file used when `--config` is not given.
pub const DEFAULT_PATH: &str = "config/zmot.toml";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub general: General,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub email: Email,
    #[serde(default)]
    pub sentiment: SentimentSettings,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub server: Server,
    #[serde(default, rename = "watch")]
    pub watches: Vec<Watch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct General {
    /// IANA time zone for schedules and reports when a watch gives none.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// How many days of fetch runs and sent emails to keep (mentions are kept forever).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Fetches running at once, at most. Delivery, alert checks, digests and
    /// housekeeping have as many slots of their own, so they never wait behind fetches.
    #[serde(default = "default_max_concurrent_jobs")]
    pub max_concurrent_jobs: usize,
    /// A fetch taking longer than this is stopped and recorded as failed.
    #[serde(default = "default_job_timeout")]
    pub job_timeout_secs: u64,
    /// On stop, how long running jobs may take to finish.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
}

impl Default for General {
    fn default() -> Self {
        General {
            timezone: default_timezone(),
            retention_days: default_retention_days(),
            max_concurrent_jobs: default_max_concurrent_jobs(),
            job_timeout_secs: default_job_timeout(),
            shutdown_grace_secs: default_grace(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `sqlite://zmot.db` (embedded, created on first run) or `postgres://user@host/db`.
    #[serde(default = "default_database_url")]
    pub url: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: default_database_url(),
            max_connections: default_max_connections(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// The sender, as `Name <address>` or a bare address.
    #[serde(default = "default_from")]
    pub from: String,
    /// Where messages are written as `.eml` files when no SMTP server is configured.
    #[serde(default = "default_outbox_dir")]
    pub outbox_dir: PathBuf,
    /// The SMTP server; when absent, emails go to `outbox_dir`.
    #[serde(default)]
    pub smtp: Option<Smtp>,
}

impl Default for Email {
    fn default() -> Self {
        Email {
            from: default_from(),
            outbox_dir: default_outbox_dir(),
            smtp: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS (usually port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
    /// No encryption: only for a relay on the same machine or network.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    /// Defaults to 587 for starttls, 465 for tls, 25 for none.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable that holds the password.
    #[serde(default = "default_password_env")]
    pub password_env: String,
    /// The longest one recipient's send may take, from connecting to the server's
    /// acceptance; at most `notify::MAX_SMTP_TIMEOUT_SECS`, within the email's lease.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
}

impl Smtp {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        })
    }

    /// The password from the environment, if set. Never logged.
    pub fn password(&self) -> Option<String> {
        std::env::var(&self.password_env)
            .ok()
            .filter(|p| !p.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The MiniLM encoder with its trained head (needs the model files).
    #[default]
    Minilm,
    /// The MiniLM encoder, frozen, with the head trained over it (ignores the LoRA
    /// adapter).
    #[serde(rename = "minilm-head")]
    MinilmHead,
    /// The fine-tuned MiniLM with its score fused with the lexicon's (`w · model + (1 -
    /// w) · lexicon`, w learnt on the dev set, in models/lora.json).
    #[serde(rename = "minilm-fused")]
    MinilmFused,
    /// Word and emoji lexicon only: no model files, very fast, less accurate.
    Lexicon,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentimentSettings {
    #[serde(default)]
    pub model: ModelKind,
    /// Folder with the model files.
    #[serde(default = "default_models_dir")]
    pub models_dir: PathBuf,
    /// Fetch missing model files with `scripts/fetch-models.sh` at start.
    #[serde(default = "default_true")]
    pub fetch_missing: bool,
}

impl Default for SentimentSettings {
    fn default() -> Self {
        SentimentSettings {
            model: ModelKind::default(),
            models_dir: default_models_dir(),
            fetch_missing: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// A page where site owners can learn about this monitor; sent in the User-Agent.
    #[serde(default = "default_contact_url")]
    pub contact_url: String,
    #[serde(default = "default_http_timeout")]
    pub timeout_secs: u64,
    /// Answers larger than this are refused.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Requests per second to one host, at most.
    #[serde(default = "default_per_host_rate")]
    pub per_host_rate: f64,
    /// How far back the first fetch of a new source looks.
    #[serde(default = "default_lookback_days")]
    pub first_run_lookback_days: u32,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            contact_url: default_contact_url(),
            timeout_secs: default_http_timeout(),
            max_body_bytes: default_max_body_bytes(),
            per_host_rate: default_per_host_rate(),
            first_run_lookback_days: default_lookback_days(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Address of the health, metrics, API and dashboard server.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Name of the environment variable holding the API token.
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// Reverse proxies in front of this server, as addresses or CIDR ranges
    /// (`127.0.0.1`, `10.0.0.0/8`). Only a connection from one of them may name the
    /// client in `X-Forwarded-For`; empty, the connection's own address is the client's.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header the trusted proxies name the client in: `X-Forwarded-For` (nginx,
    /// Caddy, most) or the standard `Forwarded` (RFC 7239). Only the one configured is
    /// read: a proxy passes the other on as the client wrote it.
    #[serde(default)]
    pub client_address_header: ClientAddressHeader,
}

/// Where a trusted reverse proxy names the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientAddressHeader {
    #[default]
    #[serde(rename = "X-Forwarded-For", alias = "x-forwarded-for")]
    XForwardedFor,
    #[serde(rename = "Forwarded", alias = "forwarded")]
    Forwarded,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: default_listen(),
            token_env: default_token_env(),
            trusted_proxies: Vec::new(),
            client_address_header: ClientAddressHeader::default(),
        }
    }
}

impl Server {
    /// The trusted proxies as ranges. Entries that do not parse are left out (trusting
    /// fewer is the safe side); configuration loading has refused them already.
    pub fn trusted_proxy_ranges(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|entry| parse_trusted_proxy(entry).ok())
            .collect()
    }
}

/// Parses a `server.trusted_proxies` entry: an IP address (a range of one) or a CIDR
/// range, with a readable error.
pub fn parse_trusted_proxy(entry: &str) -> Result<ipnet::IpNet, String> {
    let entry = entry.trim();
    if let Ok(addr) = entry.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(addr.to_canonical()));
    }
    let range = entry.parse::<ipnet::IpNet>().map_err(|_| {
        format!(
            "`{entry}` is not an IP address or a CIDR range (for example 127.0.0.1, \
             10.0.0.0/8 or fd00::/8)"
        )
    })?;
    // `10.0.0.1/8` is most likely a slip for one of two different things; trusting a
    // whole range by mistake is the costly one, so it is asked for, not guessed.
    if range != range.trunc() {
        return Err(format!(
            "`{entry}` has address bits set past its /{} prefix: write {} for the range \
             or {} for the one address",
            range.prefix_len(),
            range.trunc(),
            range.addr()
        ));
    }
    Ok(range)
}

/// One brand, product or app being monitored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    pub name: String,
    /// Watches sharing a group name are compared with each other in digests.
    #[serde(default)]
    pub competitors: Option<String>,
    /// Mentions must contain one of these (case-insensitive) when the source is a search
    /// that can bring unrelated items; empty keeps everything.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Language tags to keep ("en", "de"); empty keeps every language.
    #[serde(default)]
    pub languages: Vec<String>,
    /// Who receives this watch's alerts and digests.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// IANA time zone of this watch's schedules; defaults to `general.timezone`.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default, rename = "source")]
    pub sources: Vec<Source>,
    /// Alert rules of this watch; every rule is on with the defaults below.
    #[serde(default)]
    pub alerts: AlertSettings,
    /// The weekly digest of this watch.
    #[serde(default)]
    pub digest: DigestSettings,
}

/// The weekly trend digest (`[watch.digest]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestSettings {
    pub enabled: bool,
    /// Cron expression in the watch's time zone; default Monday 08:00.
    pub schedule: String,
    /// Who receives it; empty means the watch's recipients.
    pub recipients: Vec<String>,
    /// Keywords added to the customer-journey stages (or new stages), e.g.
    /// `journey = { delivery_setup = ["courier"], onboarding = ["tutorial"] }`.
    pub journey: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for DigestSettings {
    fn default() -> Self {
        DigestSettings {
            enabled: true,
            schedule: "0 8 * * Mon".into(),
            recipients: Vec::new(),
            journey: Default::default(),
        }
    }
}

/// How sensitive the negative-spike test is: the probability of a count at least this
/// high under the baseline below which the spike alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// p < 0.0001: only storms.
    Low,
    /// p < 0.001.
    #[default]
    Normal,
    /// p < 0.01: early warning, more false alarms.
    High,
}

impl Sensitivity {
    pub fn alpha(self) -> f64 {
        match self {
            Sensitivity::Low => 1e-4,
            Sensitivity::Normal => 1e-3,
            Sensitivity::High => 1e-2,
        }
    }
}

/// Alert rules and their thresholds, per watch (`[watch.alerts]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Rules switched off by name: buyer_view_rating, negative_spike, severe_mention,
    /// sentiment_drop, keyword.
    pub disabled: Vec<String>,
    /// Reviews in the buyer's view: the most recent N rated reviews of a source.
    pub buyer_view_size: usize,
    /// The buyer's view is judged only once it holds this many reviews.
    pub buyer_view_min_reviews: usize,
    /// Alert when the buyer's-view average falls below this many stars.
    pub buyer_view_threshold: f64,
    /// The spike window, in hours, and the baseline before it, in days.
    pub spike_window_hours: u32,
    pub spike_baseline_days: u32,
    /// A spike needs at least this many negative mentions in the window.
    pub spike_min_count: u32,
    pub spike_sensitivity: Sensitivity,
    /// A severe mention: at most this many stars, or a sentiment score at or under
    /// `severe_score`...
    pub severe_max_stars: u8,
    pub severe_score: f32,
    /// ...and visible: at least this much engagement, or on a source whose weight is at
    /// least `severe_min_source_weight`.
    pub severe_min_engagement: i64,
    pub severe_min_source_weight: f32,
    /// Source weights by kind, over the defaults (review stores 1.0, feeds 0.6, Hacker
    /// News 0.5, Mastodon and Bluesky 0.4, imports 0.5).
    pub source_weights: std::collections::BTreeMap<String, f32>,
    /// Severe and keyword mentions count while published within this many days.
    pub recent_days: u32,
    /// Alert when this week's mean sentiment is more than this below the four weeks before.
    pub sentiment_drop: f32,
    /// Mentions needed this week for the drop to count.
    pub sentiment_drop_min_mentions: u32,
    /// Crisis terms for the keyword rule (case-insensitive, whole words).
    pub crisis_terms: Vec<String>,
    /// After a condition was notified, the same condition is not notified again for
    /// this many hours, even if it clears and comes back.
    pub cooldown_hours: u32,
    /// A condition that persists is reminded at most this often (at least 24 hours).
    pub reminder_hours: u32,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            disabled: Vec::new(),
            buyer_view_size: 10,
            buyer_view_min_reviews: 5,
            buyer_view_threshold: 4.3,
            spike_window_hours: 24,
            spike_baseline_days: 28,
            spike_min_count: 5,
            spike_sensitivity: Sensitivity::Normal,
            severe_max_stars: 2,
            severe_score: -0.75,
            severe_min_engagement: 10,
            severe_min_source_weight: 0.8,
            source_weights: Default::default(),
            recent_days: 3,
            sentiment_drop: 0.2,
            sentiment_drop_min_mentions: 10,
            crisis_terms: [
                "refund",
                "scam",
                "lawsuit",
                "recall",
                "data breach",
                "fraud",
                "class action",
                "hacked",
                "unsafe",
                "fire hazard",
            ]
            .map(String::from)
            .to_vec(),
            cooldown_hours: 24,
            reminder_hours: 24,
        }
    }
}

/// Every alert rule, by name.
pub const ALERT_RULES: &[&str] = &[
    "buyer_view_rating",
    "negative_spike",
    "severe_mention",
    "sentiment_drop",
    "keyword",
];

impl AlertSettings {
    pub fn enabled(&self, rule: &str) -> bool {
        !self.disabled.iter().any(|d| d == rule)
    }

    /// How much a source kind counts for visibility.
    pub fn source_weight(&self, kind: &str) -> f32 {
        if let Some(w) = self.source_weights.get(kind) {
            return *w;
        }
        match kind {
            "appstore" | "googleplay" | "page" => 1.0,
            "feed" => 0.6,
            "hackernews" => 0.5,
            "mastodon" | "bluesky" => 0.4,
            _ => 0.5,
        }
    }

    /// What is wrong with these settings, if anything.
    /// Each problem with the key (under `alerts`) it is about, so that it can be located.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        for d in &self.disabled {
            if !ALERT_RULES.contains(&d.as_str()) {
                p.push((
                    "disabled",
                    format!(
                        "unknown rule `{d}` in alerts.disabled; rules: {}",
                        ALERT_RULES.join(", ")
                    ),
                ));
            }
        }
        if self.buyer_view_size == 0 {
            p.push((
                "buyer_view_size",
                "alerts.buyer_view_size must be at least 1".into(),
            ));
        }
        if !(1.0..=5.0).contains(&self.buyer_view_threshold) {
            p.push((
                "buyer_view_threshold",
                "alerts.buyer_view_threshold must be between 1 and 5 stars".into(),
            ));
        }
        if self.spike_window_hours == 0 {
            p.push((
                "spike_window_hours",
                "alerts.spike_window_hours must be positive".into(),
            ));
        }
        if self.spike_baseline_days == 0 {
            p.push((
                "spike_baseline_days",
                "alerts.spike_baseline_days must be positive".into(),
            ));
        }
        if !(1..=5).contains(&self.severe_max_stars) {
            p.push((
                "severe_max_stars",
                "alerts.severe_max_stars must be between 1 and 5".into(),
            ));
        }
        if !(-1.0..=1.0).contains(&self.severe_score) {
            p.push((
                "severe_score",
                "alerts.severe_score must be between -1 and 1".into(),
            ));
        }
        if self.reminder_hours < 24 {
            p.push((
                "reminder_hours",
                "alerts.reminder_hours must be at least 24 (one reminder a day at most)".into(),
            ));
        }
        p
    }
}

/// One place mentions come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Unique within its watch.
    pub name: String,
    /// appstore, googleplay, feed, mastodon, bluesky, hackernews, page.
    pub kind: String,
    /// Cron expression (5 fields `min hour day month weekday`, or 6 with seconds first).
    /// Default: hourly, at a minute derived from the watch and source names.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Settings of this kind of source (see the README).
    #[serde(default)]
    pub params: toml::Table,
}

impl Watch {
    pub fn timezone<'a>(&'a self, general: &'a General) -> &'a str {
        self.timezone.as_deref().unwrap_or(&general.timezone)
    }
}

impl Source {
    /// The cron expression in the 6-field form the scheduler uses.
    pub fn cron_expression(&self, watch: &str) -> String {
        match &self.schedule {
            Some(s) => normalise_cron(s),
            None => {
                // Spread sources over the hour so they do not all fire at once; derived
                // from the names so it stays the same across restarts and workers.
                let h = crate::domain::content_hash(Some(watch), &self.name);
                let n = u32::from_str_radix(&h[..8], 16).unwrap_or(0);
                format!("{} {} * * * *", n % 60, (n / 60) % 60)
            }
        }
    }
}

/// Accepts the 5-field crontab form by adding a seconds field, gives weekday numbers
/// their crontab meaning in both forms, and follows crontab's rule for days: when both
/// the day of the month and the weekday are restricted, a day that matches either runs
/// (`0 8 1 * Mon` is the 1st and every Monday). The cron crate asks for both, so such an
/// expression becomes two, one per day field, joined by ` | ` ([`Schedule`] merges
/// their runs): `0 0 8 1 * * | 0 0 8 * * MON`.
pub fn normalise_cron(expr: &str) -> String {
    let mut fields: Vec<String> = expr.split_whitespace().map(str::to_string).collect();
    if fields.len() == 5 {
        fields.insert(0, "0".into());
    }
    if !(6..=7).contains(&fields.len()) {
        // The cron crate explains a wrong number of fields.
        return expr.trim().to_string();
    }
    // As in crontab, a day field starting with `*` (`*`, `*/2`) is no restriction; `?`
    // is the cron crate's "any". Decided on the fields as written, before the weekday
    // is rewritten below (`*/2` becomes a list of days, `0-6` becomes `*`).
    let restricted = |f: &str| !(f.starts_with('*') || f == "?");
    let either_day = restricted(&fields[3]) && restricted(&fields[5]);
    // Crontab numbers weekdays from Sunday as 0 (and 7), so 1 is Monday; the cron crate
    // numbers them 1-7 from Sunday. Names mean the same to both, so the weekday field is
    // handed over as names.
    fields[5] = weekday_names(&fields[5]);
    if !either_day {
        return fields.join(" ");
    }
    let any_day = |i: usize| {
        let mut f = fields.clone();
        f[i] = "*".into();
        f.join(" ")
    };
    format!("{} | {}", any_day(5), any_day(3))
}

const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A crontab weekday field (`1-5`, `5-7`, `0,3`, `*/2`, `Mon-Fri`) as the weekday names it
/// selects, in runs (`MON-FRI`, `SUN,FRI-SAT`). A field it cannot read is returned as it
/// is, for the cron crate to explain.
fn weekday_names(field: &str) -> String {
    if field == "*" || field == "?" {
        return field.to_string();
    }
    let mut days = [false; 7];
    for part in field.split(',') {
        match weekday_part(part) {
            Some(selected) => selected.into_iter().for_each(|d| days[d] = true),
            None => return field.to_string(),
        }
    }
    if days.iter().all(|d| *d) {
        return "*".into();
    }
    let mut runs: Vec<String> = Vec::new();
    let mut d = 0;
    while d < 7 {
        if !days[d] {
            d += 1;
            continue;
        }
        let start = d;
        while d + 1 < 7 && days[d + 1] {
            d += 1;
        }
        runs.push(if start == d {
            WEEKDAYS[d].to_string()
        } else {
            format!("{}-{}", WEEKDAYS[start], WEEKDAYS[d])
        });
        d += 1;
    }
    runs.join(",")
}

/// The days (0 = Sunday) one comma-separated part of a crontab weekday field selects.
fn weekday_part(part: &str) -> Option<Vec<usize>> {
    // A weekday as a crontab number 0-7 (7 is Sunday again) or a name.
    let day = |s: &str| -> Option<usize> {
        match s.parse::<usize>() {
            Ok(n) if n <= 7 => Some(n),
            Ok(_) => None,
            Err(_) => {
                let s = s.to_ascii_lowercase();
                [
                    "sunday",
                    "monday",
                    "tuesday",
                    "wednesday",
                    "thursday",
                    "friday",
                    "saturday",
                ]
                .iter()
                .position(|name| s.len() >= 3 && name.starts_with(&s))
            }
        }
    };
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => (r, s.parse::<usize>().ok().filter(|s| *s > 0)?),
        None => (part, 1),
    };
    let (first, last) = if range == "*" {
        (0, 6)
    } else if let Some((a, b)) = range.split_once('-') {
        // A range may end on 7 (`5-7` is Friday to Sunday) or on the name SUN.
        let last = match day(b)? {
            0 => 7,
            n => n,
        };
        (day(a)?, last)
    } else if part.contains('/') {
        // `1/2`: from Monday, every other day, to the end of the week.
        (day(range)?, 6)
    } else {
        let d = day(range)?;
        (d, d)
    };
    (first <= last).then(|| (first..=last).step_by(step).map(|d| d % 7).collect())
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_retention_days() -> u32 {
    180
}
fn default_max_concurrent_jobs() -> usize {
    4
}
fn default_job_timeout() -> u64 {
    300
}
fn default_grace() -> u64 {
    30
}
fn default_database_url() -> String {
    "sqlite://zmot.db".into()
}
fn default_max_connections() -> u32 {
    5
}
fn default_from() -> String {
    "zmot <zmot@localhost>".into()
}
fn default_outbox_dir() -> PathBuf {
    PathBuf::from("outbox")
}
fn default_password_env() -> String {
    "ZMOT_SMTP_PASSWORD".into()
}
fn default_smtp_timeout() -> u64 {
    30
}
fn default_models_dir() -> PathBuf {
    PathBuf::from("models")
}
fn default_true() -> bool {
    true
}
fn default_contact_url() -> String {
    "https://github.com/zmot/zmot".into()
}
fn default_http_timeout() -> u64 {
    30
}
fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_per_host_rate() -> f64 {
    1.0
}
fn default_lookback_days() -> u32 {
    30
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_token_env() -> String {
    "ZMOT_API_TOKEN".into()
}

/// One thing wrong with the configuration, located as precisely as we can.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// File and line (`config/zmot.toml:12`) or the environment variable responsible.
    pub place: String,
    /// Dotted key path, when known (`watch[0].source[1].schedule`).
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}: {}: {}", self.place, k, self.message),
            None => write!(f, "{}: {}", self.place, self.message),
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "the configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A path into the TOML tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Line (1-based) and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

/// Finds where a key path is written in the file, for error messages.
fn locate(doc: &toml_edit::ImDocument<String>, path: &[Seg]) -> Option<usize> {
    let mut item: &toml_edit::Item = doc.as_item();
    let mut best = None;
    for seg in path {
        match seg {
            Seg::Key(k) => {
                let table = item.as_table_like()?;
                let (key, next) = table.get_key_value(k)?;
                best = key.span().map(|r| r.start).or(best);
                item = next;
            }
            Seg::Index(i) => {
                match item {
                    toml_edit::Item::ArrayOfTables(a) => {
                        let t = a.get(*i)?;
                        best = t.span().map(|r| r.start).or(best);
                        // Continue inside the table.
                        return locate_in_table(
                            t,
                            &path[path.iter().position(|s| s == seg)? + 1..],
                        )
                        .or(best);
                    }
                    toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
                        let v = a.get(*i)?;
                        best = v.span().map(|r| r.start).or(best);
                        return best;
                    }
                    _ => return best,
                }
            }
        }
    }
    best
}

fn locate_in_table(table: &toml_edit::Table, rest: &[Seg]) -> Option<usize> {
    let mut best = table.span().map(|r| r.start);
    let mut item: Option<&toml_edit::Item> = None;
    for (n, seg) in rest.iter().enumerate() {
        match seg {
            Seg::Key(k) => {
                let tl: &dyn toml_edit::TableLike = match item {
                    None => table,
                    Some(i) => i.as_table_like()?,
                };
                let (key, next) = tl.get_key_value(k)?;
                best = key.span().map(|r| r.start).or(best);
                item = Some(next);
            }
            Seg::Index(i) => match item {
                Some(toml_edit::Item::ArrayOfTables(a)) => {
                    let t = a.get(*i)?;
                    return locate_in_table(t, &rest[n + 1..]).or(best);
                }
                Some(toml_edit::Item::Value(toml_edit::Value::Array(a))) => {
                    return a.get(*i).and_then(|v| v.span()).map(|r| r.start).or(best);
                }
                _ => return best,
            },
        }
    }
    best
}

/// Reads, overrides from the environment and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem {
            place: path.display().to_string(),
            key: None,
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "file not found (create one with `zmot init`)".into()
            } else {
                format!("cannot read: {e}")
            },
        }],
    })?;
    parse(&text, &path.display().to_string(), &env_overrides())
}

/// The configuration of a command run without a file (`zmot analyze`, `eval`, `train`):
/// every default, then the environment's overrides, which apply with or without a file.
pub fn defaults_with_env() -> Result<Config, ConfigError> {
    parse("", "(no configuration file)", &env_overrides())
}

/// The `ZMOT__` variables of this process.
fn env_overrides() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect()
}

/// Parses configuration text; `env` holds the override variables to apply.
pub fn parse(text: &str, file: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let fail = |problems| Err(ConfigError { problems });
    // Pass 1: the file alone, so syntax and type errors point at its lines.
    let doc = match toml_edit::ImDocument::parse(text.to_string()) {
        Ok(d) => d,
        Err(e) => {
            let (line, col) = line_col(text, e.span().map(|r| r.start).unwrap_or(0));
            return fail(vec![Problem {
                place: format!("{file}:{line}:{col}"),
                key: None,
                message: e.message().trim().to_string(),
            }]);
        }
    };
    if let Err(e) = toml::from_str::<Config>(text) {
        let place = match e.span() {
            Some(r) => {
                let (line, col) = line_col(text, r.start);
                format!("{file}:{line}:{col}")
            }
            None => file.to_string(),
        };
        return fail(vec![Problem {
            place,
            key: None,
            message: e.message().trim().to_string(),
        }]);
    }

    // Pass 2: apply environment overrides and parse again.
    let mut overridden = text.to_string();
    let mut env_paths: BTreeMap<String, String> = BTreeMap::new();
    if !env.is_empty() {
        let mut mutable: toml_edit::DocumentMut = text.parse().expect("parsed above");
        let mut problems = Vec::new();
        for (name, value) in env {
            let path = env_path(name);
            if path.is_empty() {
                continue;
            }
            match set_path(mutable.as_table_mut(), &path, value) {
                Ok(()) => {
                    env_paths.insert(path_string(&path), name.clone());
                }
                Err(msg) => problems.push(Problem {
                    place: format!("environment variable {name}"),
                    key: Some(path_string(&path)),
                    message: msg,
                }),
            }
        }
        if !problems.is_empty() {
            return fail(problems);
        }
        overridden = mutable.to_string();
    }
    let config: Config = match toml::from_str(&overridden) {
        Ok(c) => c,
        Err(e) => return fail(env_type_problems(text, env, e.message())),
    };

    // Pass 3: meaning, located in the file (or at the variable that set the value).
    let problems: Vec<Problem> = validate(&config)
        .into_iter()
        .map(|(path, message)| {
            let key = path_string(&path);
            // The variable that set the key, or one that set a setting inside it that the
            // problem names (an unknown `params` setting is reported on `params`).
            let names_setting = |p: &str| {
                sets_key(&key, p)
                    && p.rsplit('.')
                        .next()
                        .is_some_and(|last| message.contains(&format!("`{last}`")))
            };
            let place = env_paths
                .iter()
                .find(|(p, _)| sets_key(p, &key) || names_setting(p))
                .map(|(_, var)| format!("environment variable {var}"))
                .unwrap_or_else(|| match locate(&doc, &path) {
                    Some(off) => format!("{file}:{}", line_col(text, off).0),
                    None => format!("{file} (default value)"),
                });
            Problem {
                place,
                key: Some(key),
                message,
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(config)
    } else {
        fail(problems)
    }
}

/// Whether a variable setting `set` gave the value at `key`: the same key, or one inside
/// it (a variable setting `watch[0].recipients` gave `watch[0].recipients[1]`). A plain
/// prefix is not enough: `watch[1]` is no part of `watch[10]`.
fn sets_key(set: &str, key: &str) -> bool {
    key.strip_prefix(set)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Which variables give values of the wrong type: each is applied alone to the file
/// (which parsed by itself), so the problem names the variable and its key.
fn env_type_problems(text: &str, env: &[(String, String)], combined: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (name, value) in env {
        let path = env_path(name);
        if path.is_empty() {
            continue;
        }
        let mut doc: toml_edit::DocumentMut = text.parse().expect("parsed before");
        if set_path(doc.as_table_mut(), &path, value).is_err() {
            continue;
        }
        if let Err(e) = toml::from_str::<Config>(&doc.to_string()) {
            problems.push(Problem {
                place: format!("environment variable {name}"),
                key: Some(path_string(&path)),
                message: e.message().trim().to_string(),
            });
        }
    }
    if problems.is_empty() {
        // Only the variables together are wrong; name them all.
        let names: Vec<_> = env.iter().map(|(n, _)| n.as_str()).collect();
        problems.push(Problem {
            place: format!("environment ({})", names.join(", ")),
            key: None,
            message: combined.trim().to_string(),
        });
    }
    problems
}

fn env_path(name: &str) -> Vec<Seg> {
    name.strip_prefix(ENV_PREFIX)
        .unwrap_or("")
        .split("__")
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<usize>() {
            Ok(i) => Seg::Index(i),
            Err(_) => Seg::Key(s.to_ascii_lowercase()),
        })
        .collect()
}

fn env_value(raw: &str) -> toml_edit::Value {
    raw.parse::<toml_edit::Value>()
        .ok()
        .filter(|v| !v.is_datetime())
        .unwrap_or_else(|| toml_edit::Value::from(raw))
}

/// Sets the value at `path` in a table, a section written `[a.b]` or inline as
/// `b = { ... }` (as the starter configuration writes `params`).
fn set_path(table: &mut dyn toml_edit::TableLike, path: &[Seg], raw: &str) -> Result<(), String> {
    let (first, rest) = path.split_first().ok_or("empty key path")?;
    let Seg::Key(key) = first else {
        return Err("a key path cannot start with an index".into());
    };
    if rest.is_empty() {
        table.insert(key, toml_edit::Item::Value(env_value(raw)));
        return Ok(());
    }
    if let Seg::Index(i) = &rest[0] {
        let item = table
            .get_mut(key)
            .ok_or_else(|| format!("there is no list `{key}` to index"))?;
        return match item {
            toml_edit::Item::ArrayOfTables(a) => {
                let len = a.len();
                let t = a
                    .get_mut(*i)
                    .ok_or_else(|| format!("`{key}` has {len} entries, no index {i}"))?;
                set_path(t, &rest[1..], raw)
            }
            toml_edit::Item::Value(toml_edit::Value::Array(a)) if rest.len() == 1 => {
                let len = a.len();
                if *i >= len {
                    return Err(format!("`{key}` has {len} entries, no index {i}"));
                }
                a.replace(*i, env_value(raw));
                Ok(())
            }
            _ => Err(format!("`{key}` is not a list")),
        };
    }
    if !table.contains_key(key) {
        // In an inline table this becomes an inline table too.
        table.insert(key, toml_edit::Item::Table(toml_edit::Table::new()));
    }
    match table.get_mut(key).and_then(|item| item.as_table_like_mut()) {
        Some(t) => set_path(t, rest, raw),
        None => Err(format!("`{key}` is not a section")),
    }
}

/// Checks what types alone cannot: schedules, time zones, addresses, names, URLs.
fn validate(c: &Config) -> Vec<(Vec<Seg>, String)> {
    let mut out = Vec::new();
    let k = |s: &str| Seg::Key(s.to_string());
    if let Err(e) = parse_timezone(&c.general.timezone) {
        out.push((vec![k("general"), k("timezone")], e));
    }
    let url = c.database.url.as_str();
    if let Err(e) = check_database_url(url) {
        out.push((vec![k("database"), k("url")], e));
    }
    if c.general.max_concurrent_jobs == 0 {
        out.push((
            vec![k("general"), k("max_concurrent_jobs")],
            "must be at least 1".into(),
        ));
    }
    if c.general.job_timeout_secs == 0 {
        out.push((
            vec![k("general"), k("job_timeout_secs")],
            "must be at least 1".into(),
        ));
    }
    if c.database.max_connections == 0 {
        out.push((
            vec![k("database"), k("max_connections")],
            "must be at least 1".into(),
        ));
    }
    if let Err(e) = c.email.from.parse::<lettre::message::Mailbox>() {
        out.push((
            vec![k("email"), k("from")],
            format!("`{}` is not an email address: {e}", c.email.from),
        ));
    }
    if let Some(smtp) = &c.email.smtp {
        if smtp.host.trim().is_empty() {
            out.push((vec![k("email"), k("smtp"), k("host")], "is empty".into()));
        }
        let most = crate::notify::MAX_SMTP_TIMEOUT_SECS;
        if !(1..=most).contains(&smtp.timeout_secs) {
            out.push((
                vec![k("email"), k("smtp"), k("timeout_secs")],
                format!(
                    "must be between 1 and {most} seconds: a send must end within the \
                     email's {}-minute lease, or another worker may send it again",
                    crate::notify::EMAIL_LEASE_MS / 60_000
                ),
            ));
        }
        if smtp.password_env.trim().is_empty() {
            out.push((
                vec![k("email"), k("smtp"), k("password_env")],
                "must name an environment variable".into(),
            ));
        }
    }
    if c.server.listen.parse::<std::net::SocketAddr>().is_err() {
        out.push((
            vec![k("server"), k("listen")],
            format!(
                "`{}` is not an address like 127.0.0.1:8080",
                c.server.listen
            ),
        ));
    }
    for (i, entry) in c.server.trusted_proxies.iter().enumerate() {
        if let Err(e) = parse_trusted_proxy(entry) {
            out.push((vec![k("server"), k("trusted_proxies"), Seg::Index(i)], e));
        }
    }
    if c.http.per_host_rate.is_nan() || c.http.per_host_rate <= 0.0 {
        out.push((
            vec![k("http"), k("per_host_rate")],
            "must be above 0".into(),
        ));
    }
    let body_range = crate::sources::http::MAX_BODY_BYTES_RANGE;
    if !body_range.contains(&c.http.max_body_bytes) {
        out.push((
            vec![k("http"), k("max_body_bytes")],
            format!(
                "must be between {} and {}",
                body_range.start(),
                body_range.end()
            ),
        ));
    }
    if url::Url::parse(&c.http.contact_url).is_err() {
        out.push((
            vec![k("http"), k("contact_url")],
            format!("`{}` is not a URL", c.http.contact_url),
        ));
    }

    let mut names = std::collections::HashSet::new();
    for (wi, w) in c.watches.iter().enumerate() {
        let wp = |key: &str| vec![k("watch"), Seg::Index(wi), k(key)];
        if w.name.trim().is_empty() {
            out.push((wp("name"), "is empty".into()));
        } else if !names.insert(w.name.to_lowercase()) {
            out.push((
                wp("name"),
                format!("another watch is already named `{}`", w.name),
            ));
        }
        if let Some(tz) = &w.timezone {
            if let Err(e) = parse_timezone(tz) {
                out.push((wp("timezone"), e));
            }
        }
        for (key, problem) in w.alerts.problems() {
            out.push((
                vec![k("watch"), Seg::Index(wi), k("alerts"), k(key)],
                problem,
            ));
        }
        if let Err(e) = parse_schedule(&w.digest.schedule) {
            out.push((
                vec![k("watch"), Seg::Index(wi), k("digest"), k("schedule")],
                e,
            ));
        }
        let lists = [
            (
                vec![k("watch"), Seg::Index(wi), k("recipients")],
                &w.recipients,
            ),
            (
                vec![k("watch"), Seg::Index(wi), k("digest"), k("recipients")],
                &w.digest.recipients,
            ),
        ];
        for (path, list) in lists {
            for (ri, r) in list.iter().enumerate() {
                if let Err(e) = r.parse::<lettre::message::Mailbox>() {
                    let mut at = path.clone();
                    at.push(Seg::Index(ri));
                    out.push((at, format!("`{r}` is not an email address: {e}")));
                }
            }
        }
        let mut source_names = std::collections::HashSet::new();
        for (si, s) in w.sources.iter().enumerate() {
            let sp = |key: &str| {
                vec![
                    k("watch"),
                    Seg::Index(wi),
                    k("source"),
                    Seg::Index(si),
                    k(key),
                ]
            };
            if s.name.trim().is_empty() {
                out.push((sp("name"), "is empty".into()));
            } else if !source_names.insert(s.name.to_lowercase()) {
                out.push((
                    sp("name"),
                    format!(
                        "another source of watch `{}` is already named `{}`",
                        w.name, s.name
                    ),
                ));
            }
            if let Some(expr) = &s.schedule {
                if let Err(e) = parse_schedule(expr) {
                    out.push((sp("schedule"), e));
                }
            }
            if let Err(e) = crate::sources::check_params(&s.kind, &s.params) {
                let key = if crate::sources::is_known_kind(&s.kind) {
                    "params"
                } else {
                    "kind"
                };
                out.push((sp(key), e));
            }
        }
    }
    out
}

/// What `zmot` can open: a SQLite file or a PostgreSQL server. Messages show the URL with
/// its passwords hidden.
fn check_database_url(url: &str) -> Result<(), String> {
    let shown = crate::redact::database_url(url);
    if let Some((file, _)) = crate::store::sqlite_file(url) {
        if file.starts_with(":memory:") {
            return Err(format!(
                "`{shown}` is an in-memory database: each connection would get its own empty \
                 one and everything would be lost at exit; name a file like sqlite://zmot.db"
            ));
        }
        if file.is_empty() {
            return Err(format!(
                "`{shown}` names no file; use sqlite://zmot.db or sqlite:///var/lib/zmot/zmot.db"
            ));
        }
        return Ok(());
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return url::Url::parse(url)
            .map(|_| ())
            .map_err(|e| format!("`{shown}` is not a valid PostgreSQL URL: {e}"));
    }
    Err(format!(
        "`{shown}` is neither a sqlite: nor a postgres:// URL"
    ))
}

/// Parses an IANA time zone name, with a readable error.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        format!(
            "`{name}` is not an IANA time zone (for example Europe/Paris, America/New_York, UTC)"
        )
    })
}

/// Parses a cron expression in the 5- or 6-field form, with a readable error.
pub fn parse_schedule(expr: &str) -> Result<Schedule, String> {
    normalise_cron(expr).parse().map_err(|e| {
        format!("`{expr}` is not a cron expression (for example `0 8 * * Mon` for Mondays at 08:00): {e}")
    })
}

/// A cron schedule as [`normalise_cron`] writes it: one cron expression (6 or 7 fields)
/// or several joined by ` | `, whose runs are merged.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    alternatives: Vec<cron::Schedule>,
}

impl Schedule {
    /// The expression it was read from.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The schedules whose runs together are this one's (one per ` | `-joined expression).
    pub fn alternatives(&self) -> &[cron::Schedule] {
        &self.alternatives
    }
}

impl std::str::FromStr for Schedule {
    type Err = cron::error::Error;

    fn from_str(expr: &str) -> Result<Self, Self::Err> {
        let alternatives = expr
            .split('|')
            .map(|part| part.trim().parse())
            .collect::<Result<Vec<cron::Schedule>, _>>()?;
        Ok(Schedule {
            expression: expr.trim().to_string(),
            alternatives,
        })
    }
}

impl Config {
    pub fn watch(&self, name: &str) -> Option<&Watch> {
        self.watches
            .iter()
            .find(|w| w.name.eq_ignore_ascii_case(name))
    }

    /// The general time zone (UTC if it does not parse: validation reports that).
    pub fn general_zone(&self) -> chrono_tz::Tz {
        parse_timezone(&self.general.timezone).unwrap_or(chrono_tz::Tz::UTC)
    }

    /// The clock a watch's times are read on: its own zone, else the general one (also
    /// for a watch no longer configured).
    pub fn watch_zone(&self, name: &str) -> chrono_tz::Tz {
        self.watch(name)
            .and_then(|w| parse_timezone(w.timezone(&self.general)).ok())
            .unwrap_or_else(|| self.general_zone())
    }
}

/// The commented starter configuration written by `zmot init`.
pub const STARTER: &str = include_str!("../config/zmot.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_cron_weekday_numbers_mean_what_they_mean_in_crontab() {
        assert_eq!(normalise_cron("0 8 * * 1"), "0 0 8 * * MON");
        assert_eq!(normalise_cron("0 0 8 * * 1"), "0 0 8 * * MON");
        assert_eq!(
            normalise_cron("*/15 9-17 * * 1-5"),
            "0 */15 9-17 * * MON-FRI"
        );
        assert_eq!(normalise_cron("0 8 * * 0,7"), "0 0 8 * * SUN");
        assert_eq!(normalise_cron("0 8 * * 5-7"), "0 0 8 * * SUN,FRI-SAT");
        assert_eq!(normalise_cron("0 8 * * 1-7"), "0 0 8 * * *");
        assert_eq!(normalise_cron("0 8 * * */2"), "0 0 8 * * SUN,TUE,THU,SAT");
        assert_eq!(normalise_cron("0 8 * * Mon"), "0 0 8 * * MON");
        assert_eq!(normalise_cron("0 8 * * Fri-Sun"), "0 0 8 * * SUN,FRI-SAT");
        assert_eq!(normalise_cron("0 8 * * 8"), "0 0 8 * * 8");
        assert!(parse_schedule("0 8 * * 8").is_err());
        assert!(parse_schedule("0 8 * * 5-1").is_err());
    }

    /// The next four 08:00 runs of a schedule from Saturday 21 November 2026, as dates.
    fn next_runs(expr: &str) -> Vec<String> {
        let after =
            chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 21, 0, 0, 0).unwrap();
        runs_after(expr, after, 4, "%a %d %H:%M")
    }

    /// The first `n` runs of a schedule (UTC) after `after`, as the scheduler finds them.
    fn runs_after(
        expr: &str,
        mut after: chrono::DateTime<chrono::Utc>,
        n: usize,
        format: &str,
    ) -> Vec<String> {
        let s = parse_schedule(expr).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        while out.len() < n {
            let Some(t) = crate::scheduler::next_after(&s, chrono_tz::UTC, after) else {
                break;
            };
            out.push(t.format(format).to_string());
            after = t;
        }
        out
    }

    #[test]
    fn both_day_fields_restricted_means_either_day_as_in_crontab() {
        // From Saturday 21 November 2026: the 1st of each month or a Monday.
        assert_eq!(
            next_runs("0 8 1 * 1"),
            [
                "Mon 23 08:00",
                "Mon 30 08:00",
                "Tue 01 08:00",
                "Mon 07 08:00"
            ]
        );
        // A day both select (Monday 1 February 2027) runs once.
        let after = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2027, 1, 31, 0, 0, 0).unwrap();
        assert_eq!(
            runs_after("0 8 1 * Mon", after, 2, "%a %d %b"),
            ["Mon 01 Feb", "Mon 08 Feb"]
        );
        // A day field starting with `*` is not a restriction: both must hold.
        assert_eq!(
            next_runs("0 8 */2 * Mon"),
            [
                "Mon 23 08:00",
                "Mon 07 08:00",
                "Mon 21 08:00",
                "Mon 11 08:00"
            ]
        );
        // Decided on the fields as written: `*/2` in the weekday is no restriction
        // either (the 1st when it is a Sunday, Tuesday, Thursday or Saturday), and a
        // weekday range that covers the week is one (the 1st or any day: every day).
        assert_eq!(
            next_runs("0 8 1 * */2"),
            [
                "Tue 01 08:00",
                "Thu 01 08:00",
                "Sat 01 08:00",
                "Tue 01 08:00"
            ]
        );
        assert_eq!(
            next_runs("0 8 1 * 0-6"),
            [
                "Sat 21 08:00",
                "Sun 22 08:00",
                "Mon 23 08:00",
                "Tue 24 08:00"
            ]
        );
        assert_eq!(normalise_cron("0 8 1 * Mon"), "0 0 8 1 * * | 0 0 8 * * MON");
        assert_eq!(normalise_cron("0 8 1 * */2"), "0 0 8 1 * SUN,TUE,THU,SAT");
    }

    #[test]
    fn weekday_numbers_give_the_same_runs_in_both_forms() {
        let mondays = [
            "Mon 23 08:00",
            "Mon 30 08:00",
            "Mon 07 08:00",
            "Mon 14 08:00",
        ];
        assert_eq!(next_runs("0 8 * * 1"), mondays);
        assert_eq!(next_runs("0 0 8 * * 1"), mondays);
        assert_eq!(next_runs("0 0 8 * * Mon"), mondays);
        let sundays = [
            "Sun 22 08:00",
            "Sun 29 08:00",
            "Sun 06 08:00",
            "Sun 13 08:00",
        ];
        for expr in ["0 8 * * 0", "0 8 * * 7", "0 0 8 * * 0", "0 0 8 * * 7"] {
            assert_eq!(next_runs(expr), sundays, "{expr}");
        }
        let fri_to_sun = [
            "Sat 21 08:00",
            "Sun 22 08:00",
            "Fri 27 08:00",
            "Sat 28 08:00",
        ];
        assert_eq!(next_runs("0 8 * * 5-7"), fri_to_sun);
        assert_eq!(next_runs("0 0 8 * * 5-7"), fri_to_sun);
        let daily = [
            "Sat 21 08:00",
            "Sun 22 08:00",
            "Mon 23 08:00",
            "Tue 24 08:00",
        ];
        assert_eq!(next_runs("0 8 * * 1-7"), daily);
        assert_eq!(
            next_runs("0 8 * * 1,3"),
            [
                "Mon 23 08:00",
                "Wed 25 08:00",
                "Mon 30 08:00",
                "Wed 02 08:00"
            ]
        );
        assert_eq!(
            next_runs("0 8 * * 1-5/2"),
            [
                "Mon 23 08:00",
                "Wed 25 08:00",
                "Fri 27 08:00",
                "Mon 30 08:00"
            ]
        );
    }

    #[test]
    fn starter_config_is_valid() {
        let c = parse(STARTER, "zmot.toml", &[]).unwrap();
        assert!(!c.watches.is_empty());
    }

    #[test]
    fn unknown_key_names_line() {
        let text = "[database]\nurl = \"sqlite://x.db\"\nurll = 3\n";
        let err = parse(text, "c.toml", &[]).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        let p = &err.problems[0];
        assert!(p.place.starts_with("c.toml:3"), "{p}");
        assert!(p.message.contains("unknown field `urll`"), "{p}");
    }

    #[test]
    fn bad_schedule_and_timezone_are_located() {
        let text = r#"
[[watch]]
name = "Acme"
timezone = "Mars/Olympus"

[[watch.source]]
name = "hn"
kind = "hackernews"
schedule = "every hour"
params = { query = "acme" }
"#;
        let err = parse(text, "c.toml", &[]).unwrap_err();
        let msgs: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("c.toml:4: watch[0].timezone")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("c.toml:9: watch[0].source[0].schedule")),
            "{msgs:?}"
        );
    }

    #[test]
    fn env_overrides_any_key() {
        let text = "[database]\nurl = \"sqlite://x.db\"\n[[watch]]\nname = \"A\"\n";
        let env = vec![
            (
                "ZMOT__DATABASE__URL".to_string(),
                "postgres://u@localhost/z".to_string(),
            ),
            ("ZMOT__DATABASE__MAX_CONNECTIONS".into(), "9".into()),
            ("ZMOT__WATCH__0__TIMEZONE".into(), "Europe/Paris".into()),
        ];
        let c = parse(text, "c.toml", &env).unwrap();
        assert_eq!(c.database.url, "postgres://u@localhost/z");
        assert_eq!(c.database.max_connections, 9);
        assert_eq!(c.watches[0].timezone.as_deref(), Some("Europe/Paris"));
    }

    #[test]
    fn env_override_errors_name_the_variable() {
        let text = "[[watch]]\nname = \"A\"\n";
        let env = vec![(
            "ZMOT__WATCH__0__TIMEZONE".to_string(),
            "Nowhere".to_string(),
        )];
        let err = parse(text, "c.toml", &env).unwrap_err();
        assert!(err.problems[0]
            .place
            .contains("environment variable ZMOT__WATCH__0__TIMEZONE"));
        let env = vec![("ZMOT__WATCH__3__NAME".to_string(), "B".to_string())];
        let err = parse(text, "c.toml", &env).unwrap_err();
        assert!(err.problems[0].message.contains("no index 3"), "{err}");
    }

    #[test]
    fn five_field_cron_is_accepted_and_default_is_spread() {
        assert!(parse_schedule("15 * * * *").is_ok());
        assert!(parse_schedule("0 0 8 * * Mon").is_ok());
        let s = Source {
            name: "a".into(),
            kind: "feed".into(),
            schedule: None,
            enabled: true,
            params: toml::Table::new(),
        };
        let expr = s.cron_expression("w");
        assert!(parse_schedule(&expr).is_ok(), "{expr}");
        let other = Source {
            name: "b".into(),
            ..s.clone()
        };
        // Different names usually land on different minutes; the same name always the same.
        assert_eq!(expr, s.cron_expression("w"));
        let _ = other.cron_expression("w");
    }

    #[test]
    fn an_smtp_timeout_longer_than_the_lease_allows_is_refused_at_its_line() {
        let text = |secs: u64| {
            format!("[email]\nfrom = \"a@b.test\"\n\n[email.smtp]\nhost = \"mail.test\"\ntimeout_secs = {secs}\n")
        };
        let err = parse(&text(3600), "c.toml", &[]).unwrap_err();
        let msgs: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(
            msgs[0].starts_with(
                "c.toml:6: email.smtp.timeout_secs: must be between 1 and 240 seconds"
            ),
            "{msgs:?}"
        );
        assert!(parse(&text(0), "c.toml", &[]).is_err());
        let c = parse(&text(240), "c.toml", &[]).unwrap();
        assert_eq!(c.email.smtp.unwrap().timeout_secs, 240);
    }

    #[test]
    fn http_max_body_bytes_out_of_range_is_named() {
        let err = parse("[http]\nmax_body_bytes = 10\n", "c.toml", &[]).unwrap_err();
        let msgs: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("http.max_body_bytes") && m.contains("between 1024")),
            "{msgs:?}"
        );
    }

    #[test]
    fn trusted_proxies_default_to_none_and_read_addresses_and_ranges() {
        let c = parse("", "c.toml", &[]).unwrap();
        assert!(c.server.trusted_proxies.is_empty());
        assert!(c.server.trusted_proxy_ranges().is_empty());
        let text =
            "[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1\", \"fd00::/8\"]\n";
        let c = parse(text, "c.toml", &[]).unwrap_or_else(|e| panic!("{e}"));
        let ranges: Vec<String> = c
            .server
            .trusted_proxy_ranges()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            ranges,
            ["127.0.0.1/32", "10.0.0.0/8", "::1/128", "fd00::/8"]
        );
        // An IPv4 address written as IPv6 is the IPv4 address.
        assert_eq!(
            parse_trusted_proxy("::ffff:127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
    }

    #[test]
    fn a_bad_trusted_proxy_is_named_with_its_line_and_entry() {
        let text = "[server]\nlisten = \"127.0.0.1:8080\"\ntrusted_proxies = [\n  \"127.0.0.1\",\n  \"proxy.internal\",\n  \"10.0.0.0/33\",\n  \"10.0.0.1/8\",\n]\n";
        let err = parse(text, "c.toml", &[]).unwrap_err();
        let msgs: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(
            msgs[0].starts_with("c.toml:5: server.trusted_proxies[1]: `proxy.internal` is not an IP address or a CIDR range"),
            "{msgs:?}"
        );
        assert!(
            msgs[1].starts_with("c.toml:6: server.trusted_proxies[2]: `10.0.0.0/33` is not"),
            "{msgs:?}"
        );
        assert!(
            msgs[2].starts_with(
                "c.toml:7: server.trusted_proxies[3]: `10.0.0.1/8` has address bits set"
            ) && msgs[2].contains("10.0.0.0/8 for the range")
                && msgs[2].contains("10.0.0.1 for the one address"),
            "{msgs:?}"
        );
    }

    #[test]
    fn the_client_address_header_is_x_forwarded_for_unless_set_to_forwarded() {
        let c = parse("", "c.toml", &[]).unwrap();
        assert_eq!(
            c.server.client_address_header,
            ClientAddressHeader::XForwardedFor
        );
        let c = parse(
            "[server]\nclient_address_header = \"Forwarded\"\n",
            "c.toml",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.server.client_address_header,
            ClientAddressHeader::Forwarded
        );
        let err = parse(
            "[server]\nclient_address_header = \"X-Real-IP\"\n",
            "c.toml",
            &[],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("c.toml:2") && msg.contains("X-Real-IP") && msg.contains("Forwarded"),
            "{msg}"
        );
    }

    #[test]
    fn a_bad_source_setting_from_the_environment_names_its_variable() {
        let text = "[[watch]]\nname = \"A\"\n[[watch.source]]\nname = \"hn\"\nkind = \"hackernews\"\nparams = { query = \"a\" }\n";
        for (var, says) in [
            (
                "ZMOT__WATCH__0__SOURCE__0__PARAMS__QUERYX",
                "no setting `queryx`",
            ),
            (
                "ZMOT__WATCH__0__SOURCE__0__PARAMS__PAGE_SIZE",
                "`page_size` must be",
            ),
        ] {
            let value = if var.ends_with("PAGE_SIZE") {
                "9999"
            } else {
                "foo"
            };
            let err = parse(text, "c.toml", &env(&[(var, value)])).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            let p = &err.problems[0];
            assert_eq!(p.place, format!("environment variable {var}"), "{p}");
            assert!(p.message.contains(says), "{p}");
        }
        // A problem in the file's own settings is still placed in the file.
        let err = parse(
            &text.replace("query = \"a\"", "query = \"a\", queryy = 1"),
            "c.toml",
            &env(&[("ZMOT__WATCH__0__SOURCE__0__PARAMS__PAGE_SIZE", "5")]),
        )
        .unwrap_err();
        assert_eq!(err.problems[0].place, "c.toml:6", "{err}");
    }

    #[test]
    fn trusted_proxies_can_be_set_from_the_environment() {
        let var = "ZMOT__SERVER__TRUSTED_PROXIES";
        let c = parse(
            "",
            "c.toml",
            &env(&[(var, r#"["127.0.0.1", "10.0.0.0/8"]"#)]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.trusted_proxies, ["127.0.0.1", "10.0.0.0/8"]);
        let err = parse(
            "",
            "c.toml",
            &env(&[(var, r#"["127.0.0.1", "10.0.0.0-8"]"#)]),
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let p = &err.problems[0];
        assert_eq!(p.place, format!("environment variable {var}"));
        assert_eq!(p.key.as_deref(), Some("server.trusted_proxies[1]"));
        assert!(p.message.contains("`10.0.0.0-8`"), "{p}");
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = parse("[database\nurl = 1\n", "c.toml", &[]).unwrap_err();
        assert!(err.problems[0].place.starts_with("c.toml:1:"), "{err}");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_reach_into_inline_tables() {
        let c = parse(
            STARTER,
            "zmot.toml",
            &env(&[
                ("ZMOT__WATCH__0__SOURCE__0__PARAMS__QUERY", "foo"),
                ("ZMOT__WATCH__0__SOURCE__0__PARAMS__MAX_PAGES", "2"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let params = &c.watches[0].sources[0].params;
        assert_eq!(params["query"].as_str(), Some("foo"));
        assert_eq!(params["max_pages"].as_integer(), Some(2));
    }

    #[test]
    fn a_wrongly_typed_override_names_its_variable_and_key() {
        let err = parse(
            STARTER,
            "zmot.toml",
            &env(&[
                ("ZMOT__SERVER__LISTEN", "127.0.0.1:9000"),
                ("ZMOT__GENERAL__RETENTION_DAYS", "many"),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let p = &err.problems[0];
        assert_eq!(
            p.place,
            "environment variable ZMOT__GENERAL__RETENTION_DAYS"
        );
        assert_eq!(p.key.as_deref(), Some("general.retention_days"));
    }

    #[test]
    fn a_bad_override_value_is_blamed_on_the_variable_not_the_file() {
        let err = parse(
            STARTER,
            "config/zmot.toml",
            &env(&[("ZMOT__WATCH__0__ALERTS__BUYER_VIEW_THRESHOLD", "9")]),
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let p = &err.problems[0];
        assert_eq!(
            p.place,
            "environment variable ZMOT__WATCH__0__ALERTS__BUYER_VIEW_THRESHOLD"
        );
        assert_eq!(
            p.key.as_deref(),
            Some("watch[0].alerts.buyer_view_threshold")
        );
        // The same value in the file is located at its line.
        let text = STARTER.replace("buyer_view_threshold = 4.3", "buyer_view_threshold = 9");
        let err = parse(&text, "config/zmot.toml", &[]).unwrap_err();
        let line = text
            .lines()
            .position(|l| l.contains("buyer_view_threshold = 9"))
            .unwrap()
            + 1;
        assert_eq!(err.problems[0].place, format!("config/zmot.toml:{line}"));
        assert!(sets_key("watch[1]", "watch[1].name"));
        assert!(!sets_key("watch[1]", "watch[10].name"));
        assert!(!sets_key("watch[0].name", "watch[0].names"));
    }
}
