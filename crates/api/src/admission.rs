//! Admission: whether a user may make a request now (their model list and their limits), and
//! the ticket an admitted request holds until its usage row is written.
//!
//! The one module that talks to the admission engine (the domain's `Admission`: in-process or
//! shared by replicas, the HTTP layer does not know which).

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use aiproxy_domain::{
    AdmissionError, AdmissionRequest, UnixMillis, UsageCommit, UsageRecord, User,
};

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
    held: Box<dyn aiproxy_domain::Ticket>,
    admitted_at: UnixMillis,
}

impl Ticket {
    /// When the request was admitted: the usage row's time and the answer's `created`.
    pub(crate) fn admitted_at(&self) -> UnixMillis {
        self.admitted_at
    }

    /// Counts the record's tokens against the limits and records the row, as one step where
    /// the engine can; the future resolves once it is durable.
    pub(crate) fn finish(self, record: UsageRecord) -> UsageCommit {
        self.held.finish(record)
    }

    /// Releases the reservation without a usage row: the request never reached Ollama.
    pub(crate) fn cancel(self) {
        self.held.cancel();
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

/// Admits a request against the user's limits (429 otherwise, 503 when the engine cannot
/// decide), reserving its completion budget: what it asked for, bounded by what the token
/// limits leave.
pub(crate) async fn admit(
    state: &AppState,
    user: &User,
    requested_completion_tokens: Option<u64>,
) -> Result<Admitted, ApiError> {
    let admitted_at = UnixMillis::now();
    let admitted = state
        .admission
        .admit(AdmissionRequest {
            user: user.id.clone(),
            limits: user.limits,
            requested_completion_tokens,
            now: admitted_at,
        })
        .await
        .map_err(|error| match error {
            AdmissionError::Refused(rejection) => {
                state.metrics.refused(rejection.limit);
                ApiError::RateLimited(rejection)
            }
            AdmissionError::Unavailable(cause) => ApiError::Storage(cause),
        })?;
    let mut response = HttpResponse::Ok();
    for header in rate_limit_headers(&admitted.status) {
        response.insert_header(header);
    }
    Ok(Admitted {
        budget: admitted.completion_budget,
        ticket: Ticket {
            held: admitted.ticket,
            admitted_at,
        },
        response,
    })
}

/// The current `x-ratelimit-*` headers of a user, for responses that do not go through
/// admission (model lists, usage reports): OpenAI sends them on every response. None when the
/// admission engine cannot say (the headers inform; they do not gate the response).
pub(crate) async fn current_limit_headers(
    state: &AppState,
    user: &User,
) -> Vec<(HeaderName, HeaderValue)> {
    let status = state
        .admission
        .status(&user.id, &user.limits, UnixMillis::now())
        .await;
    match status {
        Ok(status) => rate_limit_headers(&status),
        Err(error) => {
            tracing::debug!(error = %crate::error::Chain(&error), "no rate-limit headers: the admission engine did not answer");
            Vec::new()
        }
    }
}
