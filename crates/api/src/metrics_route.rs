//! `GET /metrics`: the operator's view in Prometheus text format.

use actix_web::{HttpRequest, HttpResponse, get, web};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::error_responses::AdminKeyRefused;
use crate::state::AppState;

/// Prometheus metrics. Needs the admin key unless the operator made metrics public.
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        AdminKeyRefused,
    ),
    security(("admin_key" = []), ())
)]
#[get("/metrics")]
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.settings.metrics_public {
        use actix_web::FromRequest as _;
        Admin::extract(&req).await?;
    }
    let mut text = state.metrics.render();
    if let Some(extra) = &state.extra_metrics {
        extra(&mut text);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
