//! Alerts as stored: one row per episode of a condition (opened, seen again while it
//! persists, resolved). An evaluation's changes and the email announcing them are
//! written in one transaction, with guards that make a second worker's identical
//! evaluation fail as a whole instead of sending twice.

use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{from_ms, to_ms, NewEmail, Store};

/// One piece of evidence: a mention that caused the alert.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    pub mention_id: i64,
    pub source: String,
    pub url: Option<String>,
    pub author: Option<String>,
    pub rating: Option<u8>,
    pub score: Option<f32>,
    pub excerpt: String,
    pub published_at: DateTime<Utc>,
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub watch_id: i64,
    pub watch: String,
    pub rule: String,
    pub condition_key: String,
    pub severity: String,
    pub status: String,
    pub title: String,
    pub summary: String,
    pub action: String,
    pub evidence: Vec<Evidence>,
    pub opened_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub last_notified_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Someone took it on (from the dashboard): reminders stop.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Quiet until then: no reminder, no escalation email.
    pub snoozed_until: Option<DateTime<Utc>>,
    /// The highest severity announced for this alert (none while unannounced).
    pub notified_severity: Option<String>,
}

/// An alert as it stood at a given time (the end of a digest's week).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertAsOf {
    pub id: i64,
    pub rule: String,
    pub condition_key: String,
    /// Its severity then, and its title when it took that severity.
    pub severity: String,
    pub title: String,
    pub opened_at: DateTime<Utc>,
    /// When it was resolved, if it was by then.
    pub resolved_at: Option<DateTime<Utc>>,
}

impl AlertAsOf {
    /// Whether it was still open then.
    pub fn open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// What an alert to open says.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub rule: String,
    pub condition_key: String,
    pub severity: String,
    pub title: String,
    pub summary: String,
    pub action: String,
    pub evidence: Vec<Evidence>,
}

/// One change decided by an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    /// A condition with no open alert: open one (notified or, inside the cooldown, not).
    Open { alert: NewAlert, notify: bool },
    /// An open alert whose condition persists: refresh what it says; `remind` when a
    /// reminder goes out now (the guard: it was last notified at `last_notified`), and
    /// then `notified_severity` is the highest severity announced so far.
    Persist {
        id: i64,
        alert: NewAlert,
        remind: bool,
        last_notified: Option<DateTime<Utc>>,
        notified_severity: Option<String>,
    },
    /// An open alert whose condition cleared; `notify` when the resolution is announced
    /// (which starts the cooldown like any notification).
    Resolve { id: i64, notify: bool },
}

/// The last notification of a condition.
#[derive(Debug, Clone, PartialEq)]
pub struct LastNotice {
    pub at: DateTime<Utc>,
    pub severity: Option<String>,
    /// When that episode's resolution was announced, if its last notification was the
    /// "resolved" one: the recipients were last told it is over.
    pub resolution_announced: Option<DateTime<Utc>>,
}

/// Why an evaluation could not be written.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied {
        email_id: Option<i64>,
    },
    /// Another worker changed the same alerts first; nothing was written.
    Conflict,
}

const COLUMNS: &str = "a.id, a.watch_id, w.name AS watch_name, a.rule, a.condition_key, a.severity,
    a.status, a.title, a.summary, a.action, a.evidence, a.opened_at, a.last_seen_at,
    a.last_notified_at, a.resolved_at, a.acknowledged_at, a.snoozed_until, a.notified_severity";

pub(super) fn alert_row(r: &AnyRow) -> Result<AlertRow> {
    let evidence: String = r.try_get("evidence")?;
    Ok(AlertRow {
        id: r.try_get("id")?,
        watch_id: r.try_get("watch_id")?,
        watch: r.try_get("watch_name")?,
        rule: r.try_get("rule")?,
        condition_key: r.try_get("condition_key")?,
        severity: r.try_get("severity")?,
        status: r.try_get("status")?,
        title: r.try_get("title")?,
        summary: r.try_get("summary")?,
        action: r.try_get("action")?,
        evidence: serde_json::from_str(&evidence).unwrap_or_default(),
        opened_at: from_ms(r.try_get("opened_at")?),
        last_seen_at: from_ms(r.try_get("last_seen_at")?),
        last_notified_at: r
            .try_get::<Option<i64>, _>("last_notified_at")?
            .map(from_ms),
        resolved_at: r.try_get::<Option<i64>, _>("resolved_at")?.map(from_ms),
        acknowledged_at: r.try_get::<Option<i64>, _>("acknowledged_at")?.map(from_ms),
        snoozed_until: r.try_get::<Option<i64>, _>("snoozed_until")?.map(from_ms),
        notified_severity: r.try_get("notified_severity")?,
    })
}

impl Store {
    /// Open alerts of a watch.
    pub async fn open_alerts(&self, watch_id: i64) -> Result<Vec<AlertRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts a JOIN watches w ON w.id = a.watch_id
             WHERE a.watch_id = $1 AND a.status = 'open' ORDER BY a.opened_at, a.id"
        );
        let rows = sqlx::query(&sql)
            .bind(watch_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_row).collect()
    }

    /// Open alerts, and alerts resolved since `since`, of one watch or all, newest first.
    pub async fn alerts(
        &self,
        watch_id: Option<i64>,
        since: DateTime<Utc>,
    ) -> Result<Vec<AlertRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts a JOIN watches w ON w.id = a.watch_id
             WHERE ($1 = 0 OR a.watch_id = $2)
               AND (a.status = 'open' OR a.last_seen_at >= $3)
             ORDER BY CASE WHEN a.status = 'open' THEN 0 ELSE 1 END, a.last_seen_at DESC, a.id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(i64::from(watch_id.is_some()))
            .bind(watch_id.unwrap_or(0))
            .bind(to_ms(since))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_row).collect()
    }

    /// The alerts of a watch that were open at some time in `[from, to)`, oldest first,
    /// each as it stood at `to`: the severity (and title) of its last change before
    /// then, and its resolution only if it came before then. An alert opened at or after
    /// `to` is not among them.
    pub async fn alerts_as_of(
        &self,
        watch_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AlertAsOf>> {
        // Every alert has a change at its opening (migration 9 gave older alerts one,
        // with their severity of the day). One without any before `to` was opened by an
        // older zmot still running beside this one during an upgrade: its current
        // severity and title are the best known.
        let rows = sqlx::query(
            "SELECT a.id, a.rule, a.condition_key, a.opened_at,
                    CASE WHEN a.resolved_at < $2 THEN a.resolved_at END AS resolved_then,
                    COALESCE(c.severity, a.severity) AS severity_then,
                    COALESCE(c.title, a.title) AS title_then
             FROM alerts a
             LEFT JOIN alert_severity_changes c ON c.id = (
                 SELECT c2.id FROM alert_severity_changes c2
                 WHERE c2.alert_id = a.id AND c2.changed_at < $2
                 ORDER BY c2.changed_at DESC, c2.id DESC LIMIT 1)
             WHERE a.watch_id = $1 AND a.opened_at < $2
               AND (a.resolved_at IS NULL OR a.resolved_at >= $3)
             ORDER BY a.opened_at, a.id",
        )
        .bind(watch_id)
        .bind(to_ms(to))
        .bind(to_ms(from))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AlertAsOf {
                    id: r.try_get("id")?,
                    rule: r.try_get("rule")?,
                    condition_key: r.try_get("condition_key")?,
                    severity: r.try_get("severity_then")?,
                    title: r.try_get("title_then")?,
                    opened_at: from_ms(r.try_get("opened_at")?),
                    resolved_at: r.try_get::<Option<i64>, _>("resolved_then")?.map(from_ms),
                })
            })
            .collect()
    }

    /// The last notification of a condition of a watch, in any episode: when, the
    /// highest severity that episode announced, and whether it was the "resolved" one.
    pub async fn last_notice(
        &self,
        watch_id: i64,
        condition_key: &str,
    ) -> Result<Option<LastNotice>> {
        let row = sqlx::query(
            "SELECT last_notified_at, notified_severity, resolved_at FROM alerts
             WHERE watch_id = $1 AND condition_key = $2 AND last_notified_at IS NOT NULL
             ORDER BY last_notified_at DESC, id DESC LIMIT 1",
        )
        .bind(watch_id)
        .bind(condition_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let at: i64 = r.try_get("last_notified_at")?;
            let resolved_at: Option<i64> = r.try_get("resolved_at")?;
            Ok(LastNotice {
                at: from_ms(at),
                severity: r.try_get("notified_severity")?,
                // The resolution is written with the same timestamp as its notification.
                resolution_announced: resolved_at.filter(|&t| t == at).map(from_ms),
            })
        })
        .transpose()
    }

    /// Writes an evaluation's changes and, when given, the email announcing them, in one
    /// transaction. Every change is guarded by the state it was decided from; if another
    /// worker got there first, nothing is written.
    pub async fn apply_alert_changes(
        &self,
        watch_id: i64,
        changes: &[AlertChange],
        now: DateTime<Utc>,
        email: Option<&NewEmail<'_>>,
    ) -> Result<ApplyOutcome> {
        let now = to_ms(now);
        let mut tx = self.pool.begin().await?;
        for change in changes {
            let ok = match change {
                AlertChange::Open { alert, notify } => {
                    let r = sqlx::query(
                        "INSERT INTO alerts (watch_id, rule, condition_key, severity, status, title,
                            summary, action, evidence, opened_at, last_seen_at, last_notified_at,
                            notified_severity)
                         VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9, $9, $10, $11)
                         RETURNING id",
                    )
                    .bind(watch_id)
                    .bind(&alert.rule)
                    .bind(&alert.condition_key)
                    .bind(&alert.severity)
                    .bind(&alert.title)
                    .bind(&alert.summary)
                    .bind(&alert.action)
                    .bind(serde_json::to_string(&alert.evidence)?)
                    .bind(now)
                    .bind(notify.then_some(now))
                    .bind(notify.then_some(alert.severity.as_str()))
                    .fetch_one(&mut *tx)
                    .await;
                    match r {
                        Ok(row) => {
                            // Its first severity, from its opening.
                            sqlx::query(
                                "INSERT INTO alert_severity_changes
                                    (alert_id, severity, title, changed_at)
                                 VALUES ($1, $2, $3, $4)",
                            )
                            .bind(row.try_get::<i64, _>("id")?)
                            .bind(&alert.severity)
                            .bind(&alert.title)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                            true
                        }
                        // The unique index on open conditions: another worker opened it.
                        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => false,
                        Err(e) => return Err(e.into()),
                    }
                }
                AlertChange::Persist {
                    id,
                    alert,
                    remind,
                    last_notified,
                    notified_severity,
                } => {
                    // Before the update, which overwrites the severity it is compared
                    // with; if the update's guard fails, the transaction rolls it back.
                    sqlx::query(
                        "INSERT INTO alert_severity_changes (alert_id, severity, title, changed_at)
                         SELECT id, $1, $2, $3 FROM alerts
                         WHERE id = $4 AND status = 'open' AND severity <> $1",
                    )
                    .bind(&alert.severity)
                    .bind(&alert.title)
                    .bind(now)
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?;
                    let r = sqlx::query(
                        "UPDATE alerts SET severity = $1, title = $2, summary = $3, action = $4,
                            evidence = $5, last_seen_at = $6,
                            last_notified_at = CASE WHEN $7 = 1 THEN $8 ELSE last_notified_at END,
                            notified_severity = $11
                         WHERE id = $9 AND status = 'open'
                           AND COALESCE(last_notified_at, -1) = $10",
                    )
                    .bind(&alert.severity)
                    .bind(&alert.title)
                    .bind(&alert.summary)
                    .bind(&alert.action)
                    .bind(serde_json::to_string(&alert.evidence)?)
                    .bind(now)
                    .bind(i64::from(*remind))
                    .bind(now)
                    .bind(*id)
                    .bind(last_notified.map(to_ms).unwrap_or(-1))
                    .bind(notified_severity.as_deref())
                    .execute(&mut *tx)
                    .await?;
                    r.rows_affected() == 1
                }
                AlertChange::Resolve { id, notify } => {
                    // The severity history needs no row: an alert keeps the severity it
                    // had when it resolved, and `resolved_at` says when.
                    let r = sqlx::query(
                        "UPDATE alerts SET status = 'resolved', resolved_at = $1, last_seen_at = $1,
                            last_notified_at = CASE WHEN $2 = 1 THEN $3 ELSE last_notified_at END
                         WHERE id = $4 AND status = 'open'",
                    )
                    .bind(now)
                    .bind(i64::from(*notify))
                    .bind(now)
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?;
                    r.rows_affected() == 1
                }
            };
            if !ok {
                tx.rollback().await?;
                return Ok(ApplyOutcome::Conflict);
            }
        }
        let email_id = match email {
            Some(e) => self.enqueue_email_in(&mut tx, e).await?,
            None => None,
        };
        tx.commit().await?;
        Ok(ApplyOutcome::Applied { email_id })
    }
}
