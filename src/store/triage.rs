//! The dashboard's reads and the feedback loop's writes: mentions filtered the way the
//! mention list filters them (with their triage state), the triage of a mention and its
//! history, alert acknowledgement and snoozing, and "fetch now" requests.
//!
//! Every filter is a bound parameter; the SQL text only varies by which conditions are
//! present, never by what the user typed.

use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{fetch_job_name, from_ms, stored_mention, to_ms, AlertRow, Store, StoredMention};
use crate::domain::{without_controls, Label};

/// The latest sentiment's label of `m`, for filtering: a condition on this (instead of on
/// the joined `st.label`) keeps PostgreSQL from hashing the whole sentiments table, and
/// lets both databases walk a watch's mentions newest first and stop at the page's end.
const LATEST_LABEL: &str = "(SELECT s3.label FROM sentiments s3 WHERE s3.mention_id = m.id
    ORDER BY s3.scored_at DESC LIMIT 1)";

const MENTION_COLUMNS: &str = "m.id, w.name AS watch_name, s.name AS source_name, m.source_kind,
    m.external_id, m.url, m.author, m.title, m.body, m.rating, m.likes, m.replies, m.reposts,
    m.language, m.published_at, m.fetched_at, m.owner_reply, m.owner_reply_at,
    m.content_hash, m.revision, m.extra, st.label, st.score, st.confidence,
    t.status AS triage_status, t.assignee AS triage_assignee, t.note AS triage_note,
    t.first_action_at AS triage_first_action_at, t.updated_at AS triage_updated_at,
    t.updated_by AS triage_updated_by";

/// Where a mention stands in the feedback loop. A mention nobody touched is `Open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriageStatus {
    Open,
    Acknowledged,
    Replied,
    Resolved,
    Ignored,
}

impl TriageStatus {
    pub const ALL: [TriageStatus; 5] = [
        TriageStatus::Open,
        TriageStatus::Acknowledged,
        TriageStatus::Replied,
        TriageStatus::Resolved,
        TriageStatus::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriageStatus::Open => "open",
            TriageStatus::Acknowledged => "acknowledged",
            TriageStatus::Replied => "replied",
            TriageStatus::Resolved => "resolved",
            TriageStatus::Ignored => "ignored",
        }
    }

    pub fn parse(s: &str) -> Option<TriageStatus> {
        TriageStatus::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether the mention still waits for someone (open or only acknowledged).
    pub fn is_pending(self) -> bool {
        matches!(self, TriageStatus::Open | TriageStatus::Acknowledged)
    }
}

/// The stored triage of a mention.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TriageState {
    pub status: TriageStatus,
    pub assignee: Option<String>,
    pub note: Option<String>,
    pub first_action_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

/// One change in a mention's triage history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TriageEvent {
    pub status: TriageStatus,
    pub assignee: Option<String>,
    pub note: Option<String>,
    pub changed_at: DateTime<Utc>,
    pub changed_by: Option<String>,
}

/// A change to make: `None` keeps the current value; an empty assignee or note clears it.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageUpdate {
    #[serde(default)]
    pub status: Option<TriageStatus>,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// A mention with its triage (none when nobody touched it).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TriagedMention {
    #[serde(flatten)]
    pub mention: StoredMention,
    pub triage: Option<TriageState>,
}

impl TriagedMention {
    pub fn status(&self) -> TriageStatus {
        self.triage
            .as_ref()
            .map(|t| t.status)
            .unwrap_or(TriageStatus::Open)
    }
}

/// The mention list's filters; every one optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MentionFilter {
    pub watch_id: Option<i64>,
    pub source_id: Option<i64>,
    /// The latest sentiment's label.
    pub label: Option<Label>,
    /// Star ratings within this range (inclusive); either end alone works.
    pub stars_min: Option<u8>,
    pub stars_max: Option<u8>,
    /// Published in `[since, until)`.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the title or text.
    pub text: Option<String>,
    pub status: Option<TriageStatus>,
    /// Keyset pagination: only mentions after this one in the list's order
    /// (published_at in ms, id), that is, older ones.
    pub after: Option<(i64, i64)>,
}

/// One value bound to a placeholder.
enum Bind {
    Int(i64),
    Text(String),
}

impl MentionFilter {
    /// The WHERE clause (starting with "WHERE") and its values, in placeholder order.
    fn clause(&self) -> (String, Vec<Bind>) {
        let mut conds: Vec<String> = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let mut push = |cond: &str, values: Vec<Bind>| {
            let mut cond = cond.to_string();
            for v in values {
                binds.push(v);
                cond = cond.replacen("?", &format!("${}", binds.len()), 1);
            }
            conds.push(cond);
        };
        if let Some(w) = self.watch_id {
            push("m.watch_id = ?", vec![Bind::Int(w)]);
        }
        if let Some(s) = self.source_id {
            push("m.source_id = ?", vec![Bind::Int(s)]);
        }
        if let Some(l) = self.label {
            push(
                &format!("{LATEST_LABEL} = ?"),
                vec![Bind::Text(l.as_str().to_string())],
            );
        }
        if let Some(min) = self.stars_min {
            push("m.rating >= ?", vec![Bind::Int(i64::from(min))]);
        }
        if let Some(max) = self.stars_max {
            push("m.rating <= ?", vec![Bind::Int(i64::from(max))]);
        }
        if let Some(since) = self.since {
            push("m.published_at >= ?", vec![Bind::Int(to_ms(since))]);
        }
        if let Some(until) = self.until {
            push("m.published_at < ?", vec![Bind::Int(to_ms(until))]);
        }
        // Stored text has no control characters, so the search term drops them too (a
        // U+0000 in it would also make PostgreSQL refuse the query).
        if let Some(text) = self
            .text
            .as_deref()
            .map(without_controls)
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let pattern = format!("%{}%", like_escape(&text.to_lowercase()));
            // search_text is lowercased by the store with Unicode's rules, like the term.
            push(
                "m.search_text LIKE ? ESCAPE '\\'",
                vec![Bind::Text(pattern)],
            );
        }
        match self.status {
            Some(TriageStatus::Open) => push("(t.status IS NULL OR t.status = 'open')", vec![]),
            Some(s) => push("t.status = ?", vec![Bind::Text(s.as_str().to_string())]),
            None => {}
        }
        if let Some((published, id)) = self.after {
            push(
                "(m.published_at < ? OR (m.published_at = ? AND m.id < ?))",
                vec![Bind::Int(published), Bind::Int(published), Bind::Int(id)],
            );
        }
        let clause = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        (clause, binds)
    }
}

/// Escapes LIKE's wildcards (with `\` as the escape character).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(i),
            Bind::Text(s) => q.bind(s),
        };
    }
    q
}

fn triage_state(r: &AnyRow) -> Result<Option<TriageState>> {
    let status: Option<String> = r.try_get("triage_status")?;
    let Some(status) = status.as_deref().and_then(TriageStatus::parse) else {
        return Ok(None);
    };
    Ok(Some(TriageState {
        status,
        assignee: r.try_get("triage_assignee")?,
        note: r.try_get("triage_note")?,
        first_action_at: from_ms(r.try_get("triage_first_action_at")?),
        updated_at: from_ms(r.try_get("triage_updated_at")?),
        updated_by: r.try_get("triage_updated_by")?,
    }))
}

fn triaged_mention(r: &AnyRow) -> Result<TriagedMention> {
    Ok(TriagedMention {
        mention: stored_mention(r)?,
        triage: triage_state(r)?,
    })
}

/// The feedback-loop figures of a watch over a period.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TriageSummary {
    /// Negative mentions published in the period.
    pub negative: i64,
    /// Of those, the ones still open (nobody acted, or only acknowledged is not counted).
    pub open_negative: i64,
    /// Of those, the ones somebody acted on.
    pub actioned: i64,
    /// Median hours from publication to the first triage action, of the actioned ones.
    pub median_hours_to_first_action: Option<f64>,
    /// Negative mentions on sources that show owner replies (any reply ever).
    pub negative_replyable: i64,
    /// Of those, the ones with an owner reply.
    pub negative_replied: i64,
}

impl TriageSummary {
    pub fn reply_share(&self) -> Option<f64> {
        (self.negative_replyable > 0)
            .then(|| self.negative_replied as f64 / self.negative_replyable as f64)
    }
}

/// An alert with the team's handling of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertState {
    #[serde(flatten)]
    pub alert: AlertRow,
    /// The same as the alert's own fields (serialised there once).
    #[serde(skip)]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub snoozed_until: Option<DateTime<Utc>>,
}

const ALERT_COLUMNS: &str = "a.id, a.watch_id, w.name AS watch_name, a.rule, a.condition_key,
    a.severity, a.status, a.title, a.summary, a.action, a.evidence, a.opened_at, a.last_seen_at,
    a.last_notified_at, a.resolved_at, a.acknowledged_at, a.snoozed_until, a.notified_severity";

fn alert_state(r: &AnyRow) -> Result<AlertState> {
    let alert = super::alerts::alert_row(r)?;
    Ok(AlertState {
        acknowledged_at: alert.acknowledged_at,
        snoozed_until: alert.snoozed_until,
        alert,
    })
}

impl Store {
    /// Mentions matching a filter with their triage, newest first, skipping `offset`.
    pub async fn find_mentions(
        &self,
        f: &MentionFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<TriagedMention>> {
        let (clause, binds) = f.clause();
        let n = binds.len();
        let sql = format!(
            "SELECT {MENTION_COLUMNS}
             FROM mentions m
             JOIN sources s ON s.id = m.source_id
             JOIN watches w ON w.id = m.watch_id
             {latest}
             LEFT JOIN mention_triage t ON t.mention_id = m.id
             {clause}
             ORDER BY m.published_at DESC, m.id DESC
             LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2,
            latest = super::latest_sentiment(self.backend)
        );
        let q = bind_all(sqlx::query(&sql), binds)
            .bind(limit.max(0))
            .bind(offset.max(0));
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(triaged_mention).collect()
    }

    /// How many mentions match a filter (its `after` included).
    pub async fn count_found_mentions(&self, f: &MentionFilter) -> Result<i64> {
        self.count_found_mentions_upto(f, None).await
    }

    /// How many mentions match a filter, counting no further than `cap` when given (a
    /// list page says "10,000+" rather than read a million sentiments to be exact).
    pub async fn count_found_mentions_upto(
        &self,
        f: &MentionFilter,
        cap: Option<i64>,
    ) -> Result<i64> {
        let (clause, binds) = f.clause();
        // Join the triage only when a condition reads it (the label is a subquery): counting
        // a million mentions then reads one index.
        let triage = if f.status.is_some() {
            "LEFT JOIN mention_triage t ON t.mention_id = m.id"
        } else {
            ""
        };
        let n = binds.len();
        let sql = match cap {
            None => format!(
                "SELECT COUNT(*) AS n
                 FROM mentions m
                 {triage}
                 {clause}"
            ),
            Some(_) => format!(
                "SELECT COUNT(*) AS n FROM (SELECT 1 AS one
                 FROM mentions m
                 {triage}
                 {clause}
                 LIMIT ${}) c",
                n + 1
            ),
        };
        let mut q = bind_all(sqlx::query(&sql), binds);
        if let Some(cap) = cap {
            q = q.bind(cap.max(0));
        }
        let row = q.fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// One mention with its triage.
    pub async fn triaged_mention(&self, id: i64) -> Result<Option<TriagedMention>> {
        let sql = format!(
            "SELECT {MENTION_COLUMNS}
             FROM mentions m
             JOIN sources s ON s.id = m.source_id
             JOIN watches w ON w.id = m.watch_id
             {latest}
             LEFT JOIN mention_triage t ON t.mention_id = m.id
             WHERE m.id = $1",
            latest = super::latest_sentiment(self.backend)
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(triaged_mention).transpose()
    }

    /// Applies a triage change by `by` and records it in the history, in one
    /// transaction. `None` when the mention does not exist.
    pub async fn update_triage(
        &self,
        mention_id: i64,
        change: &TriageUpdate,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<TriageState>> {
        let now = to_ms(now);
        // Control characters never reach the database (see `ingest`); an empty value
        // clears the field.
        let clean = |v: &Option<String>| {
            v.as_deref()
                .map(|s| Some(without_controls(s).trim().to_string()).filter(|s| !s.is_empty()))
        };
        let (assignee, note) = (clean(&change.assignee), clean(&change.note));
        let by = by
            .map(without_controls)
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(str::to_string);
        let mut tx = self.pool.begin().await?;
        // One statement changes only the fields given, on the row as it is when written
        // (not as read earlier), so that two people editing different fields at once both
        // keep their change, and the first change of a mention cannot collide with
        // another. Being the transaction's first statement, a write, it also takes
        // SQLite's write lock up front (a read first would fail to upgrade it when
        // another writer went in between).
        let row = sqlx::query(
            "INSERT INTO mention_triage (mention_id, status, assignee, note, first_action_at,
                updated_at, updated_by)
             SELECT m.id, COALESCE($2, 'open'), $4, $6, $7, $7, $8 FROM mentions m WHERE m.id = $1
             ON CONFLICT (mention_id) DO UPDATE SET
                status = COALESCE($2, mention_triage.status),
                assignee = CASE WHEN $3 = 1 THEN $4 ELSE mention_triage.assignee END,
                note = CASE WHEN $5 = 1 THEN $6 ELSE mention_triage.note END,
                updated_at = $7, updated_by = $8
             RETURNING status, assignee, note, first_action_at",
        )
        .bind(mention_id)
        .bind(change.status.map(|s| s.as_str()))
        .bind(i64::from(assignee.is_some()))
        .bind(assignee.flatten())
        .bind(i64::from(note.is_some()))
        .bind(note.flatten())
        .bind(now)
        .bind(by.clone())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            // No such mention.
            return Ok(None);
        };
        let status =
            TriageStatus::parse(&row.try_get::<String, _>("status")?).unwrap_or(TriageStatus::Open);
        let assignee: Option<String> = row.try_get("assignee")?;
        let note: Option<String> = row.try_get("note")?;
        let first: i64 = row.try_get("first_action_at")?;
        sqlx::query(
            "INSERT INTO mention_triage_history (mention_id, status, assignee, note, changed_at,
                changed_by) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(mention_id)
        .bind(status.as_str())
        .bind(assignee.clone())
        .bind(note.clone())
        .bind(now)
        .bind(by.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(TriageState {
            status,
            assignee,
            note,
            first_action_at: from_ms(first),
            updated_at: from_ms(now),
            updated_by: by,
        }))
    }

    /// A mention's triage changes in the order they were applied (the id's: a change
    /// that waited for another one's lock carries the earlier time it was asked at).
    pub async fn triage_history(&self, mention_id: i64) -> Result<Vec<TriageEvent>> {
        let rows = sqlx::query(
            "SELECT status, assignee, note, changed_at, changed_by FROM mention_triage_history
             WHERE mention_id = $1 ORDER BY id",
        )
        .bind(mention_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TriageEvent {
                    status: TriageStatus::parse(&r.try_get::<String, _>("status")?)
                        .unwrap_or(TriageStatus::Open),
                    assignee: r.try_get("assignee")?,
                    note: r.try_get("note")?,
                    changed_at: from_ms(r.try_get("changed_at")?),
                    changed_by: r.try_get("changed_by")?,
                })
            })
            .collect()
    }

    /// Open negatives, time to first action and owner-reply share of the negative
    /// mentions of a watch published since `since`.
    pub async fn triage_summary(
        &self,
        watch_id: i64,
        since: DateTime<Utc>,
    ) -> Result<TriageSummary> {
        let sql = format!(
            "SELECT COUNT(*) AS neg,
                COALESCE(SUM(CASE WHEN t.status IS NULL OR t.status = 'open' THEN 1 ELSE 0 END), 0) AS open_neg,
                COALESCE(SUM(CASE WHEN m.source_id IN (SELECT s.id FROM sources s WHERE s.watch_id = $1
                    AND EXISTS (SELECT 1 FROM mentions r WHERE r.source_id = s.id AND r.owner_reply IS NOT NULL))
                    THEN 1 ELSE 0 END), 0) AS replyable,
                COALESCE(SUM(CASE WHEN m.owner_reply IS NOT NULL THEN 1 ELSE 0 END), 0) AS replied
             FROM mentions m
             LEFT JOIN mention_triage t ON t.mention_id = m.id
             WHERE m.watch_id = $2 AND {LATEST_LABEL} = 'negative' AND m.published_at >= $3"
        );
        let r = sqlx::query(&sql)
            .bind(watch_id)
            .bind(watch_id)
            .bind(to_ms(since))
            .fetch_one(&self.pool)
            .await?;
        let mut summary = TriageSummary {
            negative: r.try_get("neg")?,
            open_negative: r.try_get("open_neg")?,
            negative_replyable: r.try_get("replyable")?,
            negative_replied: r.try_get("replied")?,
            ..Default::default()
        };
        let sql = format!(
            "SELECT m.published_at, t.first_action_at
             FROM mentions m
             JOIN mention_triage t ON t.mention_id = m.id
             WHERE m.watch_id = $1 AND {LATEST_LABEL} = 'negative' AND m.published_at >= $2"
        );
        let rows = sqlx::query(&sql)
            .bind(watch_id)
            .bind(to_ms(since))
            .fetch_all(&self.pool)
            .await?;
        let mut delays = Vec::with_capacity(rows.len());
        for row in &rows {
            let published: i64 = row.try_get("published_at")?;
            let first: i64 = row.try_get("first_action_at")?;
            delays.push((first - published).max(0) as f64 / 3_600_000.0);
        }
        summary.actioned = delays.len() as i64;
        summary.median_hours_to_first_action = super::median(&mut delays);
        Ok(summary)
    }

    /// Alerts of one watch or all, open ones first then the most recently seen, with
    /// their acknowledgement and snooze.
    pub async fn alert_states(
        &self,
        watch_id: Option<i64>,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<AlertState>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a JOIN watches w ON w.id = a.watch_id
             WHERE ($1 = 0 OR a.watch_id = $2)
               AND (a.status = 'open' OR a.last_seen_at >= $3)
             ORDER BY CASE WHEN a.status = 'open' THEN 0 ELSE 1 END, a.last_seen_at DESC, a.id DESC
             LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(i64::from(watch_id.is_some()))
            .bind(watch_id.unwrap_or(0))
            .bind(to_ms(since))
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_state).collect()
    }

    /// One alert with its handling.
    pub async fn alert_state(&self, id: i64) -> Result<Option<AlertState>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a JOIN watches w ON w.id = a.watch_id WHERE a.id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(alert_state).transpose()
    }

    /// Marks an alert as seen by the team. `false` when there is no such alert.
    pub async fn acknowledge_alert(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET acknowledged_at = COALESCE(acknowledged_at, $1) WHERE id = $2",
        )
        .bind(to_ms(now))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Snoozes an alert until `until` (`None` lifts the snooze). `false` when there is
    /// no such alert.
    pub async fn snooze_alert(&self, id: i64, until: Option<DateTime<Utc>>) -> Result<bool> {
        let done = sqlx::query("UPDATE alerts SET snoozed_until = $1 WHERE id = $2")
            .bind(until.map(to_ms))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Asks the scheduler to fetch a polled source now: its job becomes due at `now`
    /// (the scheduler reads due times from the jobs table on every pass). `false` for an
    /// unknown, disabled or push source, which nothing polls.
    pub async fn request_fetch(&self, source_id: i64, now: DateTime<Utc>) -> Result<bool> {
        let Some(source) = self.source(source_id).await? else {
            return Ok(false);
        };
        if !source.enabled || source.kind == super::PUSH_KIND {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO jobs (name, next_run_at) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET next_run_at = $3",
        )
        .bind(fetch_job_name(source_id))
        .bind(to_ms(now))
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_number_their_placeholders_in_order() {
        let f = MentionFilter {
            watch_id: Some(1),
            text: Some("50%_off".into()),
            status: Some(TriageStatus::Open),
            after: Some((10, 3)),
            ..Default::default()
        };
        let (clause, binds) = f.clause();
        assert_eq!(binds.len(), 5);
        assert!(clause.contains("m.watch_id = $1"), "{clause}");
        assert!(clause.contains("LIKE $2"), "{clause}");
        assert!(clause.contains("m.id < $5"), "{clause}");
        assert!(matches!(&binds[1], Bind::Text(p) if p == "%50\\%\\_off%"));
    }
}
