//! `x-request-id` on every response: the client's own id when it sent a sane one, else ours.
//! The same id names the request's usage row and its log lines.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use tracing::Instrument as _;

use crate::state::AppState;

const HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 128;

/// The request's id, kept in the request's extensions by [`assign_request_id`].
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

/// The id of `req`, or a new one when the middleware did not run (an embedder's own app).
pub(crate) fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_else(next_request_id)
}

/// Middleware: assigns the id, runs the request inside a span carrying it, and sets the
/// response header (errors included).
pub async fn assign_request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_LEN
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(next_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let state = req.app_data::<actix_web::web::Data<AppState>>().cloned();
    if let Some(state) = &state {
        state.metrics.request_started();
    }
    // The id alone: every field is formatted when the span opens, on every request, and the
    // id is what ties a log line to the client's request and its usage row.
    let span = tracing::info_span!("request", request_id = %id);
    let result = next.call(req).instrument(span).await;
    if let Some(state) = &state {
        match &result {
            Ok(response) => {
                let route = response.request().match_pattern();
                state.metrics.request_finished(
                    route.as_deref().unwrap_or("unmatched"),
                    response.status().as_u16(),
                );
            }
            Err(err) => state
                .metrics
                .request_finished("unmatched", err.as_response_error().status_code().as_u16()),
        }
    }
    let mut response = result?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    Ok(response)
}

/// Request ids: unique within a process and across restarts (a random prefix drawn at start),
/// and cheap (a counter, no system call per request).
fn next_request_id() -> String {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        // Without the OS random source ids stay unique within this process, which is what
        // matters for one server; fall back to the clock.
        if getrandom::fill(&mut bytes).is_err() {
            bytes = (aiproxy_domain::UnixMillis::now().0 as u32).to_le_bytes();
        }
        u32::from_le_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // `format!("{prefix:08x}{n:016x}")`, written by hand: this runs on every request.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(24);
    for shift in (0..8).rev() {
        id.push(char::from(HEX[(prefix >> (shift * 4)) as usize & 0xf]));
    }
    for shift in (0..16).rev() {
        id.push(char::from(HEX[(n >> (shift * 4)) as usize & 0xf]));
    }
    id
}
