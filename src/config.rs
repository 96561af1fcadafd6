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
    /// Jobs (fetches, deliveries) running at once, at most.
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
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: default_listen(),
            token_env: default_token_env(),
        }
    }
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
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for d in &self.disabled {
            if !ALERT_RULES.contains(&d.as_str()) {
                p.push(format!(
                    "unknown rule `{d}` in alerts.disabled; rules: {}",
                    ALERT_RULES.join(", ")
                ));
            }
        }
        if self.buyer_view_size == 0 {
            p.push("alerts.buyer_view_size must be at least 1".into());
        }
        if !(1.0..=5.0).contains(&self.buyer_view_threshold) {
            p.push("alerts.buyer_view_threshold must be between 1 and 5 stars".into());
        }
        if self.spike_window_hours == 0 || self.spike_baseline_days == 0 {
            p.push("alerts.spike_window_hours and spike_baseline_days must be positive".into());
        }
        if !(1..=5).contains(&self.severe_max_stars) {
            p.push("alerts.severe_max_stars must be between 1 and 5".into());
        }
        if !(-1.0..=1.0).contains(&self.severe_score) {
            p.push("alerts.severe_score must be between -1 and 1".into());
        }
        if self.reminder_hours < 24 {
            p.push("alerts.reminder_hours must be at least 24 (one reminder a day at most)".into());
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

/// Accepts the 5-field crontab form by adding a seconds field.
pub fn normalise_cron(expr: &str) -> String {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() == 5 {
        // Classic cron numbers weekdays 0-7 from Sunday (1 = Monday); the cron crate
        // numbers them 1-7 from Sunday. Names mean the same to both.
        format!(
            "0 {} {} {} {} {}",
            fields[0],
            fields[1],
            fields[2],
            fields[3],
            weekday_names(fields[4])
        )
    } else {
        expr.trim().to_string()
    }
}

/// Classic cron weekday numbers as names (`1-5` is `MON-FRI`); steps stay numbers.
fn weekday_names(field: &str) -> String {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let mut out = String::new();
    let mut digits = String::new();
    let mut after_slash = false;
    let flush = |digits: &mut String, out: &mut String, after_slash: bool| {
        if digits.is_empty() {
            return;
        }
        match digits.parse::<usize>() {
            Ok(n) if n < NAMES.len() && !after_slash => out.push_str(NAMES[n]),
            _ => out.push_str(digits),
        }
        digits.clear();
    };
    for c in field.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out, after_slash);
            after_slash = c == '/';
            out.push(c);
        }
    }
    flush(&mut digits, &mut out, after_slash);
    out
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
        Err(e) => {
            let names: Vec<_> = env.iter().map(|(n, _)| n.as_str()).collect();
            return fail(vec![Problem {
                place: format!("environment ({})", names.join(", ")),
                key: None,
                message: e.message().trim().to_string(),
            }]);
        }
    };

    // Pass 3: meaning, located in the file (or at the variable that set the value).
    let problems: Vec<Problem> = validate(&config)
        .into_iter()
        .map(|(path, message)| {
            let key = path_string(&path);
            let place = env_paths
                .iter()
                .find(|(p, _)| key.starts_with(p.as_str()))
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

fn set_path(table: &mut toml_edit::Table, path: &[Seg], raw: &str) -> Result<(), String> {
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
    let entry = table
        .entry(key)
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
    match entry {
        toml_edit::Item::Table(t) => set_path(t, rest, raw),
        _ => Err(format!("`{key}` is not a section")),
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
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        out.push((
            vec![k("database"), k("url")],
            format!("`{url}` is neither a sqlite: nor a postgres:// URL"),
        ));
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
        for problem in w.alerts.problems() {
            out.push((wp("alerts"), problem));
        }
        if let Err(e) = parse_schedule(&w.digest.schedule) {
            out.push((
                vec![k("watch"), Seg::Index(wi), k("digest"), k("schedule")],
                e,
            ));
        }
        for (ri, r) in w.recipients.iter().enumerate() {
            if let Err(e) = r.parse::<lettre::message::Mailbox>() {
                out.push((
                    vec![k("watch"), Seg::Index(wi), k("recipients"), Seg::Index(ri)],
                    format!("`{r}` is not an email address: {e}"),
                ));
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

/// Parses an IANA time zone name, with a readable error.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        format!(
            "`{name}` is not an IANA time zone (for example Europe/Paris, America/New_York, UTC)"
        )
    })
}

/// Parses a cron expression in the 5- or 6-field form, with a readable error.
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    use std::str::FromStr;
    cron::Schedule::from_str(&normalise_cron(expr)).map_err(|e| {
        format!("`{expr}` is not a cron expression (for example `0 8 * * Mon` for Mondays at 08:00): {e}")
    })
}

impl Config {
    pub fn watch(&self, name: &str) -> Option<&Watch> {
        self.watches
            .iter()
            .find(|w| w.name.eq_ignore_ascii_case(name))
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
        assert_eq!(
            normalise_cron("*/15 9-17 * * 1-5"),
            "0 */15 9-17 * * MON-FRI"
        );
        assert_eq!(normalise_cron("0 8 * * 0,7"), "0 0 8 * * SUN,SUN");
        assert_eq!(normalise_cron("0 8 * * */2"), "0 0 8 * * */2");
        assert_eq!(normalise_cron("0 8 * * Mon"), "0 0 8 * * Mon");
        // Monday 23 November 2026 is the next Monday after Saturday the 21st.
        let s = parse_schedule("0 8 * * 1").unwrap();
        let after =
            chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 21, 0, 0, 0).unwrap();
        let next = s.after(&after).next().unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-23T08:00:00+00:00");
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
    fn syntax_error_names_line_and_column() {
        let err = parse("[database\nurl = 1\n", "c.toml", &[]).unwrap_err();
        assert!(err.problems[0].place.starts_with("c.toml:1:"), "{err}");
    }
}
