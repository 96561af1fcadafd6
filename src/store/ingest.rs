//! Idempotent, batched ingestion. The same mention fetched twice is stored once
//! (unique per source and external id); an edited one is updated and its previous
//! version kept in `mention_revisions`; a whole batch commits or nothing does.

use std::collections::HashMap;

use anyhow::Result;
use sqlx::any::Any;
use sqlx::{Row, Transaction};

use super::{now_ms, to_ms, SourceRow, Store};
use crate::domain::{search_text, ScoredMention, Sentiment};

/// What one ingested batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestStats {
    /// Items in the batch (after removing repeats of the same external id).
    pub seen: u64,
    pub new: u64,
    /// Edited text, rating or reply, or changed engagement counts.
    pub updated: u64,
    pub unchanged: u64,
}

impl IngestStats {
    pub fn add(&mut self, o: IngestStats) {
        self.seen += o.seen;
        self.new += o.new;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
    }
}

/// Which model scored a batch: (model id, model version).
pub type ModelInfo<'a> = (&'a str, &'a str);

const MENTION_COLUMNS: &str =
    "source_id, watch_id, source_kind, external_id, url, author, title, body, \
     rating, likes, replies, reposts, language, published_at, fetched_at, updated_at, owner_reply, \
     owner_reply_at, content_hash, revision_hash, revision, extra, search_text";
const MENTION_PARAMS: usize = 23;

struct Existing {
    id: i64,
    revision: i64,
    revision_hash: String,
    likes: i64,
    replies: i64,
    reposts: i64,
}

impl Store {
    /// Stores a batch of mentions for one source in one transaction.
    pub async fn ingest(
        &self,
        source: &SourceRow,
        batch: &[ScoredMention],
        model: Option<ModelInfo<'_>>,
    ) -> Result<IngestStats> {
        let mut tx = self.pool.begin().await?;
        let stats = self.ingest_in(&mut tx, source, batch, model).await?;
        tx.commit().await?;
        Ok(stats)
    }

    pub(super) async fn ingest_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        source: &SourceRow,
        batch: &[ScoredMention],
        model: Option<ModelInfo<'_>>,
    ) -> Result<IngestStats> {
        // Every write of a mention passes here: whatever the source, no text reaches the
        // database with control characters (PostgreSQL would refuse the whole batch for
        // one U+0000). Copied only in the rare batch that has any.
        let cleaned: Vec<ScoredMention>;
        let batch = if batch.iter().any(|m| m.mention.has_controls()) {
            cleaned = batch
                .iter()
                .map(|m| ScoredMention {
                    mention: m.mention.without_controls(),
                    sentiment: m.sentiment,
                })
                .collect();
            &cleaned[..]
        } else {
            batch
        };
        // The last occurrence of an external id wins: it is the freshest.
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            index.insert(m.mention.external_id.as_str(), i);
        }
        let mut unique: Vec<&ScoredMention> = batch
            .iter()
            .enumerate()
            .filter(|(i, m)| index[m.mention.external_id.as_str()] == *i)
            .map(|(_, m)| m)
            .collect();
        unique.sort_by_key(|m| m.mention.published_at);

        let mut stats = IngestStats {
            seen: unique.len() as u64,
            ..Default::default()
        };
        let chunk = (self.backend.max_params() / MENTION_PARAMS).clamp(1, 1000);
        for part in unique.chunks(chunk) {
            let s = self.ingest_chunk(tx, source, part, model).await?;
            stats.add(s);
        }
        if stats.new > 0 {
            // Same transaction as the inserts: the count cannot drift from the rows.
            sqlx::query("UPDATE sources SET mention_count = mention_count + $1 WHERE id = $2")
                .bind(stats.new as i64)
                .bind(source.id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(stats)
    }

    async fn ingest_chunk(
        &self,
        tx: &mut Transaction<'static, Any>,
        source: &SourceRow,
        part: &[&ScoredMention],
        model: Option<ModelInfo<'_>>,
    ) -> Result<IngestStats> {
        let now = now_ms();
        let mut stats = IngestStats::default();

        // 1. Which of these are already stored?
        let b = self.backend;
        let placeholders = (0..part.len())
            .map(|i| b.param(i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT id, external_id, revision, revision_hash, likes, replies, reposts FROM mentions
             WHERE source_id = {} AND external_id IN ({placeholders})",
            b.param(1)
        );
        let mut q = sqlx::query(&sql).bind(source.id);
        for m in part {
            q = q.bind(m.mention.external_id.as_str());
        }
        let mut existing: HashMap<String, Existing> = HashMap::new();
        for row in q.fetch_all(&mut **tx).await? {
            existing.insert(
                row.try_get("external_id")?,
                Existing {
                    id: row.try_get("id")?,
                    revision: row.try_get("revision")?,
                    revision_hash: row.try_get("revision_hash")?,
                    likes: row.try_get("likes")?,
                    replies: row.try_get("replies")?,
                    reposts: row.try_get("reposts")?,
                },
            );
        }

        // 2. New ones: one multi-row insert.
        let fresh: Vec<&ScoredMention> = part
            .iter()
            .copied()
            .filter(|m| !existing.contains_key(&m.mention.external_id))
            .collect();
        let mut scored: Vec<(i64, Sentiment)> = Vec::new();
        if !fresh.is_empty() {
            let rows = (0..fresh.len())
                .map(|r| {
                    let cols = (1..=MENTION_PARAMS)
                        .map(|c| b.param(r * MENTION_PARAMS + c))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("({cols})")
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO mentions ({MENTION_COLUMNS}) VALUES {rows} RETURNING id, external_id"
            );
            let mut q = sqlx::query(&sql);
            for sm in &fresh {
                let m = &sm.mention;
                q = q
                    .bind(source.id)
                    .bind(source.watch_id)
                    .bind(source.kind.as_str())
                    .bind(m.external_id.as_str())
                    .bind(m.url.as_deref())
                    .bind(m.author.as_deref())
                    .bind(m.title.as_deref())
                    .bind(m.text.as_str())
                    .bind(m.rating.map(i64::from))
                    .bind(m.engagement.likes)
                    .bind(m.engagement.replies)
                    .bind(m.engagement.reposts)
                    .bind(m.language.as_deref())
                    .bind(to_ms(m.published_at))
                    .bind(now)
                    .bind(now)
                    .bind(m.owner_reply.as_deref())
                    .bind(m.owner_reply_at.map(to_ms))
                    .bind(m.content_hash())
                    .bind(m.revision_hash())
                    .bind(1i64)
                    .bind(m.extra.as_ref().map(|e| e.to_string()))
                    .bind(search_text(m.title.as_deref(), &m.text));
            }
            let ids: HashMap<String, i64> = q
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("external_id")?, r.try_get("id")?)))
                .collect::<Result<_>>()?;
            for sm in &fresh {
                if let (Some(s), Some(id)) = (sm.sentiment, ids.get(&sm.mention.external_id)) {
                    scored.push((*id, s));
                }
            }
            stats.new = fresh.len() as u64;
        }

        // 3. Known ones: edits keep the old version; engagement moves in place.
        // The replaced version with the sentiment the store showed for it (the
        // new text's score overwrites it below) and its reply's time.
        let keep_revision = format!(
            "INSERT INTO mention_revisions
                (mention_id, revision, title, body, rating, owner_reply, owner_reply_at,
                 revision_hash, recorded_at, label, score, confidence)
             SELECT m.id, m.revision, m.title, m.body, m.rating, m.owner_reply,
                m.owner_reply_at, m.revision_hash, $1, st.label, st.score, st.confidence
             FROM mentions m {latest} WHERE m.id = $2",
            latest = super::latest_sentiment(self.backend)
        );
        for sm in part {
            let m = &sm.mention;
            let Some(old) = existing.get(&m.external_id) else {
                continue;
            };
            let hash = m.revision_hash();
            if hash != old.revision_hash {
                sqlx::query(&keep_revision)
                    .bind(now)
                    .bind(old.id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "UPDATE mentions SET url = $1, author = $2, title = $3, body = $4, rating = $5,
                        likes = $6, replies = $7, reposts = $8, language = $9, owner_reply = $10,
                        owner_reply_at = $11, content_hash = $12, revision_hash = $13,
                        revision = $14, extra = $15, updated_at = $16, fetched_at = $16,
                        search_text = $17
                     WHERE id = $18",
                )
                .bind(m.url.as_deref())
                .bind(m.author.as_deref())
                .bind(m.title.as_deref())
                .bind(m.text.as_str())
                .bind(m.rating.map(i64::from))
                .bind(m.engagement.likes)
                .bind(m.engagement.replies)
                .bind(m.engagement.reposts)
                .bind(m.language.as_deref())
                .bind(m.owner_reply.as_deref())
                .bind(m.owner_reply_at.map(to_ms))
                .bind(m.content_hash())
                .bind(hash)
                .bind(old.revision + 1)
                .bind(m.extra.as_ref().map(|e| e.to_string()))
                .bind(now)
                .bind(search_text(m.title.as_deref(), &m.text))
                .bind(old.id)
                .execute(&mut **tx)
                .await?;
                if let Some(s) = sm.sentiment {
                    scored.push((old.id, s));
                }
                stats.updated += 1;
            } else if (
                m.engagement.likes,
                m.engagement.replies,
                m.engagement.reposts,
            ) != (old.likes, old.replies, old.reposts)
            {
                sqlx::query(
                    "UPDATE mentions SET likes = $1, replies = $2, reposts = $3, fetched_at = $4
                     WHERE id = $5",
                )
                .bind(m.engagement.likes)
                .bind(m.engagement.replies)
                .bind(m.engagement.reposts)
                .bind(now)
                .bind(old.id)
                .execute(&mut **tx)
                .await?;
                stats.updated += 1;
            } else {
                stats.unchanged += 1;
            }
        }

        // 4. Sentiment of new and edited texts.
        if let (Some((model_id, version)), false) = (model, scored.is_empty()) {
            self.save_sentiments(tx, &scored, model_id, version, now)
                .await?;
        }
        Ok(stats)
    }

    /// Fills `search_text` for mentions stored before the column existed (migration 8),
    /// in id order, a thousand per transaction; returns how many it filled.
    pub(super) async fn fill_search_text(&self) -> Result<u64> {
        let mut filled = 0u64;
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(
                "SELECT id, title, body FROM mentions WHERE search_text IS NULL AND id > $1
                 ORDER BY id LIMIT 1000",
            )
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else {
                return Ok(filled);
            };
            after = last.try_get("id")?;
            let mut tx = self.pool.begin().await?;
            for r in &rows {
                let title: Option<String> = r.try_get("title")?;
                let body: String = r.try_get("body")?;
                sqlx::query("UPDATE mentions SET search_text = $1 WHERE id = $2")
                    .bind(search_text(title.as_deref(), &body))
                    .bind(r.try_get::<i64, _>("id")?)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            filled += rows.len() as u64;
        }
    }

    async fn save_sentiments(
        &self,
        tx: &mut Transaction<'static, Any>,
        scored: &[(i64, Sentiment)],
        model_id: &str,
        version: &str,
        now: i64,
    ) -> Result<()> {
        const P: usize = 7;
        for part in scored.chunks(self.backend.max_params() / P) {
            let rows = (0..part.len())
                .map(|r| {
                    let cols = (1..=P)
                        .map(|c| self.backend.param(r * P + c))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("({cols})")
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO sentiments (mention_id, model_id, model_version, label, score, confidence, scored_at)
                 VALUES {rows}
                 ON CONFLICT (mention_id, model_id) DO UPDATE SET model_version = excluded.model_version,
                    label = excluded.label, score = excluded.score, confidence = excluded.confidence,
                    scored_at = excluded.scored_at"
            );
            let mut q = sqlx::query(&sql);
            for (id, s) in part {
                q = q
                    .bind(*id)
                    .bind(model_id)
                    .bind(version)
                    .bind(s.label.as_str())
                    .bind(f64::from(s.score))
                    .bind(f64::from(s.confidence))
                    .bind(now);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Stores sentiment for mentions already in the store (re-scoring with a new model).
    pub async fn save_sentiment_batch(
        &self,
        scored: &[(i64, Sentiment)],
        model: ModelInfo<'_>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        self.save_sentiments(&mut tx, scored, model.0, model.1, now_ms())
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
