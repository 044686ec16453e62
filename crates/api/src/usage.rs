//! `GET /v1/usage` and `GET /v1/usage/summary`, and the shapes the admin API shares.

use actix_web::{HttpResponse, get, web};
use aiproxy_domain::{
    Period, UnixMillis, UsageFilter, UsageGrouping, UsagePage, UsageQuery, UsageRecord,
    UsageSummaryRow, UsageTotals, UserId, civil_from_days,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::admission::current_limit_headers;
use crate::auth::AuthedUser;
use crate::error::ApiError;
use crate::error_responses::{BadRequest, UserKeyRefused};
use crate::state::AppState;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;

/// An empty query value (`?end=`) means the parameter was not given.
pub(crate) fn empty_as_none<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(deserializer)?.filter(|s| !s.is_empty()))
}

/// Filters of the usage endpoints.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Only records at or after this time: RFC 3339 (`2026-11-01T00:00:00Z`) or Unix seconds.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub start: Option<String>,
    /// Only records before this time: RFC 3339 or Unix seconds.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub end: Option<String>,
    /// Only this model.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub model: Option<String>,
    /// Records per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Records to skip, newest first.
    #[param(minimum = 0)]
    pub offset: Option<u64>,
    /// `model` (default) or `day` (one row per model and UTC day), for summaries.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub group_by: Option<String>,
}

/// Totals over a set of records.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotalsBody {
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

impl From<UsageTotals> for TotalsBody {
    fn from(t: UsageTotals) -> Self {
        Self {
            requests: t.requests,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            total_tokens: t.total_tokens,
        }
    }
}

/// One request's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRecordBody {
    /// The request's id (its `x-request-id`).
    pub request_id: String,
    /// Whose request.
    pub user_id: String,
    /// The model.
    pub model: String,
    /// The route it came through: `/v1/chat/completions`, `/v1/completions`,
    /// `/v1/embeddings`, ...
    pub endpoint: &'static str,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
    /// `ok`, `error` or `aborted`.
    pub status: &'static str,
    /// Milliseconds from admission to the last byte.
    pub duration_ms: u64,
    /// When the request was admitted (RFC 3339).
    pub created_at: String,
}

impl From<UsageRecord> for UsageRecordBody {
    fn from(r: UsageRecord) -> Self {
        let total_tokens = r.total_tokens();
        Self {
            request_id: r.request_id,
            user_id: r.user_id.to_string(),
            model: r.model,
            endpoint: r.endpoint.as_str(),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            total_tokens,
            status: r.status.as_str(),
            duration_ms: r.duration_ms,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// A user's usage: totals over the filter and a page of records.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    /// Whose usage.
    pub user_id: String,
    /// Totals over everything the filter covers.
    pub totals: TotalsBody,
    /// The records of this page, newest first.
    pub records: Vec<UsageRecordBody>,
    /// The page size used.
    pub limit: u32,
    /// The offset used.
    pub offset: u64,
    /// Whether more records follow this page.
    pub has_more: bool,
}

/// One row of a summary.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryRowBody {
    /// The user, when grouped by user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The model, when grouped by model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The UTC day, when grouped by day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

impl From<UsageSummaryRow> for SummaryRowBody {
    fn from(row: UsageSummaryRow) -> Self {
        Self {
            user_id: row.user_id.map(|u| u.to_string()),
            model: row.model,
            day: row.period_start.map(utc_day),
            requests: row.totals.requests,
            prompt_tokens: row.totals.prompt_tokens,
            completion_tokens: row.totals.completion_tokens,
            total_tokens: row.totals.total_tokens,
        }
    }
}

/// A summary: rows per group and the grand totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSummary {
    /// Whose usage (absent for the all-users summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// One row per group.
    pub data: Vec<SummaryRowBody>,
    /// Totals over all rows.
    pub totals: TotalsBody,
}

/// The caller's usage: totals and the most recent records.
#[utoipa::path(
    tag = "user",
    params(UsageParams),
    responses(
        (status = 200, body = UsageReport),
        BadRequest,
        UserKeyRefused,
    ),
    security(("user_key" = []))
)]
#[get("/v1/usage")]
pub async fn my_usage(
    user: AuthedUser,
    params: web::Query<UsageParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let report = usage_report(&state, user.0.id.clone(), &params).await?;
    let mut response = HttpResponse::Ok();
    for header in current_limit_headers(&state, &user.0).await {
        response.insert_header(header);
    }
    Ok(response.json(report))
}

/// The caller's usage per model (and per day with `group_by=day`).
#[utoipa::path(
    tag = "user",
    params(UsageParams),
    responses(
        (status = 200, body = UsageSummary),
        BadRequest,
        UserKeyRefused,
    ),
    security(("user_key" = []))
)]
#[get("/v1/usage/summary")]
pub async fn my_usage_summary(
    user: AuthedUser,
    params: web::Query<UsageParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let summary = usage_summary(&state, Some(user.0.id.clone()), &params, false).await?;
    let mut response = HttpResponse::Ok();
    for header in current_limit_headers(&state, &user.0).await {
        response.insert_header(header);
    }
    Ok(response.json(summary))
}

/// A usage report for one user: used by `/v1/usage` and the admin API alike.
pub(crate) async fn usage_report(
    state: &AppState,
    user_id: UserId,
    params: &UsageParams,
) -> Result<UsageReport, ApiError> {
    let mut filter = filter_from(params)?;
    filter.user_id = Some(user_id.clone());
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            format!("`limit` must be between 1 and {MAX_PAGE}."),
            Some("limit".into()),
        ));
    }
    let offset = params.offset.unwrap_or(0);
    let query = UsageQuery {
        filter,
        limit,
        offset,
    };
    let UsagePage { totals, records } = state.store.usage_page(&query).await?;
    let has_more = offset.saturating_add(records.len() as u64) < totals.requests;
    Ok(UsageReport {
        user_id: user_id.to_string(),
        totals: totals.into(),
        records: records.into_iter().map(Into::into).collect(),
        limit,
        offset,
        has_more,
    })
}

/// A summary for one user or (with `by_user`) for everyone.
pub(crate) async fn usage_summary(
    state: &AppState,
    user_id: Option<UserId>,
    params: &UsageParams,
    by_user: bool,
) -> Result<UsageSummary, ApiError> {
    let mut filter = filter_from(params)?;
    filter.user_id = user_id.clone();
    let by_day = match params.group_by.as_deref() {
        None | Some("model") => false,
        Some("day") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("Unknown group_by `{other}`; use `model` or `day`."),
                Some("group_by".into()),
            ));
        }
    };
    let grouping = UsageGrouping {
        by_user,
        by_model: true,
        period: by_day.then_some(Period::Day),
        ..UsageGrouping::default()
    };
    let rows = state.store.usage_summary(&filter, grouping).await?;
    let mut totals = UsageTotals::default();
    for row in &rows {
        totals.requests += row.totals.requests;
        totals.prompt_tokens += row.totals.prompt_tokens;
        totals.completion_tokens += row.totals.completion_tokens;
        totals.total_tokens += row.totals.total_tokens;
    }
    Ok(UsageSummary {
        user_id: user_id.map(|u| u.to_string()),
        data: rows.into_iter().map(Into::into).collect(),
        totals: totals.into(),
    })
}

pub(crate) fn filter_from(params: &UsageParams) -> Result<UsageFilter, ApiError> {
    let start = params
        .start
        .as_deref()
        .map(|t| parse_time(t, "start"))
        .transpose()?;
    let end = params
        .end
        .as_deref()
        .map(|t| parse_time(t, "end"))
        .transpose()?;
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(ApiError::bad_request(
            "`start` must not be after `end`.",
            Some("start".into()),
        ));
    }
    Ok(UsageFilter {
        start,
        end,
        model: params.model.clone().filter(|m| !m.is_empty()),
        ..UsageFilter::default()
    })
}

/// Parses RFC 3339 or Unix seconds.
pub(crate) fn parse_time(text: &str, param: &str) -> Result<UnixMillis, ApiError> {
    if let Ok(seconds) = text.parse::<i64>() {
        return seconds.checked_mul(1000).map(UnixMillis).ok_or_else(|| {
            ApiError::bad_request(format!("`{param}` is out of range."), Some(param.into()))
        });
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| UnixMillis((t.unix_timestamp_nanos() / 1_000_000) as i64))
        .map_err(|_| {
            ApiError::bad_request(
                format!(
                    "`{param}` must be an RFC 3339 time (2026-11-01T00:00:00Z) or Unix seconds."
                ),
                Some(param.into()),
            )
        })
}

/// The UTC day of `at`, as `2026-11-01`.
fn utc_day(at: UnixMillis) -> String {
    let (year, month, day) = civil_from_days(at.0.div_euclid(86_400_000));
    format!("{year:04}-{month:02}-{day:02}")
}

/// Formats a time as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339(at: UnixMillis) -> String {
    let nanos = i128::from(at.0) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| at.0.to_string())
}
