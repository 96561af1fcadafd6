//! The email outbox: a message is queued in the same transaction as what caused it,
//! claimed with a lease by one sender at a time, and marked sent only after the
//! server accepted it. A `dedup_key` makes "send once" a database constraint.

use anyhow::Result;
use sqlx::any::Any;
use sqlx::{Row, Transaction};

use super::{database_now, Store};

/// A queued email.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEmail {
    pub id: i64,
    pub kind: String,
    pub recipients: Vec<String>,
    pub subject: String,
    /// The complete RFC 5322 message.
    pub message: String,
    pub attempts: i64,
    /// Recipients the server already accepted it for: a retry skips them.
    pub delivered_to: Vec<String>,
    /// Recipients the server refused for good: not tried again.
    pub refused: Vec<Refusal>,
}

impl OutboxEmail {
    /// Recipients still waiting for this email, each address once (compared ignoring
    /// case: one envelope goes to each, so a repeated address would get it twice).
    pub fn pending_recipients(&self) -> Vec<String> {
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let mut pending: Vec<String> = Vec::new();
        for r in &self.recipients {
            let done = self.delivered_to.iter().any(|d| same(d, r))
                || self.refused.iter().any(|x| same(&x.address, r))
                || pending.iter().any(|p| same(p, r));
            if !done {
                pending.push(r.clone());
            }
        }
        pending
    }
}

/// A recipient the mail server refused for good (a 5xx reply), and what it said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub address: String,
    pub reason: String,
}

/// An email that did not reach every recipient, for `zmot status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UndeliveredEmail {
    pub id: i64,
    pub subject: String,
    /// queued (being retried), sent (to the others) or failed.
    pub status: String,
    pub created_at: i64,
    pub refused: Vec<Refusal>,
    pub last_error: Option<String>,
}

/// Counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxStats {
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
}

/// A new email for the outbox.
pub struct NewEmail<'a> {
    pub kind: &'a str,
    /// Same key, same email: a second enqueue with it is ignored.
    pub dedup_key: Option<&'a str>,
    pub watch_id: Option<i64>,
    pub recipients: &'a [String],
    pub subject: &'a str,
    pub message: &'a str,
}

impl Store {
    /// Queues an email; returns its id, or `None` when one with the same key exists.
    pub async fn enqueue_email(&self, email: &NewEmail<'_>) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let id = self.enqueue_email_in(&mut tx, email).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Queues an email inside a caller's transaction, due at once by the database's clock
    /// (which the senders' claims go by).
    pub async fn enqueue_email_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        email: &NewEmail<'_>,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(&format!(
            "INSERT INTO outbox (kind, dedup_key, watch_id, recipients, subject, message, status,
                attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, {now}, {now})
             ON CONFLICT (dedup_key) DO NOTHING
             RETURNING id",
            now = database_now(self.backend)
        ))
        .bind(email.kind)
        .bind(email.dedup_key)
        .bind(email.watch_id)
        .bind(serde_json::to_string(email.recipients)?)
        .bind(email.subject)
        .bind(email.message)
        .fetch_optional(&mut **tx)
        .await?;
        row.map(|r| r.try_get("id").map_err(Into::into)).transpose()
    }

    /// Claims up to `limit` due emails for this worker for `lease_ms`. Another worker
    /// cannot claim them until the lease expires (a crashed sender's emails come back).
    /// Due and expired are decided on the database's clock, and the lease ends on it, so
    /// that senders whose clocks disagree never hold one email at once.
    pub async fn claim_emails(
        &self,
        worker: &str,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<OutboxEmail>> {
        let now = database_now(self.backend);
        let candidates = sqlx::query(&format!(
            "SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= {now}
               AND (lease_until IS NULL OR lease_until < {now})
             ORDER BY id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for c in candidates {
            let id: i64 = c.try_get("id")?;
            // Compare-and-set: only one worker's update matches.
            let row = sqlx::query(&format!(
                "UPDATE outbox SET lease_owner = $1, lease_until = {now} + $2
                 WHERE id = $3 AND status = 'queued'
                   AND (lease_until IS NULL OR lease_until < {now})
                 RETURNING id, kind, recipients, subject, message, attempts, delivered_to, refused"
            ))
            .bind(worker)
            .bind(lease_ms)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row {
                let recipients: String = r.try_get("recipients")?;
                let delivered_to: String = r.try_get("delivered_to")?;
                let refused: String = r.try_get("refused")?;
                claimed.push(OutboxEmail {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    recipients: serde_json::from_str(&recipients)?,
                    subject: r.try_get("subject")?,
                    message: r.try_get("message")?,
                    attempts: r.try_get("attempts")?,
                    delivered_to: serde_json::from_str(&delivered_to)?,
                    refused: serde_json::from_str(&refused)?,
                });
            }
        }
        Ok(claimed)
    }

    /// Whether an email with this dedup key was ever queued (sent or not).
    pub async fn email_exists(&self, dedup_key: &str) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE dedup_key = $1")
            .bind(dedup_key)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Makes every queued email due now (after the mail server was fixed, rather than
    /// waiting for the backoff). Returns how many.
    pub async fn retry_queued_now(&self) -> Result<u64> {
        let r = sqlx::query(&format!(
            "UPDATE outbox SET next_attempt_at = {} WHERE status = 'queued'",
            database_now(self.backend)
        ))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Records, right after each answer of the server, who has the email and who was
    /// refused, so that a sender dying mid-list never sends twice to the same address.
    ///
    /// Like every write of a claimed email below, only by the worker that holds it:
    /// `false` when another worker claimed it since (this one's lease ran out), and
    /// nothing is written.
    pub async fn record_email_recipients(
        &self,
        id: i64,
        worker: &str,
        delivered_to: &[String],
        refused: &[Refusal],
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE outbox SET delivered_to = $1, refused = $2 WHERE id = $3 AND lease_owner = $4",
        )
        .bind(serde_json::to_string(delivered_to)?)
        .bind(serde_json::to_string(refused)?)
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Extends the lease of an email `worker` claimed, before each recipient, so that a
    /// delivery to many recipients (each may wait out a timeout) does not outlast it:
    /// `false` when another worker has claimed it since, and the sender must stop.
    /// Like the claim's, the lease ends `lease_ms` from now on the database's clock.
    pub async fn renew_email_lease(&self, id: i64, worker: &str, lease_ms: i64) -> Result<bool> {
        let r = sqlx::query(&format!(
            "UPDATE outbox SET lease_until = {} + $1
             WHERE id = $2 AND lease_owner = $3 AND status = 'queued'",
            database_now(self.backend)
        ))
        .bind(lease_ms)
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Marks an email sent (the server accepted it for every recipient it did not
    /// refuse); `note` says who was refused, if anyone. `false`: not `worker`'s any more.
    pub async fn mark_email_sent(&self, id: i64, worker: &str, note: Option<&str>) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1,
                lease_owner = NULL, lease_until = NULL, last_error = $2
             WHERE id = $3 AND lease_owner = $4",
        )
        .bind(self.own_now_ms())
        .bind(note)
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Emails created since `since_ms` that did not reach every recipient (refused
    /// addresses, still retrying, or given up), newest first.
    pub async fn undelivered_emails(&self, since_ms: i64) -> Result<Vec<UndeliveredEmail>> {
        let rows = sqlx::query(
            "SELECT id, subject, status, created_at, refused, last_error FROM outbox
             WHERE created_at >= $1
               AND (status = 'failed' OR refused <> '[]' OR (status = 'queued' AND attempts > 0))
             ORDER BY id DESC LIMIT 50",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let refused: String = r.try_get("refused")?;
                Ok(UndeliveredEmail {
                    id: r.try_get("id")?,
                    subject: r.try_get("subject")?,
                    status: r.try_get("status")?,
                    created_at: r.try_get("created_at")?,
                    refused: serde_json::from_str(&refused)?,
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect()
    }

    /// Records a failed attempt: retried `retry_in_ms` from now (on the database's clock,
    /// which the claims go by), or given up when `None`.
    pub async fn mark_email_failed(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry_in_ms: Option<i64>,
    ) -> Result<bool> {
        let r = sqlx::query(&format!(
            "UPDATE outbox SET status = $1, attempts = attempts + 1, last_error = $2,
                next_attempt_at = {} + $3, lease_owner = NULL, lease_until = NULL
             WHERE id = $4 AND lease_owner = $5",
            database_now(self.backend)
        ))
        .bind(if retry_in_ms.is_some() {
            "queued"
        } else {
            "failed"
        })
        .bind(error)
        .bind(retry_in_ms.unwrap_or(0).max(0))
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut s = OutboxStats::default();
        for r in rows {
            let status: String = r.try_get("status")?;
            let n: i64 = r.try_get("n")?;
            match status.as_str() {
                "queued" => s.queued = n,
                "sent" => s.sent = n,
                _ => s.failed += n,
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::{OutboxEmail, Refusal};

    #[test]
    fn each_pending_address_once_and_none_that_is_done() {
        let email = OutboxEmail {
            id: 1,
            kind: "alert".into(),
            recipients: [
                "a@x.test", "B@x.test", "b@x.test", "c@x.test", "A@X.test", "d@x.test",
            ]
            .map(String::from)
            .to_vec(),
            subject: String::new(),
            message: String::new(),
            attempts: 0,
            delivered_to: vec!["a@x.test".into()],
            refused: vec![Refusal {
                address: "C@x.test".into(),
                reason: "550".into(),
            }],
        };
        assert_eq!(email.pending_recipients(), ["B@x.test", "d@x.test"]);
    }
}
