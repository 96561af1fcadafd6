//! Alert rules: read the store, decide which conditions hold for a watch right now.
//! A rule knows nothing of email or HTTP; it returns findings, each with a condition
//! key that names "the same condition" for deduplication, a severity, the evidence and
//! a suggested action.
//!
//! The negative-spike statistic: the negative mentions of the last window (24 h) are
//! compared with a Poisson expectation λ from the baseline (the 28 days before): half
//! the mean count of all baseline windows, half the mean of the windows at the same
//! time on the same weekday (7, 14, 21, 28 days back), so Monday's usual rush is not a
//! spike. λ is floored at 0.5. The window alerts when it holds at least
//! `spike_min_count` negatives and P(X ≥ observed | λ) is under the sensitivity's
//! level (0.0001, 0.001 or 0.01); red when the count is also three times λ or more.
//! Only watched time counts: a source's mentions count once its stored history begins
//! a week before the window, and the baseline is cut to the windows after the start of
//! the history of the sources counted, so a first fetch is not compared with empty days.
//!
//! Hysteresis: a condition that opened an alert clears only once its value is clearly
//! back, so a value hovering at a threshold keeps one alert open (reminded as usual)
//! instead of resolving and reopening at every crossing. While its alert is open, the
//! buyer's view holds until it averages `RESOLVE_MARGIN_STARS` over the threshold, the
//! drop until it is `RESOLVE_MARGIN_SENTIMENT` under `sentiment_drop`, and the spike until
//! the window would not alert even at the next more sensitive level
//! (`RESOLVE_SPIKE_LEVEL_FACTOR` times the chance) or holds fewer than `spike_min_count`
//! minus `RESOLVE_MARGIN_SPIKE_COUNT` negatives. Severe mentions and crisis terms are
//! about single mentions, which are answered or age out, not a value that hovers.

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};

use crate::config::AlertSettings;
use crate::domain::Label;
use crate::store::{AlertRow, Evidence, MentionQuery, NewAlert, Store, StoredMention};
use crate::trends;

/// Stars over `buyer_view_threshold` the buyer's view must reach to resolve its alert.
pub const RESOLVE_MARGIN_STARS: f64 = 0.05;

/// How far under `sentiment_drop` the drop must fall to resolve its alert.
pub const RESOLVE_MARGIN_SENTIMENT: f64 = 0.05;

/// An open spike holds while the window's chance under the usual rate is under this many
/// times the sensitivity's level: the next more sensitive level (levels are a factor of
/// ten apart).
pub const RESOLVE_SPIKE_LEVEL_FACTOR: f64 = 10.0;

/// An open spike holds while the window has at least `spike_min_count` minus this many
/// negatives.
pub const RESOLVE_MARGIN_SPIKE_COUNT: u32 = 1;

/// Stars as an alert or health line shows them: to two decimals, a trailing zero dropped
/// (`4.3`, `4.25`, `4.27`). One decimal rounded a threshold of 4.25, or a view of 4.27,
/// onto its neighbour: "buyers now see 4.2 stars (under 4.2)".
pub fn star_figure(v: f64) -> String {
    let s = format!("{v:.2}");
    match s.strip_suffix('0') {
        Some(short) => short.to_string(),
        None => s,
    }
}

/// Evidence items kept per alert.
const MAX_EVIDENCE: usize = 5;

/// Longest author name shown in an alert; longer ones are cut with an ellipsis.
pub const MAX_NAME_CHARS: usize = 40;

/// Characters that change how text around them is displayed without showing
/// themselves: bidirectional embeddings, overrides, isolates and marks (a right-to-left
/// override makes "gpj.exe" read "exe.jpg"), and the zero-width ones.
fn invisible_formatting(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{061C}' | '\u{FEFF}')
}

/// Text from outside (a review, an author's name) made safe to put in a subject, a
/// title or a plain-text line: whitespace (CR and LF included) folded to single spaces,
/// control and invisible formatting characters removed, cut at `max` characters with an
/// ellipsis.
pub fn excerpt(text: &str, max: usize) -> String {
    let t: String = text
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| !c.is_control() && !invisible_formatting(*c))
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if t.chars().count() <= max {
        t
    } else {
        let cut: String = t.chars().take(max).collect();
        format!("{}…", cut.trim_end())
    }
}

/// An author's name as alerts show it (see `excerpt`), or `None` when nothing is left.
pub fn author_name(name: &str) -> Option<String> {
    Some(excerpt(name, MAX_NAME_CHARS)).filter(|n| !n.is_empty())
}

pub fn evidence(m: &StoredMention) -> Evidence {
    let text = match &m.mention.title {
        Some(t) if !t.trim().is_empty() && !m.mention.text.starts_with(t.as_str()) => {
            format!("{t}: {}", m.mention.text)
        }
        _ => m.mention.text.clone(),
    };
    Evidence {
        mention_id: m.id,
        source: m.source.clone(),
        url: m.mention.url.clone(),
        author: m.mention.author.as_deref().and_then(author_name),
        rating: m.mention.rating,
        score: m.sentiment.map(|s| s.score),
        excerpt: excerpt(&text, 280),
        published_at: m.mention.published_at,
    }
}

/// P(X ≥ k) for X ~ Poisson(λ).
pub fn poisson_tail(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    // 1 - P(X ≤ k-1), summed in log space for stability.
    let mut term = (-lambda).exp();
    let mut cdf = term;
    for i in 1..k {
        term *= lambda / i as f64;
        cdf += term;
    }
    (1.0 - cdf).max(0.0)
}

/// Expected negatives in the window from the baseline counts, as documented above.
/// `counts[i]` is the count of the window that ended `i + 1` windows before the current
/// one; `per_week` windows make one week.
pub fn spike_baseline(counts: &[u64], per_week: usize) -> f64 {
    if counts.is_empty() {
        return 0.5;
    }
    let all = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    let same: Vec<u64> = counts
        .iter()
        .enumerate()
        .filter(|(i, _)| per_week > 0 && (i + 1) % per_week == 0)
        .map(|(_, c)| *c)
        .collect();
    let lambda = if same.is_empty() {
        all
    } else {
        0.5 * all + 0.5 * same.iter().sum::<u64>() as f64 / same.len() as f64
    };
    lambda.max(0.5)
}

/// Endings that make another form of the same word: "refunds", "refunded", "scammers".
const INFLECTIONS: [&str; 7] = ["", "s", "es", "ed", "ing", "er", "ers"];

/// Whether `ending` (the letters that follow the term up to the end of the word) makes
/// an inflected form of `term`: one of `INFLECTIONS`, with the final consonant doubled
/// for -ed, -ing and -er ("scammed", "scamming", "scammers"), or -d, -r and -rs after a
/// final "e" ("unsafer").
fn is_inflection(term: &str, ending: &str) -> bool {
    if INFLECTIONS.contains(&ending) {
        return true;
    }
    let Some(last) = term.chars().next_back() else {
        return false;
    };
    let doubled = ending
        .strip_prefix(last)
        .is_some_and(|rest| last.is_alphabetic() && ["ed", "ing", "er", "ers"].contains(&rest));
    let after_e = last == 'e' && ["d", "r", "rs"].contains(&ending);
    doubled || after_e
}

/// Whether `text` contains `term` as whole words, or an inflected form of its last word.
fn contains_term(text: &str, term: &str) -> bool {
    let text = text.to_lowercase();
    let term = term.to_lowercase();
    let mut start = 0;
    while let Some(pos) = text[start..].find(&term) {
        let at = start + pos;
        let before = text[..at].chars().next_back();
        let rest = &text[at + term.len()..];
        let ending_len = rest
            .char_indices()
            .find(|(_, c)| !c.is_alphanumeric())
            .map_or(rest.len(), |(i, _)| i);
        // "refunds" and "scammers" count for their term; "prefund" and "scampi" do not.
        if before.is_none_or(|c| !c.is_alphanumeric()) && is_inflection(&term, &rest[..ending_len])
        {
            return true;
        }
        start = at + term.len().max(1);
    }
    false
}

/// Rules as of `now` for one watch.
pub struct Evaluation<'a> {
    pub store: &'a Store,
    pub watch_id: i64,
    pub settings: &'a AlertSettings,
    pub now: DateTime<Utc>,
    /// The watch's open alerts: their conditions clear only by the resolve margins.
    pub open: &'a [AlertRow],
}

impl Evaluation<'_> {
    /// Every condition that holds now, from every enabled rule.
    pub async fn findings(&self) -> Result<Vec<NewAlert>> {
        let mut out = Vec::new();
        let s = self.settings;
        if s.enabled("buyer_view_rating") {
            out.extend(self.buyer_view_rating().await?);
        }
        if s.enabled("negative_spike") {
            out.extend(self.negative_spike().await?);
        }
        if s.enabled("severe_mention") {
            out.extend(self.severe_mentions().await?);
        }
        if s.enabled("sentiment_drop") {
            out.extend(self.sentiment_drop().await?);
        }
        if s.enabled("keyword") {
            out.extend(self.keywords().await?);
        }
        // One finding per condition: a second one (a crisis term listed twice, in another
        // case) would open the same alert again, which the one-open-alert index refuses,
        // and the whole evaluation would stand down as if another worker had written it.
        let mut seen = std::collections::HashSet::new();
        out.retain(|f| seen.insert(f.condition_key.clone()));
        Ok(out)
    }

    /// What an alert whose condition cleared says now, for its "resolved" line: the
    /// state as of this evaluation ("shop: buyers now see 4.5 stars, 4.3 or more again"),
    /// not the title it had when it was last true.
    pub async fn cleared(&self, alert: &AlertRow) -> Result<String> {
        let s = self.settings;
        let rule_off = !s.enabled(&alert.rule);
        let holds = match alert.rule.as_str() {
            _ if rule_off => format!("{} (the rule is now off)", alert.title),
            "buyer_view_rating" => {
                let source_id = alert
                    .condition_key
                    .strip_prefix("buyer_view_rating:")
                    .and_then(|id| id.parse::<i64>().ok());
                let views =
                    trends::buyer_views(self.store, self.watch_id, s.buyer_view_size).await?;
                match views.iter().find(|v| Some(v.source_id) == source_id) {
                    Some(v) => match v.average_rating {
                        Some(avg) if v.reviews.len() >= s.buyer_view_min_reviews => format!(
                            "{}: buyers now see {} stars, {} or more again",
                            v.source,
                            star_figure(avg),
                            star_figure(s.buyer_view_threshold)
                        ),
                        _ => format!(
                            "{}: fewer than {} recent reviews to judge by",
                            v.source, s.buyer_view_min_reviews
                        ),
                    },
                    None => format!("{} (the source is gone)", alert.title),
                }
            }
            "keyword" => {
                let term = alert
                    .condition_key
                    .strip_prefix("keyword:")
                    .unwrap_or(&alert.condition_key);
                format!("\"{term}\": no mention in the last {} days", s.recent_days)
            }
            // Cleared by a rate back near the usual one or by too few mentions to be a
            // spike any more: say only what holds in both cases.
            "negative_spike" => format!(
                "Negative mentions: no longer a spike over the last {} h",
                s.spike_window_hours
            ),
            "sentiment_drop" => {
                // The rule also stands down when the week has too few mentions or there is
                // nothing before to compare with; a drop that merely went quiet has not
                // recovered, and "back" would tell the team it had.
                let rise = self.sentiment_week().await?;
                if rise.window.scored() < i64::from(s.sentiment_drop_min_mentions)
                    || rise.window.mean_sentiment.is_none()
                {
                    format!(
                        "Sentiment: fewer than {} mentions in the last 7 days to judge by",
                        s.sentiment_drop_min_mentions.max(1)
                    )
                } else if rise.before.mean_sentiment.is_none() {
                    "Sentiment: no mentions in the weeks before to compare with".to_string()
                } else {
                    format!(
                        "Sentiment back within {:.2} of the weeks before",
                        (f64::from(s.sentiment_drop) - RESOLVE_MARGIN_SENTIMENT).max(0.0)
                    )
                }
            }
            _ => format!("{}: no longer the case", alert.title),
        };
        Ok(holds)
    }

    /// Whether the condition has an open alert, which then clears only by its margin.
    fn is_open(&self, condition_key: &str) -> bool {
        self.open.iter().any(|a| a.condition_key == condition_key)
    }

    async fn recent(&self, days: i64) -> Result<Vec<StoredMention>> {
        self.store
            .mentions(&MentionQuery {
                watch_id: Some(self.watch_id),
                since: Some(self.now - Duration::days(days)),
                until: Some(self.now + Duration::minutes(1)),
                ..Default::default()
            })
            .await
    }

    /// Rule 1: the buyer's view of a rated source averages under the threshold.
    pub async fn buyer_view_rating(&self) -> Result<Vec<NewAlert>> {
        let s = self.settings;
        let mut out = Vec::new();
        for view in trends::buyer_views(self.store, self.watch_id, s.buyer_view_size).await? {
            let Some(avg) = view.average_rating else {
                continue;
            };
            let condition_key = format!("buyer_view_rating:{}", view.source_id);
            let threshold = s.buyer_view_threshold;
            // An open alert resolves only once the view is clearly back (at most 5 stars,
            // which a view can reach).
            let clear_at = if self.is_open(&condition_key) {
                (threshold + RESOLVE_MARGIN_STARS).min(5.0)
            } else {
                threshold
            };
            if view.reviews.len() < s.buyer_view_min_reviews || avg >= clear_at {
                continue;
            }
            let low: Vec<&StoredMention> = view
                .reviews
                .iter()
                .filter(|m| m.mention.rating.is_some_and(|r| r <= 2))
                .collect();
            let severity = if avg < s.buyer_view_threshold - 0.3 {
                "red"
            } else {
                "amber"
            };
            let title = if avg < threshold {
                format!(
                    "{}: buyers now see {} stars (under {})",
                    view.source,
                    star_figure(avg),
                    star_figure(threshold)
                )
            } else {
                format!(
                    "{}: buyers now see {avg:.2} stars, not yet {clear_at:.2} again",
                    view.source
                )
            };
            out.push(NewAlert {
                rule: "buyer_view_rating".into(),
                condition_key,
                severity: severity.into(),
                title,
                summary: format!(
                    "The {} most recent reviews on {} average {} stars; {} of them have 1 or 2 stars.{} \
                     The alert resolves once they average {:.2} or more.",
                    view.reviews.len(),
                    view.source,
                    star_figure(avg),
                    low.len(),
                    view.published
                        .as_ref()
                        .map(|p| format!(" The source shows {:.1} overall.", p.rating))
                        .unwrap_or_default(),
                    (threshold + RESOLVE_MARGIN_STARS).min(5.0)
                ),
                action: "Reply to the low-star reviews buyers see first, fix what they report, \
                         and invite recent happy customers to review."
                    .into(),
                evidence: low.iter().take(MAX_EVIDENCE).map(|m| evidence(m)).collect(),
            });
        }
        Ok(out)
    }

    /// Rule 2: negative mentions in the last window clearly above their baseline.
    pub async fn negative_spike(&self) -> Result<Vec<NewAlert>> {
        let s = self.settings;
        let window = Duration::hours(i64::from(s.spike_window_hours));
        let baseline_days = i64::from(s.spike_baseline_days);
        let start = self.now - window;
        let base_from = start - Duration::days(baseline_days);
        let w = window.num_milliseconds();
        let start_ms = start.timestamp_millis();
        // Only what was watched is compared. A source counts once its stored history
        // begins a week (and a window) before the window: a feed that keeps its last
        // twenty items brings a day or two in its first fetch, and the days before it
        // would look like quiet days. And the baseline is only the windows after the
        // start of the history of every source counted.
        let settled = w.max(Duration::days(7).num_milliseconds());
        let history_start = trends::watched_since(
            self.store,
            self.watch_id,
            start - Duration::milliseconds(settled),
        )
        .await?;
        let negatives_at: Vec<(i64, i64)> = self
            .store
            .negative_times(self.watch_id, base_from, self.now)
            .await?
            .into_iter()
            .filter(|(source, _)| history_start.contains_key(source))
            .collect();
        let observed = negatives_at.iter().filter(|(_, t)| *t >= start_ms).count() as u64;
        // An open spike resolves only once the window is clearly back to the usual.
        let open = self.is_open("negative_spike");
        let (min_count, level) = if open {
            (
                s.spike_min_count
                    .saturating_sub(RESOLVE_MARGIN_SPIKE_COUNT)
                    .max(1),
                s.spike_sensitivity.alpha() * RESOLVE_SPIKE_LEVEL_FACTOR,
            )
        } else {
            (s.spike_min_count, s.spike_sensitivity.alpha())
        };
        if observed < u64::from(min_count) {
            return Ok(Vec::new());
        }
        let watched_from = negatives_at
            .iter()
            .map(|(source, _)| history_start[source].1)
            .max()
            .unwrap_or(start_ms - settled);
        let n_windows = (Duration::days(baseline_days).num_milliseconds() / w).max(1) as usize;
        let n_windows = n_windows.min(((start_ms - watched_from) / w) as usize);
        let mut counts = vec![0u64; n_windows];
        for &(_, t) in negatives_at.iter().filter(|(_, t)| *t < start_ms) {
            let back = ((start_ms - 1 - t) / w) as usize;
            if back < n_windows {
                counts[back] += 1;
            }
        }
        let per_week = (Duration::days(7).num_milliseconds() / w) as usize;
        let lambda = spike_baseline(&counts, per_week);
        let p = poisson_tail(observed, lambda);
        if p >= level {
            return Ok(Vec::new());
        }
        let mut negatives: Vec<StoredMention> = self
            .store
            .mentions(&MentionQuery {
                watch_id: Some(self.watch_id),
                since: Some(start),
                until: Some(self.now + Duration::minutes(1)),
                label: Some(Label::Negative),
                ..Default::default()
            })
            .await?;
        negatives.retain(|m| history_start.values().any(|(name, _)| *name == m.source));
        negatives.sort_by_key(|m| std::cmp::Reverse(m.mention.engagement.total()));
        let hours = s.spike_window_hours;
        // The days the baseline covers: fewer than `spike_baseline_days` for a young history.
        let watched_days = n_windows as i64 * w / Duration::days(1).num_milliseconds();
        Ok(vec![NewAlert {
            rule: "negative_spike".into(),
            condition_key: "negative_spike".into(),
            severity: if observed as f64 >= 3.0 * lambda { "red" } else { "amber" }.into(),
            title: format!("{observed} negative mentions in {hours} h, {:.1}x the usual", observed as f64 / lambda),
            summary: format!(
                "{observed} negative mentions in the last {hours} hours against about {lambda:.1} expected \
                 from the {watched_days} days before (chance under the usual rate: {p:.1e})."
            ),
            action: "Look for a shared cause (an outage, a release, a delivery problem), \
                     answer publicly once, and reply to the most visible posts."
                .into(),
            evidence: negatives.iter().take(MAX_EVIDENCE).map(evidence).collect(),
        }])
    }

    /// Rule 3: single very negative mentions that many will see, not yet answered.
    pub async fn severe_mentions(&self) -> Result<Vec<NewAlert>> {
        let s = self.settings;
        let mut out = Vec::new();
        for m in self.recent(i64::from(s.recent_days)).await? {
            let stars_bad = m.mention.rating.is_some_and(|r| r <= s.severe_max_stars);
            let text_bad = m.sentiment.is_some_and(|x| x.score <= s.severe_score);
            let severe = match m.mention.rating {
                // With stars, the stars decide; the text only makes it worse.
                Some(_) => stars_bad,
                None => text_bad,
            };
            let engagement = m.mention.engagement.total();
            let weight = s.source_weight(&m.source_kind);
            let visible =
                engagement >= s.severe_min_engagement || weight >= s.severe_min_source_weight;
            if !severe || !visible || m.mention.owner_reply.is_some() {
                continue;
            }
            let who = m
                .mention
                .author
                .as_deref()
                .and_then(author_name)
                .unwrap_or_else(|| "someone".into());
            let what = match m.mention.rating {
                Some(r) => format!("a {r}-star review"),
                None => "a very negative post".to_string(),
            };
            out.push(NewAlert {
                rule: "severe_mention".into(),
                condition_key: format!("severe_mention:{}", m.id),
                // Red when widely shared and either 1 star or negative text too (a post
                // without stars is severe by its text alone).
                severity: if engagement >= s.severe_min_engagement
                    && (text_bad || m.mention.rating == Some(1))
                {
                    "red"
                } else {
                    "amber"
                }
                .into(),
                title: format!("{}: {what} by {who}", m.source),
                summary: format!(
                    "{what} on {} ({} likes, replies and shares), not answered yet: \"{}\"",
                    m.source,
                    engagement,
                    excerpt(&m.mention.text, 140)
                ),
                action:
                    "Reply publicly and promptly, acknowledge the problem and offer to fix it; \
                         other buyers read the answer too."
                        .into(),
                evidence: vec![evidence(&m)],
            });
        }
        Ok(out)
    }

    /// Rule 4: this week's mean sentiment well under the four weeks before. Only watched
    /// time counts, as for the spike: a source counts once its stored history begins a
    /// week before this week, and the weeks before are cut to after the start of the
    /// history of the sources counted; so a new source whose first fetch brings a bad
    /// week is not compared with weeks nobody read it, nor a first fetch with a day or two.
    /// The last 7 days against the 28 before, over the watched sources: what the drop
    /// rule judges and what its resolved line reports.
    async fn sentiment_week(&self) -> Result<trends::WatchedComparison> {
        let week_start = self.now - Duration::days(7);
        trends::watched_comparison(
            self.store,
            self.watch_id,
            (week_start, self.now + Duration::minutes(1)),
            week_start - Duration::days(28),
            None,
        )
        .await
    }

    pub async fn sentiment_drop(&self) -> Result<Vec<NewAlert>> {
        let s = self.settings;
        let week_start = self.now - Duration::days(7);
        let trends::WatchedComparison {
            sources: counted,
            window: this,
            before_from: base_from,
            before,
            ..
        } = self.sentiment_week().await?;
        let (Some(now_mean), Some(base_mean)) = (this.mean_sentiment, before.mean_sentiment) else {
            return Ok(Vec::new());
        };
        let drop = base_mean - now_mean;
        // An open alert resolves only once the drop is clearly under the threshold.
        let threshold = f64::from(s.sentiment_drop);
        let clear_at = if self.is_open("sentiment_drop") {
            (threshold - RESOLVE_MARGIN_SENTIMENT).max(0.0)
        } else {
            threshold
        };
        if this.scored() < i64::from(s.sentiment_drop_min_mentions) || drop <= clear_at {
            return Ok(Vec::new());
        }
        let worst = self
            .store
            .mentions(&MentionQuery {
                watch_id: Some(self.watch_id),
                since: Some(week_start),
                label: Some(Label::Negative),
                ..Default::default()
            })
            .await?;
        let mut worst = worst;
        worst.retain(|m| counted.values().any(|(name, _)| *name == m.source));
        worst.sort_by(|a, b| {
            let sa = a.sentiment.map(|x| x.score).unwrap_or(0.0);
            let sb = b.sentiment.map(|x| x.score).unwrap_or(0.0);
            sa.total_cmp(&sb)
        });
        Ok(vec![NewAlert {
            rule: "sentiment_drop".into(),
            condition_key: "sentiment_drop".into(),
            severity: if drop > 2.0 * f64::from(s.sentiment_drop) {
                "red"
            } else {
                "amber"
            }
            .into(),
            title: format!(
                "Sentiment down {drop:.2} this week ({base_mean:+.2} to {now_mean:+.2})"
            ),
            summary: format!(
                "The mean sentiment of the last 7 days ({} mentions) is {now_mean:+.2}, against \
                 {base_mean:+.2} over the {} days before ({} mentions).",
                this.scored(),
                (week_start - base_from).num_days(),
                before.scored()
            ),
            action:
                "Read the most negative mentions below for a common cause and brief the product or \
                     support team."
                    .into(),
            evidence: worst.iter().take(MAX_EVIDENCE).map(evidence).collect(),
        }])
    }

    /// Rule 5: mentions with a crisis term.
    pub async fn keywords(&self) -> Result<Vec<NewAlert>> {
        let s = self.settings;
        if s.crisis_terms.is_empty() {
            return Ok(Vec::new());
        }
        let recent = self.recent(i64::from(s.recent_days)).await?;
        let mut out = Vec::new();
        for term in &s.crisis_terms {
            let mut hits: Vec<&StoredMention> = recent
                .iter()
                .filter(|m| {
                    contains_term(&m.mention.text, term)
                        || m.mention
                            .title
                            .as_deref()
                            .is_some_and(|t| contains_term(t, term))
                })
                .collect();
            if hits.is_empty() {
                continue;
            }
            hits.sort_by_key(|m| std::cmp::Reverse(m.mention.engagement.total()));
            let reach: i64 = hits.iter().map(|m| m.mention.engagement.total()).sum();
            let red = hits.len() >= 3
                || hits
                    .iter()
                    .any(|m| m.mention.engagement.total() >= s.severe_min_engagement);
            out.push(NewAlert {
                rule: "keyword".into(),
                condition_key: format!("keyword:{}", term.to_lowercase()),
                severity: if red { "red" } else { "amber" }.into(),
                title: format!(
                    "\"{term}\" in {} mention{}",
                    hits.len(),
                    if hits.len() == 1 { "" } else { "s" }
                ),
                summary: format!(
                    "{} mention{} in the last {} days use \"{term}\" ({reach} likes, replies and shares in all).",
                    hits.len(),
                    if hits.len() == 1 { "" } else { "s" },
                    s.recent_days
                ),
                action: "Check whether this is a real incident; if it is, involve legal or PR before \
                         replying, and answer each author directly."
                    .into(),
                evidence: hits.iter().take(MAX_EVIDENCE).map(|m| evidence(m)).collect(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_tail_matches_known_values() {
        // P(X >= 1 | 1) = 1 - e^-1
        assert!((poisson_tail(1, 1.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        // P(X >= 10 | 2) ≈ 4.65e-5
        let p = poisson_tail(10, 2.0);
        assert!((p - 4.6498e-5).abs() < 1e-7, "{p}");
        assert_eq!(poisson_tail(0, 3.0), 1.0);
    }

    #[test]
    fn baseline_weighs_the_same_weekday() {
        // 28 daily windows, all 1 except the same weekday (every 7th), which are 8.
        let counts: Vec<u64> = (0..28)
            .map(|i| if (i + 1) % 7 == 0 { 8 } else { 1 })
            .collect();
        let l = spike_baseline(&counts, 7);
        let all = (24.0 + 32.0) / 28.0;
        assert!((l - (0.5 * all + 0.5 * 8.0)).abs() < 1e-9, "{l}");
        assert_eq!(spike_baseline(&[0; 28], 7), 0.5);
    }

    #[test]
    fn names_are_folded_stripped_of_controls_and_bidi_and_cut() {
        assert_eq!(
            author_name("Eve\r\nBcc: all@example.com").as_deref(),
            Some("Eve Bcc: all@example.com")
        );
        assert_eq!(
            author_name("\u{202E}gpj.exe\u{202C}").as_deref(),
            Some("gpj.exe")
        );
        assert_eq!(
            author_name("a\u{0007}b\u{200B}c\u{2066}d").as_deref(),
            Some("abcd")
        );
        assert_eq!(author_name(" \u{202E}\r\n "), None);
        let long = author_name(&"x".repeat(500)).unwrap();
        assert_eq!(long.chars().count(), MAX_NAME_CHARS + 1);
        assert!(long.ends_with('…'));
        assert_eq!(author_name("Zoë O'Brien").as_deref(), Some("Zoë O'Brien"));
    }

    #[test]
    fn crisis_terms_match_whole_words_and_simple_inflections() {
        assert!(contains_term("I want a REFUND now", "refund"));
        assert!(contains_term("still no refunds.", "refund"));
        assert!(contains_term("They refunded me", "refund"));
        assert!(!contains_term("prefunding round", "refund"));
        assert!(contains_term("a data breach again", "data breach"));
        assert!(contains_term("total scams", "scam"));
        assert!(!contains_term("scampi", "scam"));
        assert!(contains_term("I got scammed", "scam"));
        assert!(contains_term("These scammers, again", "scam"));
        assert!(contains_term("a scammer's trick", "scam"));
        assert!(contains_term("they are scamming people", "scam"));
        assert!(contains_term("two data breaches", "data breach"));
        assert!(contains_term("my card was hacked", "hacked"));
        assert!(contains_term("refunding takes weeks", "refund"));
        assert!(contains_term("they recalled it", "recall"));
        assert!(!contains_term("refundsy", "refund"));
        assert!(!contains_term("scamps", "scam"));
        assert!(!contains_term("lawsuitable", "lawsuit"));
    }
}
