//! One admitted request's bill: its ticket and the usage row it will leave.
//!
//! An [`Accounting`] is opened once a request is admitted and must end in exactly one usage
//! row. Finishing it settles the ticket with the real token counts and writes the row;
//! dropping it unfinished (the client went away mid-stream) does both with what was counted
//! so far and marks the row `aborted`. Cancelling it (the request never reached Ollama)
//! leaves no row.

use std::time::Instant;

use actix_web::web;
use aiproxy_domain::{Endpoint, UnixMillis, UsageCommit, UsageRecord, UsageStatus, UserId};
use aiproxy_ollama::{OllamaError, TimeoutPhase};

use crate::admission::Ticket;
use crate::error::{ApiError, Chain};
use crate::state::AppState;

/// The bill of one admitted request.
pub(crate) struct Accounting {
    state: web::Data<AppState>,
    /// Taken when the bill is finished or cancelled.
    ticket: Option<Ticket>,
    user_id: UserId,
    model: String,
    endpoint: Endpoint,
    request_id: String,
    started: Instant,
    created_at: UnixMillis,
    /// Completion tokens seen so far in a stream (one per content chunk, as Ollama streams one
    /// token per line); the estimate used when no final count arrives.
    streamed_tokens: u64,
    first_token_seen: bool,
}

impl Accounting {
    /// The bill of the request `request_id` of `user_id` to `model` through `endpoint`.
    pub(crate) fn open(
        state: &web::Data<AppState>,
        ticket: Ticket,
        user_id: &UserId,
        model: String,
        endpoint: Endpoint,
        request_id: String,
    ) -> Self {
        Self {
            state: state.clone(),
            created_at: ticket.admitted_at(),
            ticket: Some(ticket),
            user_id: user_id.clone(),
            model,
            endpoint,
            request_id,
            started: Instant::now(),
            streamed_tokens: 0,
            first_token_seen: false,
        }
    }

    /// Settles the ticket and queues the usage row; the future resolves once it is on disk.
    pub(crate) fn finish(
        mut self,
        prompt_tokens: u64,
        completion_tokens: u64,
        status: UsageStatus,
    ) -> UsageCommit {
        self.write(prompt_tokens, completion_tokens, status)
    }

    /// Ends the bill with the tokens streamed so far, as an `error` row.
    pub(crate) fn finish_streamed_as_error(self) -> UsageCommit {
        let tokens = self.streamed_tokens;
        self.finish(0, tokens, UsageStatus::Error)
    }

    /// Counts a streamed token; the first one also goes into the time-to-first-token metric.
    pub(crate) fn token_streamed(&mut self) {
        self.streamed_tokens += 1;
        if !self.first_token_seen {
            self.first_token_seen = true;
            self.state.metrics.first_token(self.started.elapsed());
        }
    }

    /// Notes how long Ollama took to send its response head.
    pub(crate) fn upstream_answered(&self) {
        self.state.metrics.upstream_head(self.started.elapsed());
    }

    /// Releases the ticket without a usage row: the request never reached Ollama.
    pub(crate) fn cancel(mut self) {
        if let Some(ticket) = self.ticket.take() {
            ticket.cancel();
        }
    }

    fn write(
        &mut self,
        prompt_tokens: u64,
        completion_tokens: u64,
        status: UsageStatus,
    ) -> UsageCommit {
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
            backend: None,
            client_request_id: None,
            prompt_tokens,
            completion_tokens,
            status,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            created_at: self.created_at,
        };
        match self.ticket.take() {
            Some(ticket) => ticket.finish(record),
            // Only a bill already finished gets here, and `finish` consumes it.
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        if self.ticket.is_some() {
            let commit = self.write(0, self.streamed_tokens, UsageStatus::Aborted);
            settle_in_background(commit);
        }
    }
}

/// Lets a usage write whose outcome nobody waits for finish on the current runtime, logging
/// a failure. Without a runtime (a bill dropped outside one) the write was still handed to
/// the store, which queues it when `record_usage` is called; only its outcome goes unheard.
fn settle_in_background(commit: UsageCommit) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if let Err(err) = commit.await {
                    tracing::error!(error = %Chain(&err), "could not record the usage of an aborted request");
                }
            });
        }
        Err(_) => drop(commit),
    }
}

/// Ends the bill of a request that failed before any answer: no row when Ollama was never
/// reached, an `error` row (with no tokens) when it was.
pub(crate) async fn fail_before_answer(accounting: Accounting, err: OllamaError) -> ApiError {
    match err {
        OllamaError::Connect { .. }
        | OllamaError::Timeout {
            phase: TimeoutPhase::Connect,
        } => accounting.cancel(),
        _ => {
            if let Err(store_err) = accounting.finish(0, 0, UsageStatus::Error).await {
                tracing::error!(error = %Chain(&store_err), "could not record a failed request");
            }
        }
    }
    ApiError::Upstream(err)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A usage write that notes whether it was awaited to the end.
    fn commit(done: &Arc<AtomicBool>) -> UsageCommit {
        let done = done.clone();
        Box::pin(async move {
            done.store(true, Ordering::SeqCst);
            Ok(())
        })
    }

    #[test]
    fn an_unheard_write_outside_a_runtime_is_dropped_without_a_panic() {
        let done = Arc::new(AtomicBool::new(false));
        settle_in_background(commit(&done));
        assert!(!done.load(Ordering::SeqCst));
    }

    #[test]
    fn an_unheard_write_inside_a_runtime_runs_to_the_end() {
        let done = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            settle_in_background(commit(&done));
            while !done.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        });
        assert!(done.load(Ordering::SeqCst));
    }
}
