//! Admission: whether a user may make a request now (their model list and their limits), and
//! the ticket an admitted request holds until its usage row is written.
//!
//! The one module that names the rate limiter and its reservations, so that admission can move
//! behind another engine by changing this file alone.

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use aiproxy_domain::{Store, UnixMillis, UsageCommit, UsageRecord, User};
use aiproxy_ratelimit::Reservation;

use crate::error::ApiError;
use crate::ratelimit_headers::rate_limit_headers;
use crate::state::AppState;

/// A request that passed admission.
pub(crate) struct Admitted {
    /// Held until the request's usage row is written.
    pub(crate) ticket: Ticket,
    /// The most tokens the answer may have (Ollama's `num_predict`); `None` when nothing
    /// bounds it.
    pub(crate) budget: Option<u64>,
    /// The answer's head, with the `x-ratelimit-*` headers already set.
    pub(crate) response: actix_web::HttpResponseBuilder,
}

/// An admitted request's hold on its user's limits: the completion tokens reserved and the
/// concurrency slot. Finishing it replaces the reservation with the tokens really used and
/// writes the usage row; cancelling or dropping it releases the reservation without a row.
pub(crate) struct Ticket {
    reservation: Reservation,
    admitted_at: UnixMillis,
}

impl Ticket {
    /// When the request was admitted: the usage row's time and the answer's `created`.
    pub(crate) fn admitted_at(&self) -> UnixMillis {
        self.admitted_at
    }

    /// Counts the record's tokens against the limits and queues the record; the future
    /// resolves once it is durable.
    pub(crate) fn finish(self, store: &dyn Store, record: UsageRecord) -> UsageCommit {
        self.reservation
            .settle(record.total_tokens(), UnixMillis::now());
        store.record_usage(record)
    }

    /// Releases the reservation without a usage row: the request never reached Ollama.
    pub(crate) fn cancel(self) {
        self.reservation.settle(0, UnixMillis::now());
    }
}

/// Refuses a model outside the user's list with a 403 that names it.
pub(crate) fn ensure_model_allowed(user: &User, model: &str) -> Result<(), ApiError> {
    if user.may_use_model(model) {
        return Ok(());
    }
    Err(ApiError::Forbidden {
        message: format!("You are not allowed to use the model `{model}`."),
        code: "model_not_allowed",
    })
}

/// Admits a request against the user's limits (429 otherwise), reserving its completion
/// budget: what it asked for, bounded by what the token limits leave.
pub(crate) fn admit(
    state: &AppState,
    user: &User,
    requested_completion_tokens: Option<u64>,
) -> Result<Admitted, ApiError> {
    let admitted_at = UnixMillis::now();
    let reservation = state
        .limiter
        .admit(
            &user.id,
            &user.limits,
            requested_completion_tokens,
            admitted_at,
        )
        .map_err(|rejection| {
            state.metrics.refused(rejection.limit);
            ApiError::RateLimited(rejection)
        })?;
    let mut response = HttpResponse::Ok();
    for header in rate_limit_headers(reservation.status()) {
        response.insert_header(header);
    }
    Ok(Admitted {
        budget: reservation.completion_budget(),
        ticket: Ticket {
            reservation,
            admitted_at,
        },
        response,
    })
}

/// The current `x-ratelimit-*` headers of a user, for responses that do not go through
/// admission (model lists, usage reports): OpenAI sends them on every response.
pub(crate) fn current_limit_headers(
    state: &AppState,
    user: &User,
) -> Vec<(HeaderName, HeaderValue)> {
    let status = state
        .limiter
        .status(&user.id, &user.limits, UnixMillis::now());
    rate_limit_headers(&status)
}
