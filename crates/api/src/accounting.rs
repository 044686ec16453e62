//! One request's bill: the rate-limit reservation it holds and the usage row it will leave.
//!
//! An [`Accounting`] is created when a request is admitted and must end in exactly one usage
//! row. Finishing it settles the reservation with the real token counts and writes the row;
//! dropping it unfinished (the client went away mid-stream) does both with what was counted
//! so far and marks the row `aborted`.

use std::time::Instant;

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
}

impl Accounting {
    pub(crate) fn new(
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
