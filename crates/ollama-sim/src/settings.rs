//! Latency and faults: what a test switches on, and their JSON form.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Latency and faults. Every field defaults to off / zero.
///
/// Delays and faults apply to every inference request that passes validation (chat, generate
/// and embeddings, native or through a compatibility route); listing, management and control
/// routes are not affected (except by `unresponsive`). Errors come in the route's own shape.
/// A fault counted "after N tokens" fires once N token lines (events) were sent, or just before
/// the final `done` line when the reply has fewer than N tokens, so a configured fault always
/// shows. An answer that is not streamed (embeddings always) takes the non-streaming meaning of
/// each fault.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimSettings {
    /// Wait before the response head (and with it the first line) is sent.
    pub first_token_delay: Duration,
    /// Wait between two streamed lines; a non-streaming reply waits this long per token.
    pub token_delay: Duration,
    /// Answer this status with `{"error": message}` (or the route's error shape) instead of
    /// generating.
    pub fail_status: Option<(u16, String)>,
    /// Send `{"error":"an error was encountered while running the model"}` after N tokens and
    /// end the stream cleanly with no `done` line (status stays 200; with N = 0 the answer is a
    /// 500 instead, as Ollama does when it fails before the first byte). Non-streaming: 500.
    pub error_after_tokens: Option<usize>,
    /// Drop the connection after N tokens, without the terminating chunk.
    /// Non-streaming: the head promises the full `Content-Length`, half the body comes, then the
    /// connection drops.
    pub close_after_tokens: Option<usize>,
    /// Insert the non-JSON line `{"model":` after N tokens, then carry on normally.
    /// Non-streaming: a 200 whose body is the first half of the JSON.
    pub malformed_after_tokens: Option<usize>,
    /// Stop sending after N tokens and never finish; the connection stays open.
    /// With N = 0, or non-streaming, nothing at all is sent (as Ollama sends its head with the
    /// first line).
    pub stall_after_tokens: Option<usize>,
    /// Never answer at all, not even the head.
    pub hang: bool,
    /// When set, the faults apply to this many more requests and are then cleared
    /// (`Some(0)` disables them at once). Delays are not affected.
    pub faults_for_next: Option<usize>,
    /// Every route but `/sim/*` hangs without answering (health probes such as `/` and
    /// `/api/tags` included), like a backend that stopped responding. Not counted by
    /// `faults_for_next`, and the hung requests are not counted in the stats.
    pub unresponsive: bool,
}

impl SimSettings {
    /// Whether any fault counted by `faults_for_next` (not a delay, not `unresponsive`) is on.
    pub fn has_faults(&self) -> bool {
        self.fail_status.is_some()
            || self.error_after_tokens.is_some()
            || self.close_after_tokens.is_some()
            || self.malformed_after_tokens.is_some()
            || self.stall_after_tokens.is_some()
            || self.hang
    }

    /// Switches every fault off and forgets `faults_for_next`; delays and `unresponsive` stay.
    pub fn clear_faults(&mut self) {
        *self = Self {
            first_token_delay: self.first_token_delay,
            token_delay: self.token_delay,
            unresponsive: self.unresponsive,
            ..Self::default()
        };
    }

    /// The JSON form `GET /sim/control` returns and `POST /sim/control` accepts.
    pub fn to_json(&self) -> Value {
        let view = SettingsView {
            first_token_delay_ms: duration_ms(self.first_token_delay),
            token_delay_ms: duration_ms(self.token_delay),
            fail_status: self
                .fail_status
                .clone()
                .map(|(status, message)| FailStatusJson { status, message }),
            error_after_tokens: self.error_after_tokens,
            close_after_tokens: self.close_after_tokens,
            malformed_after_tokens: self.malformed_after_tokens,
            stall_after_tokens: self.stall_after_tokens,
            hang: self.hang,
            faults_for_next: self.faults_for_next,
            unresponsive: self.unresponsive,
        };
        serde_json::to_value(view).unwrap_or(Value::Null)
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Serialize)]
struct SettingsView {
    first_token_delay_ms: u64,
    token_delay_ms: u64,
    fail_status: Option<FailStatusJson>,
    error_after_tokens: Option<usize>,
    close_after_tokens: Option<usize>,
    malformed_after_tokens: Option<usize>,
    stall_after_tokens: Option<usize>,
    hang: bool,
    faults_for_next: Option<usize>,
    unresponsive: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailStatusJson {
    pub(crate) status: u16,
    pub(crate) message: String,
}
