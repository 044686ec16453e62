//! `GET /admin/usage/export`: every record in a time range as CSV or JSON lines, streamed
//! without holding them all in memory.

use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpResponse, get, web};
use aiproxy_domain::{StoreError, UsageCursor, UsageFilter, UsageRecord};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Admin;
use crate::error::{ApiError, Chain};
use crate::error_responses::{AdminKeyRefused, BadRequest};
use crate::state::AppState;
use crate::usage::{UsageParams, UsageRecordBody, filter_from};

/// Records read from the store at a time: large enough that a batch's round trip is small
/// beside encoding it, small enough that a slow client holds little memory (the next batch
/// is read only when the socket has taken this one).
const BATCH_RECORDS: u32 = 1000;

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

    let header = csv.then(|| {
        Ok(Bytes::from_static(
            b"request_id,user_id,model,endpoint,prompt_tokens,completion_tokens,total_tokens,status,duration_ms,created_at\n",
        ))
    });
    let batches = Batches {
        store: state.store.clone(),
        filter,
        after: None,
        done: false,
    };
    // A failed read ends the stream with an error, which aborts the response: the client sees
    // a cut transfer, not a short file that looks complete.
    let body = futures_util::stream::iter(header).chain(futures_util::stream::unfold(
        batches,
        move |mut batches| async move {
            let chunk = batches.next(csv).await?;
            Some((chunk, batches))
        },
    ));
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

/// Where an export stands: the filter, and the cursor after the last record sent.
struct Batches {
    store: std::sync::Arc<dyn aiproxy_domain::Store>,
    filter: UsageFilter,
    after: Option<UsageCursor>,
    done: bool,
}

impl Batches {
    /// The next batch, encoded; `None` once every record was sent.
    async fn next(&mut self, csv: bool) -> Option<Result<Bytes, StoreError>> {
        if self.done {
            return None;
        }
        let batch = match self
            .store
            .usage_batch(&self.filter, self.after.as_ref(), BATCH_RECORDS)
            .await
        {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(error = %Chain(&error), "usage export stopped early");
                self.done = true;
                return Some(Err(error));
            }
        };
        self.done = batch.len() < BATCH_RECORDS as usize;
        let last = batch.last()?;
        self.after = Some(UsageCursor {
            created_at: last.created_at,
            request_id: last.request_id.clone(),
        });
        let mut out = Vec::with_capacity(batch.len() * 160);
        for record in batch {
            out.extend_from_slice(&encode(record, csv));
        }
        Some(Ok(Bytes::from(out)))
    }
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
