//! Ingest without polling: `POST /api/mentions` for systems that push (a helpdesk, a
//! form, a review platform's webhook relay). The records are read by the same code as
//! `zmot import`, scored and stored as one run of a push source of the watch.
//!
//! ```text
//! POST /api/mentions
//! Authorization: Bearer <the value of the variable named by server.token_env>
//! {"watch": "Example Notes", "source": "webhook", "mentions": [{"id": "t-1", "text": "...",
//!   "rating": 2, "published_at": "2026-11-23T10:00:00Z"}]}
//! ```
//!
//! The answer counts what was new, updated and unchanged, lists the records that gave
//! way to a later one with the same id, and those that were rejected with their index
//! and why; the good ones are kept. Without a configured
//! token the endpoint is off (403), so nothing can write into the store unauthenticated.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::pipeline::Pipeline;

/// Mentions accepted in one request, at most.
pub const MAX_MENTIONS: usize = 5_000;
/// The longest source name a request may give, in characters.
pub const MAX_SOURCE_NAME: usize = 200;
/// Largest request body.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

#[derive(Clone)]
struct PushState {
    pipeline: Pipeline,
    token: Option<String>,
}

/// The push endpoint. `token` is the expected bearer token (from the environment);
/// `None` switches the endpoint off.
pub fn router(pipeline: Pipeline, token: Option<String>) -> Router {
    Router::new()
        .route("/api/mentions", post(push))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(PushState { pipeline, token })
}

/// The token configured for the API, read from the variable `server.token_env` names.
/// Surrounding whitespace is not part of it (a value set from a file often ends in a
/// line break), as it is not of the token a client sends.
pub fn token_from_env(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The API's error shape, `{"error": {"code", "message"}}`, the code named after the
/// status as the dashboard API names its own.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        _ => "unavailable",
    };
    let mut res = (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer realm=\"zmot\""),
        );
    }
    res
}

/// The store failed: the cause goes to the log, never to the client (it may quote SQL
/// and the database's own words).
fn store_failed(e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "push ingest failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "not stored: the store failed; the server log has the details",
    )
}

/// Compares without stopping at the first different byte.
async fn push(
    State(state): State<PushState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(expected) = &state.token else {
        return error(
            StatusCode::FORBIDDEN,
            "push ingest is off: set the environment variable named by server.token_env",
        );
    };
    // Read and compared as the rest of the API does.
    let given = crate::web::bearer(&headers).unwrap_or("");
    if !crate::web::same_secret(given, expected) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let doc: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            )
        }
    };
    let Some(watch) = doc.get("watch").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "\"watch\" (the watch's name) is required",
        );
    };
    // The sender's mistakes in `source` are 400s: a 5xx would have a relay retry them.
    let source_name = match doc.get("source") {
        None | Some(Value::Null) => "push",
        Some(Value::String(s)) if s.trim().is_empty() => {
            return error(StatusCode::BAD_REQUEST, "\"source\" is empty");
        }
        Some(Value::String(s)) if s.trim().chars().count() > MAX_SOURCE_NAME => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("\"source\" is longer than {MAX_SOURCE_NAME} characters"),
            );
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "\"source\" must be a string (the source's name)",
            )
        }
    };
    let Some(items) = doc.get("mentions").and_then(Value::as_array) else {
        return error(
            StatusCode::BAD_REQUEST,
            "\"mentions\" must be a list of objects",
        );
    };
    if items.len() > MAX_MENTIONS {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {MAX_MENTIONS} mentions per request"),
        );
    }
    let store = &state.pipeline.store;
    let watch_row = match store.watch_by_name(watch).await {
        Ok(Some(w)) => w,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no watch named `{watch}`")),
        Err(e) => return store_failed(e),
    };
    // Dates without a time are days on the watch's clock.
    let zone = crate::clock::watch_zone(&state.pipeline.config, &watch_row);
    let mut accepted = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let parsed = match item.as_object() {
            Some(map) => {
                crate::import::mention_from_map(map, zone).and_then(|m| m.validate().map(|_| m))
            }
            None => Err("not a JSON object".to_string()),
        };
        match parsed {
            Ok(m) => accepted.push((i, m)),
            Err(why) => rejected.push(json!({"index": i, "error": why})),
        }
    }
    // A record whose id comes again later gives way to the later one (the freshest, and
    // the only one the store would keep), as in `zmot import`; it is listed so that every
    // record sent is accounted for. Ids compared as the store keeps them.
    let id_of =
        |m: &crate::domain::Mention| crate::domain::without_controls(&m.external_id).into_owned();
    let last: std::collections::HashMap<String, usize> =
        accepted.iter().map(|(i, m)| (id_of(m), *i)).collect();
    let mut repeated = Vec::new();
    let mut mentions = Vec::with_capacity(accepted.len());
    for (i, m) in accepted {
        match last[&id_of(&m)] {
            kept if kept == i => mentions.push(m),
            kept => repeated.push(json!({"index": i, "kept": kept})),
        }
    }
    let source = match store.push_source(watch_row.id, source_name).await {
        Ok(s) => s,
        Err(e) => match e.downcast_ref::<crate::store::NotAPushSource>() {
            Some(taken) => return error(StatusCode::BAD_REQUEST, taken.to_string()),
            None => return store_failed(e),
        },
    };
    let note = (!rejected.is_empty())
        .then(|| format!("{} record(s) rejected by the push API", rejected.len()));
    match state
        .pipeline
        .ingest_pushed(&source, mentions, rejected.len() as u64, note.as_deref())
        .await
    {
        Ok(stats) => Json(json!({
            "watch": watch_row.name,
            "source": source.name,
            "new": stats.new,
            "updated": stats.updated,
            "unchanged": stats.unchanged,
            "repeated": repeated,
            "rejected": rejected,
        }))
        .into_response(),
        Err(e) => store_failed(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_from_the_environment_is_read_without_surrounding_whitespace() {
        let var = "ZMOT_TEST_PUSH_TOKEN_TRIM";
        std::env::set_var(var, "s3cret-token\n");
        assert_eq!(super::token_from_env(var).as_deref(), Some("s3cret-token"));
        std::env::set_var(var, "  \n");
        assert_eq!(super::token_from_env(var), None);
        std::env::remove_var(var);
        assert_eq!(super::token_from_env(var), None);
    }
}
