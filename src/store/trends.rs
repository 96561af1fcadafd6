//! Read-only aggregates for trends, rules and digests. SQL does the counting and
//! averaging; callers choose the periods (time zones and ISO weeks are decided in Rust,
//! so both databases see plain epoch-millisecond ranges).

use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{to_ms, Store, Version};

/// The sources of the watch bound to `$6` that show owner replies (any reply ever): an
/// EXISTS probe per source on the partial index `mentions_source_replied`.
pub(super) const REPLYING_SOURCES: &str = "SELECT s.id FROM sources s WHERE s.watch_id = $6
    AND EXISTS (SELECT 1 FROM mentions r WHERE r.source_id = s.id AND r.owner_reply IS NOT NULL)";

/// The sources of the watch bound to `watch` that showed `column` (`owner_reply`,
/// `rating`) on a mention published by the time bound to `at`, in the version it showed
/// then (see [`Version`]). First those whose value has stood since then (the partial
/// indexes `mentions_source_replied` and `mentions_source_rated` again); only for a
/// source with none, the versions replaced after then, found by their time
/// (`mention_revisions_recorded`) and few for a recent week.
fn sources_showing_at(column: &str, watch: &str, at: &str) -> String {
    format!(
        "SELECT s.id FROM sources s WHERE s.watch_id = {watch}
    AND (EXISTS (SELECT 1 FROM mentions r WHERE r.source_id = s.id AND r.{column} IS NOT NULL
                 AND r.published_at < {at} AND (r.updated_at <= {at} OR r.revision = 1))
         OR EXISTS (SELECT 1 FROM mention_revisions v CROSS JOIN mentions r
                    WHERE v.recorded_at > {at} AND v.{column} IS NOT NULL
                      AND r.id = v.mention_id AND r.source_id = s.id AND r.published_at < {at}
                      AND v.revision = (SELECT MIN(v2.revision) FROM mention_revisions v2
                                        WHERE v2.mention_id = v.mention_id
                                          AND v2.recorded_at > {at})))"
    )
}

/// Figures for one period of one watch (optionally one source).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PeriodStats {
    pub mentions: i64,
    pub negative: i64,
    pub neutral: i64,
    pub positive: i64,
    /// Mean sentiment score (-1..1) of the scored mentions.
    pub mean_sentiment: Option<f64>,
    /// Mentions with a star rating.
    pub rated: i64,
    pub mean_rating: Option<f64>,
    /// How many 1, 2, 3, 4 and 5-star mentions.
    pub rating_counts: [i64; 5],
    /// Mentions on sources that show owner replies (those with at least one reply ever).
    pub replyable: i64,
    /// Of those, how many have an owner reply.
    pub replied: i64,
    /// Median hours from publication to the owner's reply.
    pub median_reply_hours: Option<f64>,
}

impl PeriodStats {
    pub fn scored(&self) -> i64 {
        self.negative + self.neutral + self.positive
    }

    /// Share of scored mentions that are negative.
    pub fn negative_share(&self) -> Option<f64> {
        (self.scored() > 0).then(|| self.negative as f64 / self.scored() as f64)
    }

    pub fn reply_rate(&self) -> Option<f64> {
        (self.replyable > 0).then(|| self.replied as f64 / self.replyable as f64)
    }
}

impl Store {
    /// Counts, shares, means and the rating distribution for mentions of a watch (one
    /// source, or all) published in `[from, to)`, as stored now.
    pub async fn period_stats(
        &self,
        watch_id: i64,
        source_id: Option<i64>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<PeriodStats> {
        self.period_stats_as_of(watch_id, source_id, from, to, None)
            .await
    }

    /// [`Store::period_stats_as_of`] of the mentions of some of a watch's sources only:
    /// a comparison with the weeks before counts only the sources whose history covers
    /// them (see [`crate::trends::watched_comparison`]).
    pub async fn period_stats_of_sources(
        &self,
        watch_id: i64,
        sources: &[i64],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<PeriodStats> {
        if sources.is_empty() {
            return Ok(PeriodStats::default());
        }
        self.period_stats_among(watch_id, None, Some(sources), from, to, as_of)
            .await
    }

    /// [`Store::period_stats`] with each mention as it stood at `as_of` (its stars, reply
    /// and sentiment then; see [`Version`]), and the sources that showed replies then;
    /// `None`: as stored now.
    pub async fn period_stats_as_of(
        &self,
        watch_id: i64,
        source_id: Option<i64>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<PeriodStats> {
        self.period_stats_among(watch_id, source_id, None, from, to, as_of)
            .await
    }

    /// The period statistics, of one source, of all, or (`among`, not empty) of those.
    async fn period_stats_among(
        &self,
        watch_id: i64,
        source_id: Option<i64>,
        among: Option<&[i64]>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<PeriodStats> {
        let (version, replying) = match as_of {
            Some(_) => (
                Version::At("$7"),
                sources_showing_at("owner_reply", "$6", "$7"),
            ),
            None => (Version::Stored, REPLYING_SOURCES.to_string()),
        };
        // The sources bound one by one after the fixed parameters (numbered on from $7,
        // or $8 when $7 is the time: PostgreSQL wants every number up to the last used).
        let first = if as_of.is_some() { 8 } else { 7 };
        let among = among.unwrap_or_default();
        let among_filter = if among.is_empty() {
            String::new()
        } else {
            let placeholders: Vec<String> = (0..among.len())
                .map(|i| format!("${}", first + i))
                .collect();
            format!(" AND m.source_id IN ({})", placeholders.join(", "))
        };
        let (label, rating, reply) = (version.label(), version.rating(), version.owner_reply());
        let sql = format!(
            "SELECT COUNT(*) AS n,
                COALESCE(SUM(CASE WHEN {label} = 'negative' THEN 1 ELSE 0 END), 0) AS neg,
                COALESCE(SUM(CASE WHEN {label} = 'neutral' THEN 1 ELSE 0 END), 0) AS neu,
                COALESCE(SUM(CASE WHEN {label} = 'positive' THEN 1 ELSE 0 END), 0) AS pos,
                CAST(AVG({score}) AS DOUBLE PRECISION) AS mean_score,
                COALESCE(SUM(CASE WHEN {rating} IS NOT NULL THEN 1 ELSE 0 END), 0) AS rated,
                CAST(AVG(CAST({rating} AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS mean_rating,
                COALESCE(SUM(CASE WHEN {rating} = 1 THEN 1 ELSE 0 END), 0) AS r1,
                COALESCE(SUM(CASE WHEN {rating} = 2 THEN 1 ELSE 0 END), 0) AS r2,
                COALESCE(SUM(CASE WHEN {rating} = 3 THEN 1 ELSE 0 END), 0) AS r3,
                COALESCE(SUM(CASE WHEN {rating} = 4 THEN 1 ELSE 0 END), 0) AS r4,
                COALESCE(SUM(CASE WHEN {rating} = 5 THEN 1 ELSE 0 END), 0) AS r5,
                COALESCE(SUM(CASE WHEN m.source_id IN ({replying}) THEN 1 ELSE 0 END), 0) AS replyable,
                COALESCE(SUM(CASE WHEN {reply} IS NOT NULL AND m.source_id IN ({replying})
                    THEN 1 ELSE 0 END), 0) AS replied
             FROM mentions m {latest}
             WHERE m.watch_id = $1 AND ($2 = 0 OR m.source_id = $3)
               AND m.published_at >= $4 AND m.published_at < $5{among_filter}",
            score = version.score(),
            latest = super::latest_sentiment(self.backend)
        );
        let mut query = sqlx::query(&sql)
            .bind(watch_id)
            .bind(i64::from(source_id.is_some()))
            .bind(source_id.unwrap_or(0))
            .bind(to_ms(from))
            .bind(to_ms(to))
            .bind(watch_id);
        if let Some(at) = as_of {
            query = query.bind(to_ms(at));
        }
        for source in among {
            query = query.bind(*source);
        }
        let r = query.fetch_one(&self.pool).await?;
        // SUM of an integer CASE is BIGINT on both databases.
        let int = |name: &str| -> Result<i64> { Ok(r.try_get::<i64, _>(name)?) };
        let mut stats = PeriodStats {
            mentions: int("n")?,
            negative: int("neg")?,
            neutral: int("neu")?,
            positive: int("pos")?,
            mean_sentiment: r.try_get("mean_score")?,
            rated: int("rated")?,
            mean_rating: r.try_get("mean_rating")?,
            rating_counts: [int("r1")?, int("r2")?, int("r3")?, int("r4")?, int("r5")?],
            replyable: int("replyable")?,
            replied: int("replied")?,
            ..Default::default()
        };

        // Reply delays: only the answered mentions are read (counted above, in SQL).
        let sql = format!(
            "SELECT m.published_at, {reply_at} AS owner_reply_at
             FROM mentions m
             WHERE m.watch_id = $1 AND ($2 = 0 OR m.source_id = $3)
               AND m.published_at >= $4 AND m.published_at < $5
               AND {reply} IS NOT NULL AND {reply_at} IS NOT NULL
               AND m.source_id IN ({replying}){among_filter}",
            reply_at = version.owner_reply_at()
        );
        let rows = if stats.replied > 0 {
            let mut query = sqlx::query(&sql)
                .bind(watch_id)
                .bind(i64::from(source_id.is_some()))
                .bind(source_id.unwrap_or(0))
                .bind(to_ms(from))
                .bind(to_ms(to))
                .bind(watch_id);
            if let Some(at) = as_of {
                query = query.bind(to_ms(at));
            }
            for source in among {
                query = query.bind(*source);
            }
            query.fetch_all(&self.pool).await?
        } else {
            Vec::new()
        };
        let mut delays = Vec::with_capacity(rows.len());
        for row in &rows {
            let published: i64 = row.try_get("published_at")?;
            let at: i64 = row.try_get("owner_reply_at")?;
            delays.push((at - published).max(0) as f64 / 3_600_000.0);
        }
        stats.median_reply_hours = median(&mut delays);
        Ok(stats)
    }

    /// Negative mentions of a watch in `[from, to)`: each one's source id and publication
    /// time (epoch ms), oldest first.
    pub async fn negative_times(
        &self,
        watch_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i64, i64)>> {
        let sql = format!(
            "SELECT m.source_id, m.published_at FROM mentions m {latest}
             WHERE m.watch_id = $1 AND st.label = 'negative'
               AND m.published_at >= $2 AND m.published_at < $3
             ORDER BY m.published_at",
            latest = super::latest_sentiment(self.backend)
        );
        let rows = sqlx::query(&sql)
            .bind(watch_id)
            .bind(to_ms(from))
            .bind(to_ms(to))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("source_id")?, r.try_get("published_at")?)))
            .collect()
    }

    /// Where the stored history of each source of a watch begins: its name and the
    /// publication time (epoch ms) of its oldest mention; sources without any are left out.
    pub async fn history_starts(&self, watch_id: i64) -> Result<Vec<(i64, String, i64)>> {
        // One index lookup per source (mentions_source_published), not a pass over all
        // of the watch's mentions.
        let rows = sqlx::query(
            "SELECT s.id, s.name,
                (SELECT MIN(m.published_at) FROM mentions m WHERE m.source_id = s.id)
                    AS first_published
             FROM sources s WHERE s.watch_id = $1",
        )
        .bind(watch_id)
        .fetch_all(&self.pool)
        .await?;
        let mut starts = Vec::new();
        for r in &rows {
            if let Some(first) = r.try_get::<Option<i64>, _>("first_published")? {
                starts.push((r.try_get("id")?, r.try_get("name")?, first));
            }
        }
        Ok(starts)
    }

    /// The average stars buyers saw on a source at `at`: those of its `n` most recent
    /// reviews published before then that had stars then, each with the stars it showed
    /// then (a later edit does not change what buyers saw); `None` when there were no
    /// rated reviews by then. [`crate::trends::buyer_view_at`] lists the same reviews.
    pub async fn buyer_view_rating_at(
        &self,
        source_id: i64,
        at: DateTime<Utc>,
        n: i64,
    ) -> Result<Option<f64>> {
        let rating = Version::At("$2").rating();
        let sql = format!(
            "SELECT CAST(AVG(CAST(r.rating AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS avg
             FROM (SELECT {rating} AS rating FROM mentions m
                   WHERE m.source_id = $1 AND m.published_at < $2 AND {rating} IS NOT NULL
                   ORDER BY m.published_at DESC, m.id DESC LIMIT $3) r"
        );
        let row = sqlx::query(&sql)
            .bind(source_id)
            .bind(to_ms(at))
            .bind(n.max(1))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("avg")?)
    }

    /// Sources of a watch that had rated mentions at `at`: published before then, with
    /// stars then (a source added later has none; one whose stars were all removed
    /// since still had them). A digest of a past week draws these in its rating chart.
    pub async fn rated_sources_at(&self, watch_id: i64, at: DateTime<Utc>) -> Result<Vec<i64>> {
        let sql = format!("{} ORDER BY s.id", sources_showing_at("rating", "$1", "$2"));
        let rows = sqlx::query(&sql)
            .bind(watch_id)
            .bind(to_ms(at))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Sources of a watch that have rated mentions: the ones a buyer sees stars on.
    pub async fn rated_sources(&self, watch_id: i64) -> Result<Vec<i64>> {
        // One EXISTS probe per source (the partial index `mentions_source_rated`), not a
        // scan of the watch's mentions.
        let rows = sqlx::query(
            "SELECT s.id AS source_id FROM sources s
             WHERE s.watch_id = $1
               AND EXISTS (SELECT 1 FROM mentions r WHERE r.source_id = s.id AND r.rating IS NOT NULL)
             ORDER BY s.id",
        )
        .bind(watch_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("source_id")?)).collect()
    }
}

/// Median of a list (sorted in place); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}
