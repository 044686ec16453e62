//! One request's bill: the rate-limit reservation it holds and the usage row it will leave.
//!
//! An [`Accounting`] is created when a request is admitted and must end in exactly one usage
//! row. Finishing it settles the reservation with the real token counts and writes the row;
//! dropping it unfinished (the client went away mid-stream) does both with what was counted
//! so far and marks the row `aborted`.

use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue};
use aiproxy_domain::{Endpoint, UnixMillis, UsageCommit, UsageRecord, UsageStatus, UserId};
use aiproxy_ratelimit::Reservation;

use crate::state::AppState;

/// The bill of one admitted request.
pub(crate) struct Accounting {
    state: actix_web::web::Data<AppState>,
    reservation: Option<Reservation>,
    user_id: UserId,
    model: String,
    endpoint: Endpoint,
    request_id: String,
    started: Instant,
    created_at: UnixMillis,
    /// Completion tokens seen so far in a stream (one per content chunk, as Ollama streams one
    /// token per line); the estimate used when no final count arrives.
    pub(crate) streamed_tokens: u64,
    first_token_seen: bool,
}

impl Accounting {
    fn new(
        state: actix_web::web::Data<AppState>,
        reservation: Reservation,
        user_id: UserId,
        model: String,
        endpoint: Endpoint,
        request_id: String,
        created_at: UnixMillis,
    ) -> Self {
        Self {
            state,
            reservation: Some(reservation),
            user_id,
            model,
            endpoint,
            request_id,
            started: Instant::now(),
            created_at,
            streamed_tokens: 0,
            first_token_seen: false,
        }
    }

    /// Settles the reservation and queues the usage row; the future resolves once it is on
    /// disk.
    pub(crate) fn finish(
        mut self,
        prompt_tokens: u64,
        completion_tokens: u64,
        status: UsageStatus,
    ) -> UsageCommit {
        self.write(prompt_tokens, completion_tokens, status)
    }

    /// Notes, once, that the first token of a stream went out.
    pub(crate) fn first_token_sent(&mut self) {
        if !self.first_token_seen {
            self.first_token_seen = true;
            self.state.metrics.first_token(self.started.elapsed());
        }
    }

    /// Notes how long Ollama took to send its response head.
    pub(crate) fn upstream_answered(&self) {
        self.state.metrics.upstream_head(self.started.elapsed());
    }

    /// Releases the reservation without a usage row: the request never reached Ollama.
    pub(crate) fn cancel(mut self) {
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(0, UnixMillis::now());
        }
    }

    fn write(
        &mut self,
        prompt_tokens: u64,
        completion_tokens: u64,
        status: UsageStatus,
    ) -> UsageCommit {
        let total = prompt_tokens.saturating_add(completion_tokens);
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(total, UnixMillis::now());
        }
        self.state.metrics.usage(
            &self.model,
            self.endpoint.as_str(),
            status.as_str(),
            prompt_tokens,
            completion_tokens,
        );
        let record = UsageRecord {
            request_id: std::mem::take(&mut self.request_id),
            user_id: self.user_id.clone(),
            model: std::mem::take(&mut self.model),
            endpoint: self.endpoint,
            prompt_tokens,
            completion_tokens,
            status,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            created_at: self.created_at,
        };
        self.state.store.record_usage(record)
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        if self.reservation.is_some() {
            let commit = self.write(0, self.streamed_tokens, UsageStatus::Aborted);
            // The row is queued when `record_usage` is called; awaiting only reports the
            // outcome, which nobody is left to hear. Log a failure, though.
            actix_web::rt::spawn(async move {
                if let Err(err) = commit.await {
                    tracing::error!(error = %err, "could not record the usage of an aborted request");
                }
            });
        }
    }
}

/// A request that passed admission: its bill, its completion budget, and the response head
/// with the request id and the `x-ratelimit-*` headers already set.
pub(crate) struct Admitted {
    pub(crate) accounting: Accounting,
    pub(crate) budget: Option<u64>,
    pub(crate) response: actix_web::HttpResponseBuilder,
    pub(crate) request_id: String,
    pub(crate) created_at: UnixMillis,
}

/// Refuses a model outside the user's list with a 403 that names it.
pub(crate) fn ensure_model_allowed(
    user: &aiproxy_domain::User,
    model: &str,
) -> Result<(), crate::error::ApiError> {
    if user.may_use_model(model) {
        return Ok(());
    }
    Err(crate::error::ApiError::Forbidden {
        message: format!("You are not allowed to use the model `{model}`."),
        code: "model_not_allowed",
    })
}

/// Admits a request against the user's limits (429 otherwise) and opens its bill.
pub(crate) fn admit(
    req: &actix_web::HttpRequest,
    state: &actix_web::web::Data<AppState>,
    user: &aiproxy_domain::User,
    model: &str,
    endpoint: Endpoint,
    requested_completion_tokens: Option<u64>,
) -> Result<Admitted, crate::error::ApiError> {
    let created_at = UnixMillis::now();
    let reservation = state
        .limiter
        .admit(
            &user.id,
            &user.limits,
            requested_completion_tokens,
            created_at,
        )
        .map_err(|rejection| {
            state.metrics.refused(rejection.limit);
            crate::error::ApiError::RateLimited(rejection)
        })?;
    let budget = reservation.completion_budget();
    let request_id = crate::request_id::request_id(req);
    let mut response = actix_web::HttpResponse::Ok();
    for header in crate::ratelimit_headers::rate_limit_headers(reservation.status()) {
        response.insert_header(header);
    }
    let accounting = Accounting::new(
        state.clone(),
        reservation,
        user.id.clone(),
        model.to_owned(),
        endpoint,
        request_id.clone(),
        created_at,
    );
    Ok(Admitted {
        accounting,
        budget,
        response,
        request_id,
        created_at,
    })
}

/// The current `x-ratelimit-*` headers of a user, for responses that do not go through
/// admission (model lists, usage reports): OpenAI sends them on every response.
pub(crate) fn current_limit_headers(
    state: &AppState,
    user: &aiproxy_domain::User,
) -> Vec<(HeaderName, HeaderValue)> {
    let status = state
        .limiter
        .status(&user.id, &user.limits, aiproxy_domain::UnixMillis::now());
    crate::ratelimit_headers::rate_limit_headers(&status)
}
