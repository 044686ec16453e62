//! Sending answers: the stream machine that drives an [`Encoder`] piece by piece, and the
//! latency and faults injected into streams and whole bodies alike.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::body::SizedStream;
use actix_web::http::header;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream;

use crate::SimError;
use crate::control::{
    ClaimedFaults, MODEL_ERROR_MESSAGE, SimControl, StreamGuard, StreamOutcome, Terminal,
};
use crate::wire::{Dialect, Encoder, JSON, Reply, status_code};

/// Waits `delay` without blocking the worker.
pub(crate) async fn pause(delay: Duration) {
    if !delay.is_zero() {
        actix_rt::time::sleep(delay).await;
    }
}

/// Parks the request forever; actix drops it when the client goes away.
pub(crate) async fn never() -> HttpResponse {
    std::future::pending::<HttpResponse>().await
}

/// Claims the faults for one validated request and applies the ones that act before any
/// answer: `hang`, then `first_token_delay`, then `fail_status` (in `dialect`'s error shape).
/// `Err` is the answer to send instead.
pub(crate) async fn start_answer(
    control: &SimControl,
    dialect: Dialect,
) -> Result<ClaimedFaults, HttpResponse> {
    let faults = control.claim_faults();
    if faults.hang {
        return Err(never().await);
    }
    pause(control.settings().first_token_delay).await;
    if let Some((status, message)) = &faults.fail_status {
        return Err(dialect.error(*status, message));
    }
    Ok(faults)
}

/// Sends a generated reply with `encoder`, applying the claimed faults and the live delays.
pub(crate) async fn send_reply<E: Encoder>(
    control: &SimControl,
    reply: Reply,
    stream: bool,
    mut encoder: E,
) -> HttpResponse {
    let faults = match start_answer(control, encoder.dialect()).await {
        Ok(faults) => faults,
        Err(answer) => return answer,
    };
    if stream {
        return send_stream(control, reply, &faults, encoder).await;
    }
    let tokens = u32::try_from(reply.pieces.len()).unwrap_or(u32::MAX);
    pause(control.settings().token_delay.saturating_mul(tokens)).await;
    let (body, content_type) = encoder.whole(&reply);
    send_body(&faults, body, content_type, encoder.dialect()).await
}

/// Sends a complete body under the claimed faults: an error fault is a 500 with Ollama's
/// model-runner error, `close` promises the full `Content-Length` and drops the connection
/// half-way, `malformed` sends the first half as a 200, `stall` sends nothing.
pub(crate) async fn send_body(
    faults: &ClaimedFaults,
    body: String,
    content_type: &'static str,
    dialect: Dialect,
) -> HttpResponse {
    match faults.terminal {
        Some((Terminal::Error, _)) => dialect.error(500, MODEL_ERROR_MESSAGE),
        Some((Terminal::Stall, _)) => never().await,
        Some((Terminal::Close, _)) => {
            let full_length = body.len() as u64;
            let half = Bytes::copy_from_slice(&body.as_bytes()[..body.len() / 2]);
            let cut = stream::once(async move { Ok::<_, SimError>(half) })
                .chain(stream::once(async { Err(abort_connection().await) }));
            HttpResponse::Ok()
                .content_type(content_type)
                .body(SizedStream::new(full_length, cut))
        }
        None if faults.malformed_after.is_some() => {
            let mut half = body;
            let mut cut = half.len() / 2;
            while !half.is_char_boundary(cut) {
                cut -= 1;
            }
            half.truncate(cut);
            HttpResponse::Ok().content_type(content_type).body(half)
        }
        None => HttpResponse::build(status_code(200))
            .content_type(content_type)
            .body(body),
    }
}

/// Gives the dispatcher a chance to flush what was written, then yields the error that makes
/// actix drop the connection without the terminating chunk.
async fn abort_connection() -> SimError {
    actix_rt::task::yield_now().await;
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    SimError::InjectedClose
}

/// What the stream sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Piece(usize),
    Final,
    ErrorLine,
    Malformed,
    Close,
    Stall,
}

impl Step {
    /// Whether this step writes a line (and so waits `token_delay` when it is not the first).
    fn is_line(self) -> bool {
        !matches!(self, Step::Close | Step::Stall)
    }
}

fn plan_steps(pieces: usize, faults: &ClaimedFaults) -> VecDeque<Step> {
    let terminal = faults
        .terminal
        .map(|(kind, after)| (kind, after.min(pieces)));
    let malformed_at = faults.malformed_after.map(|after| after.min(pieces));
    let mut steps = VecDeque::new();
    for sent in 0..=pieces {
        if malformed_at == Some(sent) {
            steps.push_back(Step::Malformed);
        }
        if let Some((kind, at)) = terminal
            && at == sent
        {
            steps.push_back(match kind {
                Terminal::Error => Step::ErrorLine,
                Terminal::Close => Step::Close,
                Terminal::Stall => Step::Stall,
            });
            return steps;
        }
        steps.push_back(if sent < pieces {
            Step::Piece(sent)
        } else {
            Step::Final
        });
    }
    steps
}

struct StreamState<E> {
    reply: Reply,
    encoder: E,
    steps: VecDeque<Step>,
    control: SimControl,
    lines_sent: usize,
    guard: StreamGuard,
}

impl<E: Encoder> StreamState<E> {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, SimError>, Self)> {
        let step = self.steps.pop_front()?;
        if step.is_line() {
            if self.lines_sent > 0 {
                pause(self.control.settings().token_delay).await;
            }
            self.lines_sent += 1;
        }
        let chunk = match step {
            Step::Piece(index) => self.encoder.piece(&self.reply, &self.reply.pieces[index]),
            Step::Final => {
                self.guard.finish(StreamOutcome::Completed);
                self.encoder.finish(&self.reply)
            }
            Step::ErrorLine => {
                self.guard.finish(StreamOutcome::Errored);
                // A dialect that drops the error line just ends the stream there.
                self.encoder.error_line(&self.reply)?
            }
            Step::Malformed => Bytes::from_static(self.encoder.malformed()),
            Step::Close => {
                self.guard.finish(StreamOutcome::AbortedByServer);
                self.steps.clear();
                let error = abort_connection().await;
                return Some((Err(error), self));
            }
            Step::Stall => std::future::pending::<Bytes>().await,
        };
        Some((Ok(chunk), self))
    }
}

async fn send_stream<E: Encoder>(
    control: &SimControl,
    reply: Reply,
    faults: &ClaimedFaults,
    encoder: E,
) -> HttpResponse {
    match faults.terminal {
        // Ollama sends its head together with the first line, so a failure before any line is
        // a plain error status (with `application/json`, no charset, chunked) ...
        Some((Terminal::Error, 0)) => {
            let body = Bytes::from(encoder.dialect().error_body(500, MODEL_ERROR_MESSAGE));
            return HttpResponse::InternalServerError()
                .content_type(JSON)
                .streaming(stream::once(async move { Ok::<_, SimError>(body) }));
        }
        // ... and a stall before any line sends nothing at all.
        Some((Terminal::Stall, 0)) => return never().await,
        _ => {}
    }
    let mut response = HttpResponse::Ok();
    response.content_type(encoder.stream_content_type());
    if encoder.stream_no_cache() {
        response.insert_header((header::CACHE_CONTROL, "no-cache"));
    }
    let state = StreamState {
        steps: plan_steps(reply.pieces.len(), faults),
        guard: control.open_stream(),
        control: control.clone(),
        lines_sent: 0,
        reply,
        encoder,
    };
    response.streaming(stream::unfold(state, StreamState::next_chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_place_faults_after_n_pieces_or_before_done() {
        let faults = |terminal, malformed| ClaimedFaults {
            terminal,
            malformed_after: malformed,
            ..ClaimedFaults::default()
        };
        use Step::*;
        assert_eq!(
            Vec::from(plan_steps(2, &ClaimedFaults::default())),
            vec![Piece(0), Piece(1), Final]
        );
        assert_eq!(
            Vec::from(plan_steps(3, &faults(Some((Terminal::Error, 1)), None))),
            vec![Piece(0), ErrorLine]
        );
        assert_eq!(
            Vec::from(plan_steps(2, &faults(Some((Terminal::Close, 9)), None))),
            vec![Piece(0), Piece(1), Close]
        );
        assert_eq!(
            Vec::from(plan_steps(2, &faults(Some((Terminal::Stall, 1)), Some(1)))),
            vec![Piece(0), Malformed, Stall]
        );
        assert_eq!(
            Vec::from(plan_steps(1, &faults(None, Some(0)))),
            vec![Malformed, Piece(0), Final]
        );
    }
}
