//! The OpenAI-compatible HTTP surface of aiproxy on actix-web: routes, bearer-key extractors,
//! admission and accounting, OpenAI-shaped errors, and the OpenAPI description.
//!
//! OpenAI's wire types and their translation to and from Ollama's are `aiproxy-openai`'s; this
//! crate adds what needs HTTP and I/O around them (bodies, keys, limits, the upstream call,
//! fetching images, streaming).
//!
//! This crate does not open databases or read configuration: the caller hands it an
//! [`AppState`] (any [`aiproxy_domain::Store`], any [`aiproxy_domain::Admission`], settings)
//! and, per worker, an [`aiproxy_ollama::OllamaClient`]. The `proxy-server` binary does that
//! wiring; an embedder can do the same in their own actix app:
//!
//! ```no_run
//! use std::sync::Arc;
//! use actix_web::{App, HttpServer, web};
//! use aiproxy_api::{ApiSettings, AppState};
//! use aiproxy_ollama::{OllamaClient, OllamaConfig};
//! use aiproxy_ratelimit::{LimiterConfig, LocalAdmission, RateLimiter};
//! use utoipa_actix_web::AppExt as _;
//!
//! # async fn run(store: Arc<dyn aiproxy_domain::Store>) -> std::io::Result<()> {
//! let limiter = Arc::new(RateLimiter::new(LimiterConfig::default()));
//! let admission = Arc::new(LocalAdmission::new(limiter, store.clone()));
//! let state = web::Data::new(AppState::new(store, admission, ApiSettings::default()));
//! HttpServer::new(move || {
//!     let (app, _openapi) = App::new()
//!         .into_utoipa_app()
//!         .openapi(aiproxy_api::openapi())
//!         .app_data(state.clone())
//!         .app_data(web::Data::new(OllamaClient::new(&OllamaConfig::default())))
//!         .configure(aiproxy_api::configure)
//!         .split_for_parts();
//!     app.default_service(web::to(aiproxy_api::not_found))
//! })
//! .bind(("127.0.0.1", 8000))?
//! .run()
//! .await
//! # }
//! ```
#![warn(missing_docs)]

mod accounting;
mod admin;
mod admission;
mod auth;
mod body;
mod chat;
mod completions;
mod embeddings;
mod error;
mod error_responses;
mod export;
mod forbidden_addresses;
mod health;
mod image_fetch;
mod json_response;
mod metrics;
mod metrics_route;
mod models;
mod ratelimit_headers;
mod request_id;
mod state;
mod streaming;
mod usage;

use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub use auth::{Admin, AuthedUser};
pub use error::ApiError;
pub use image_fetch::ImageFetchSettings;
pub use metrics::Metrics;
pub use request_id::assign_request_id;
pub use state::{ApiSettings, AppState, ExtraMetrics, KeyCache};

/// Registers every route (and its OpenAPI entry) on a utoipa-aware service config.
///
/// Needs `web::Data<AppState>` and `web::Data<OllamaClient>` in the app data.
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.app_data(query_config())
        .app_data(path_config())
        .service(health::root)
        .service(health::health)
        .service(chat::chat_completions)
        .service(completions::completions)
        .service(embeddings::embeddings)
        .service(models::list_models)
        .service(models::get_model)
        .service(usage::my_usage)
        .service(usage::my_usage_summary)
        .service(admin::create_user)
        .service(admin::list_users)
        .service(admin::delete_all_users)
        .service(admin::get_user)
        .service(admin::update_user)
        .service(admin::delete_user)
        .service(admin::user_usage)
        .service(admin::get_limits)
        .service(admin::put_limits)
        .service(admin::rotate_key)
        .service(admin::all_usage_summary)
        .service(export::export_usage)
        .service(metrics_route::metrics);
}

/// The OpenAPI document's fixed parts: info, tags and the two bearer schemes. Paths and
/// schemas are added by [`configure`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// For unknown routes (and, via actix, wrong methods): an OpenAI-shaped 404 or 405.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    // A route that exists for other methods falls through to here too (actix's method guards
    // make the resource not match); tell the two apart.
    if req.resource_map().has_resource(req.path()) {
        return Err(ApiError::MethodNotAllowed);
    }
    Err(ApiError::NotFound {
        message: format!("Unknown route: {} {}", req.method(), req.path()),
    })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _| {
        ApiError::bad_request(format!("Invalid query parameters: {err}"), None).into()
    })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _| {
        ApiError::NotFound {
            message: format!("Invalid path: {err}"),
        }
        .into()
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "aiproxy",
        description = "An OpenAI-compatible usage proxy for Ollama: per-user keys, exact rate limits and token accounting.\n\nUser routes take a user's key; admin routes take the operator's `ADMIN_API_KEY`. Click **Authorize** and enter either.",
    ),
    tags(
        (name = "public", description = "No key needed"),
        (name = "user", description = "OpenAI-compatible routes; `Authorization: Bearer <user key>`"),
        (name = "admin", description = "Users, keys, limits and usage; `Authorization: Bearer <ADMIN_API_KEY>`"),
    ),
    // Error responses are described with `IntoResponses` types (`error_responses`), whose
    // schemas utoipa does not collect by itself.
    components(schemas(aiproxy_openai::ErrorResponse, aiproxy_openai::ErrorBody)),
    modifiers(&SecuritySchemes),
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description.to_owned()))
                    .build(),
            )
        };
        components.add_security_scheme("user_key", bearer("A user's API key (sk-…)"));
        components.add_security_scheme("admin_key", bearer("The operator's ADMIN_API_KEY"));
    }
}

/// Middleware that gives OpenAI's error shape to error responses actix makes on its own
/// (a wrong method's empty 405, an extractor's plain-text 400), so no client ever gets an
/// HTML or empty error.
pub fn error_shape<B: 'static>() -> actix_web::middleware::ErrorHandlers<B> {
    actix_web::middleware::ErrorHandlers::new()
        .default_handler_client(reshape_error)
        .default_handler_server(reshape_error)
}

fn reshape_error<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::http::{StatusCode, header};
    use actix_web::middleware::ErrorHandlerResponse;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound {
            message: format!(
                "Unknown route: {} {}",
                res.request().method(),
                res.request().path()
            ),
        },
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        s if s.is_client_error() => ApiError::BadRequest {
            message: s
                .canonical_reason()
                .unwrap_or("The request could not be handled.")
                .to_owned(),
            param: None,
            code: None,
        },
        _ => ApiError::Internal(format!("status {status} without a body")),
    };
    let (req, _) = res.into_parts();
    let mut response = actix_web::ResponseError::error_response(&error);
    // Keep the status actix chose (e.g. 431 for huge headers) while giving it our body.
    *response.status_mut() = status;
    Ok(ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, response).map_into_right_body(),
    ))
}
