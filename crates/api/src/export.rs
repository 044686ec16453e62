//! `GET /admin/usage/export`: every record in a time range as CSV or JSON lines, streamed
//! without holding them all in memory.

use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpResponse, get, web};
use aiproxy_domain::UsageRecord;
use bytes::Bytes;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Admin;
use crate::error::{ApiError, Chain};
use crate::error_responses::{AdminKeyRefused, BadRequest};
use crate::state::AppState;
use crate::usage::{UsageParams, UsageRecordBody, filter_from};

/// Rows buffered between the database thread and the socket: enough to keep both busy, small
/// enough that a slow client holds little memory (the database thread waits for it).
const ROWS_IN_FLIGHT: usize = 256;

/// Export options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv` (default) or `jsonl`.
    #[serde(default, deserialize_with = "crate::usage::empty_as_none")]
    pub format: Option<String>,
    /// Only records at or after this time: RFC 3339 or Unix seconds.
    #[serde(default, deserialize_with = "crate::usage::empty_as_none")]
    pub start: Option<String>,
    /// Only records before this time.
    #[serde(default, deserialize_with = "crate::usage::empty_as_none")]
    pub end: Option<String>,
    /// Only this model.
    #[serde(default, deserialize_with = "crate::usage::empty_as_none")]
    pub model: Option<String>,
    /// Only this user.
    #[serde(default, deserialize_with = "crate::usage::empty_as_none")]
    pub user_id: Option<String>,
}

/// Streams every usage record in the range, oldest first.
#[utoipa::path(
    tag = "admin",
    params(ExportParams),
    responses(
        (status = 200, description = "CSV (`text/csv`) or JSON lines (`application/x-ndjson`)", content_type = "text/csv", body = String),
        BadRequest,
        AdminKeyRefused,
    ),
    security(("admin_key" = []))
)]
#[get("/admin/usage/export")]
pub async fn export_usage(
    _admin: Admin,
    params: web::Query<ExportParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let csv = match params.format.as_deref() {
        None | Some("csv") => true,
        Some("jsonl") => false,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("Unknown format `{other}`; use `csv` or `jsonl`."),
                Some("format".into()),
            ));
        }
    };
    let mut filter = filter_from(&UsageParams {
        start: params.start.clone(),
        end: params.end.clone(),
        model: params.model.clone(),
        ..UsageParams::default()
    })?;
    filter.user_id = params
        .user_id
        .as_deref()
        .map(aiproxy_domain::UserId::parse)
        .transpose()?;

    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(ROWS_IN_FLIGHT);
    if csv {
        let _ = sender.try_send(Bytes::from_static(
            b"request_id,user_id,model,endpoint,prompt_tokens,completion_tokens,total_tokens,status,duration_ms,created_at\n",
        ));
    }
    let store = state.store.clone();
    // The reader runs on the blocking pool and stops as soon as the client goes away (the
    // channel closes).
    actix_web::rt::task::spawn_blocking(move || {
        let result = store.for_each_usage(&filter, &mut |record| {
            sender.blocking_send(encode(record, csv)).is_ok()
        });
        if let Err(err) = result {
            tracing::error!(error = %Chain(&err), "usage export stopped early");
        }
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), receiver))
    });
    let (content_type, name) = if csv {
        ("text/csv; charset=utf-8", "usage.csv")
    } else {
        ("application/x-ndjson", "usage.jsonl")
    };
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, content_type))
        .insert_header((
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .streaming(body))
}

fn encode(record: UsageRecord, csv: bool) -> Bytes {
    let body = UsageRecordBody::from(record);
    if csv {
        // Ids and model names could contain commas or quotes; quote the free-text fields.
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        Bytes::from(format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            quote(&body.request_id),
            quote(&body.user_id),
            quote(&body.model),
            body.endpoint,
            body.prompt_tokens,
            body.completion_tokens,
            body.total_tokens,
            body.status,
            body.duration_ms,
            body.created_at
        ))
    } else {
        let mut line = serde_json::to_vec(&body).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}
