//! `/api/...`: the dashboard's data as JSON. Errors are
//! `{"error": {"code": "...", "message": "..."}}` with a matching status code.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::data;
use super::params::{cursor_of, query, resolve_watch, watch_settings, MentionParams};
use super::{json_error, Failure, WebState, MAX_API_LIMIT};
use crate::store::{to_ms, TriageStatus, TriageUpdate, WatchRow};

/// An API handler's error, rendered as JSON.
pub struct ApiError(Failure);

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        ApiError(f)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError(Failure::Internal(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.0.parts();
        error_response(status, code, &message)
    }
}

pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, json_error(code, message)).into_response()
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: impl serde::Serialize) -> ApiResult {
    Ok(Json(v).into_response())
}

pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such API route")
}

async fn the_watch(s: &WebState, key: &str) -> Result<WatchRow, ApiError> {
    Ok(resolve_watch(&s.store, key)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("no watch `{key}`")))?)
}

/// A JSON body, or the API's error for it: 413 for one over the size limit (as push
/// answers), 400 for one that is not the JSON expected.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(b)) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Failure::TooLarge(format!(
            "the body is larger than {} bytes",
            super::MAX_BODY_BYTES
        ))
        .into()),
        Err(e) => Err(Failure::BadRequest(e.body_text()).into()),
    }
}

fn id_of(key: &str, what: &str) -> Result<i64, ApiError> {
    key.parse()
        .map_err(|_| Failure::NotFound(format!("no {what} `{key}`")).into())
}

/// `GET /api/watches`: every active watch with its health and figures.
pub async fn watches(State(s): State<WebState>) -> ApiResult {
    let list: Vec<_> = s
        .store
        .watches()
        .await?
        .into_iter()
        .filter(|w| w.active)
        .collect();
    ok(json!({ "watches": data::summaries(&s, &list, Utc::now()).await? }))
}

/// `GET /api/watches/{watch}` (name or id).
pub async fn watch(State(s): State<WebState>, Path(key): Path<String>) -> ApiResult {
    let w = the_watch(&s, &key).await?;
    let mut list = data::summaries(&s, std::slice::from_ref(&w), Utc::now()).await?;
    ok(list.remove(0))
}

#[derive(Deserialize)]
pub struct WeeksParam {
    weeks: Option<String>,
}

/// `GET /api/watches/{watch}/trends?weeks=N` (1 to 104, default 12).
pub async fn trends(
    State(s): State<WebState>,
    Path(key): Path<String>,
    q: Result<Query<WeeksParam>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let weeks = match q.weeks.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => 12,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=104).contains(n))
            .ok_or_else(|| Failure::BadRequest(format!("weeks `{v}`: use 1 to 104")))?,
    };
    let w = the_watch(&s, &key).await?;
    let (t, _) = data::trends_of(&s, &w, weeks, Utc::now()).await?;
    ok(t)
}

/// `GET /api/watches/{watch}/buyers-view`.
pub async fn buyers_view(State(s): State<WebState>, Path(key): Path<String>) -> ApiResult {
    let w = the_watch(&s, &key).await?;
    let (_, settings) = watch_settings(&s.config, &w);
    let views = crate::trends::buyer_views(&s.store, w.id, settings.buyer_view_size).await?;
    let summaries: Vec<_> = views
        .iter()
        .map(|v| {
            data::view_summary(
                v,
                settings.buyer_view_threshold,
                settings.buyer_view_min_reviews,
            )
        })
        .collect();
    ok(json!({
        "watch": w.name,
        "threshold": settings.buyer_view_threshold,
        "size": settings.buyer_view_size,
        "summaries": summaries,
        "views": views,
    }))
}

/// `GET /api/watches/{watch}/triage?days=N`: the feedback loop's figures.
pub async fn triage_summary(
    State(s): State<WebState>,
    Path(key): Path<String>,
    q: Result<Query<DaysParam>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let w = the_watch(&s, &key).await?;
    let days = q.days()?;
    let summary = s
        .store
        .triage_summary(w.id, Utc::now() - Duration::days(days))
        .await?;
    ok(json!({
        "watch": w.name,
        "days": days,
        "reply_share": summary.reply_share(),
        "summary": summary,
    }))
}

/// `GET /api/mentions?...`: keyset pages (`cursor` from `next_cursor`).
pub async fn mentions(
    State(s): State<WebState>,
    p: Result<Query<MentionParams>, QueryRejection>,
) -> ApiResult {
    let p = query(p)?;
    let (filter, _) = p.filter(&s.store, &s.config).await?;
    let limit = p.size(50, MAX_API_LIMIT)?;
    let mut items = s.store.find_mentions(&filter, 0, limit + 1).await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next = if more {
        items
            .last()
            .map(|m| cursor_of(to_ms(m.mention.mention.published_at), m.mention.id))
    } else {
        None
    };
    ok(json!({ "items": items, "next_cursor": next }))
}

/// `GET /api/mentions/{id}`: one mention with its triage and history.
pub async fn mention(State(s): State<WebState>, Path(id): Path<String>) -> ApiResult {
    let id = id_of(&id, "mention")?;
    let m = s
        .store
        .triaged_mention(id)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("no mention {id}")))?;
    let history = s.store.triage_history(id).await?;
    let mut v = serde_json::to_value(&m).map_err(anyhow::Error::from)?;
    v["triage_history"] = serde_json::to_value(history).map_err(anyhow::Error::from)?;
    ok(v)
}

/// The triage change the API accepts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    note: Option<String>,
    /// Who makes the change.
    #[serde(default)]
    by: Option<String>,
}

fn too_long(v: &Option<String>, name: &str, max: usize) -> Result<(), ApiError> {
    if v.as_deref().is_some_and(|v| v.chars().count() > max) {
        return Err(Failure::BadRequest(format!("{name} is longer than {max} characters")).into());
    }
    Ok(())
}

/// `PATCH /api/mentions/{id}` (and `POST .../triage`): status, assignee, note.
pub async fn patch_mention(
    State(s): State<WebState>,
    Path(id): Path<String>,
    body: Result<Json<TriageBody>, JsonRejection>,
) -> ApiResult {
    let id = id_of(&id, "mention")?;
    let b = json_body(body)?;
    let status = match b.status.as_deref() {
        None => None,
        Some(v) => Some(TriageStatus::parse(v).ok_or_else(|| {
            Failure::BadRequest(format!(
                "status `{v}`: use open, acknowledged, replied, resolved or ignored"
            ))
        })?),
    };
    too_long(&b.assignee, "assignee", 200)?;
    too_long(&b.note, "note", 2000)?;
    too_long(&b.by, "by", 200)?;
    if status.is_none() && b.assignee.is_none() && b.note.is_none() {
        return Err(Failure::BadRequest("give a status, an assignee or a note".into()).into());
    }
    let change = TriageUpdate {
        status,
        assignee: b.assignee,
        note: b.note,
    };
    let state = s
        .store
        .update_triage(id, &change, b.by.as_deref(), Utc::now())
        .await?
        .ok_or_else(|| Failure::NotFound(format!("no mention {id}")))?;
    ok(json!({ "mention_id": id, "triage": state }))
}

#[derive(Deserialize)]
pub struct DaysParam {
    days: Option<String>,
    watch: Option<String>,
}

impl DaysParam {
    fn days(&self) -> Result<i64, ApiError> {
        match self
            .days
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            None => Ok(30),
            Some(v) => Ok(v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=3650).contains(n))
                .ok_or_else(|| Failure::BadRequest(format!("days `{v}`: use 1 to 3650")))?),
        }
    }
}

/// `GET /api/alerts?watch=&days=`: open alerts and those seen in the last days.
pub async fn alerts(
    State(s): State<WebState>,
    q: Result<Query<DaysParam>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let days = q.days()?;
    let watch_id = match q.watch.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        Some(w) => Some(the_watch(&s, w).await?.id),
        None => None,
    };
    let list = s
        .store
        .alert_states(watch_id, Utc::now() - Duration::days(days), 500)
        .await?;
    ok(json!({ "alerts": list }))
}

pub async fn acknowledge_alert(State(s): State<WebState>, Path(id): Path<String>) -> ApiResult {
    let id = id_of(&id, "alert")?;
    if !s.store.acknowledge_alert(id, Utc::now()).await? {
        return Err(Failure::NotFound(format!("no alert {id}")).into());
    }
    ok(s.store.alert_state(id).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnoozeBody {
    /// Hours from now; 0 lifts the snooze.
    hours: i64,
}

pub async fn snooze_alert(
    State(s): State<WebState>,
    Path(id): Path<String>,
    body: Result<Json<SnoozeBody>, JsonRejection>,
) -> ApiResult {
    let id = id_of(&id, "alert")?;
    let b = json_body(body)?;
    if !(0..=24 * 90).contains(&b.hours) {
        return Err(Failure::BadRequest("hours: 0 to 2160".into()).into());
    }
    let until = (b.hours > 0).then(|| Utc::now() + Duration::hours(b.hours));
    if !s.store.snooze_alert(id, until).await? {
        return Err(Failure::NotFound(format!("no alert {id}")).into());
    }
    ok(s.store.alert_state(id).await?)
}

/// `GET /api/sources`: every source with its last run and next run.
pub async fn sources(State(s): State<WebState>) -> ApiResult {
    ok(json!({ "sources": s.store.source_status().await? }))
}

/// `POST /api/sources/{id}/fetch`: make the source's fetch job due now.
pub async fn fetch_now(State(s): State<WebState>, Path(id): Path<String>) -> ApiResult {
    let id = id_of(&id, "source")?;
    if s.store.source(id).await?.is_none() {
        return Err(Failure::NotFound(format!("no source {id}")).into());
    }
    if !s.store.request_fetch(id, Utc::now()).await? {
        return Err(Failure::BadRequest(format!(
            "source {id} is disabled or pushed; nothing polls it"
        ))
        .into());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "source_id": id, "requested": true })),
    )
        .into_response())
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

fn openapi_document() -> Value {
    let get = |summary: &str| json!({ "get": { "summary": summary, "responses": { "200": { "description": "OK" }, "404": { "description": "not found" } } } });
    let mention_params: Vec<Value> = [
        "watch",
        "source",
        "sentiment",
        "stars",
        "since",
        "until",
        "q",
        "status",
        "cursor",
        "limit",
    ]
    .iter()
    .map(|n| json!({ "name": n, "in": "query", "required": false, "schema": { "type": "string" } }))
    .collect();
    json!({
        "openapi": "3.0.3",
        "info": { "title": "zmot API", "version": "1",
            "description": "Times are RFC 3339 in UTC. A day given to since/until is a day on the chosen watch's clock (else on the general time zone's)." },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "object",
                    "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } }
            }
        },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/api/watches": get("Active watches with health, buyer's views, this and last week, open alerts, sources"),
            "/api/watches/{watch}": get("One watch's summary (name or id)"),
            "/api/watches/{watch}/trends": get("Weekly and daily periods, per-source weeks, buyer's views, health (weeks=1..104)"),
            "/api/watches/{watch}/buyers-view": get("The reviews a buyer sees first, per rated source"),
            "/api/watches/{watch}/triage": get("Open negatives, median hours to first action, owner-reply share (days=N)"),
            "/api/mentions": { "get": { "summary": "Mentions, newest first; next page with cursor=next_cursor",
                "parameters": mention_params, "responses": { "200": { "description": "{items, next_cursor}" }, "400": { "description": "bad filter" } } },
                "post": { "summary": "Push ingest: {watch, source?, mentions: [{id, text, title?, rating?, published_at, ...}]} (off without a token)",
                    "responses": { "200": { "description": "{watch, source, new, updated, unchanged, repeated: [{index, kept}], rejected: [{index, error}]}" },
                        "400": { "description": "bad body" }, "401": { "description": "missing or wrong token" },
                        "403": { "description": "no token configured: push is off" }, "404": { "description": "no such watch" },
                        "413": { "description": "too many mentions" }, "503": { "description": "not stored" } } } },
            "/api/mentions/{id}": {
                "get": { "summary": "One mention with triage and triage_history", "responses": { "200": { "description": "OK" } } },
                "patch": { "summary": "Triage: {status?, assignee?, note?, by?}", "responses": { "200": { "description": "{mention_id, triage}" }, "400": { "description": "bad body" }, "404": { "description": "no mention" }, "413": { "description": "body over 64 KiB" } } }
            },
            "/api/alerts": get("Open alerts and alerts seen in the last days (watch=, days=)"),
            "/api/alerts/{id}/acknowledge": { "post": { "summary": "Acknowledge an alert", "responses": { "200": { "description": "the alert" } } } },
            "/api/alerts/{id}/snooze": { "post": { "summary": "Snooze: {hours} (0 lifts it)", "responses": { "200": { "description": "the alert" } } } },
            "/api/sources": get("Sources with schedule, last run, next run, mention count"),
            "/api/sources/{id}/fetch": { "post": { "summary": "Make the source's fetch job due now", "responses": { "202": { "description": "requested" } } } }
        }
    })
}
