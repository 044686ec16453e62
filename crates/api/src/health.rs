//! `GET /` and `GET /health`: public, no key.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use aiproxy_ollama::OllamaClient;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// What `GET /` says.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceStatus {
    /// Always `aiproxy`.
    pub service: &'static str,
    /// The server's version.
    pub version: &'static str,
    /// Always `running` when it answers at all.
    pub status: &'static str,
    /// Where the API documentation is.
    pub docs: &'static str,
}

/// What `GET /health` says.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the database works (the proxy can account), else `unavailable`.
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub database: &'static str,
    /// `ok` or `unreachable`. Ollama being down does not make the proxy unhealthy: it keeps
    /// serving the admin and usage APIs, and answers chat requests with 502.
    pub ollama: &'static str,
    /// Ollama's version, when reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ollama_version: Option<String>,
}

/// Service name, version and status.
#[utoipa::path(tag = "public", responses((status = 200, body = ServiceStatus)))]
#[get("/")]
pub async fn root() -> HttpResponse {
    HttpResponse::Ok().json(ServiceStatus {
        service: "aiproxy",
        version: env!("CARGO_PKG_VERSION"),
        status: "running",
        docs: "/docs/",
    })
}

/// Whether the database and Ollama are reachable. 503 when the database is unusable.
#[utoipa::path(
    tag = "public",
    responses(
        (status = 200, description = "The database works", body = Health),
        (status = 503, description = "The database is unusable", body = Health),
    )
)]
#[get("/health")]
pub async fn health(state: web::Data<AppState>, client: web::Data<OllamaClient>) -> HttpResponse {
    let database_ok = state.store.ping().await.is_ok();
    let ollama_version =
        match actix_web::rt::time::timeout(Duration::from_secs(2), client.version()).await {
            Ok(Ok(v)) => Some(v.version),
            _ => None,
        };
    let body = Health {
        status: if database_ok { "ok" } else { "unavailable" },
        database: if database_ok { "ok" } else { "unavailable" },
        ollama: if ollama_version.is_some() {
            "ok"
        } else {
            "unreachable"
        },
        ollama_version,
    };
    if database_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
