//! What every handler shares: the control, the version, and model resolution against the
//! instance's installed models.

use std::sync::Arc;

use bytes::Bytes;

use crate::control::{SimControl, SimEndpoint};
use crate::decode::Refusal;
use crate::model::{ModelName, NameError, SimModel};
use crate::registry::KeepAlive;

/// State shared by every worker.
pub(crate) struct AppState {
    pub(crate) control: SimControl,
    pub(crate) version: String,
}

impl AppState {
    /// Counts a request and logs its body.
    pub(crate) fn record(&self, endpoint: SimEndpoint, body: &Bytes) {
        self.control.note_request(endpoint);
        self.control.log_body(endpoint, body);
    }

    /// Resolves a requested name against the installed models; `empty` and `missing` build the
    /// endpoint-specific refusals.
    pub(crate) fn resolve(
        &self,
        requested: &str,
        empty: impl FnOnce() -> Refusal,
        missing: impl FnOnce(&ModelName) -> Refusal,
    ) -> Result<Arc<SimModel>, Refusal> {
        match ModelName::parse(requested) {
            Err(NameError::Empty) => Err(empty()),
            Err(NameError::Invalid) => Err(Refusal::new(400, "invalid model name")),
            Ok(name) => self
                .control
                .registry()
                .find(&name)
                .ok_or_else(|| missing(&name)),
        }
    }

    /// A request used `model`: it is loaded until now + keep-alive.
    pub(crate) fn touch(
        &self,
        model: &Arc<SimModel>,
        keep_alive: Option<KeepAlive>,
        num_ctx: Option<i64>,
    ) {
        let now = self.control.now();
        let num_ctx = num_ctx
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n > 0);
        self.control
            .registry()
            .touch(model, keep_alive, num_ctx, now);
    }

    pub(crate) fn unload(&self, model: &Arc<SimModel>) {
        self.control.registry().unload(model);
    }
}

/// Ollama's 404 for a model it does not have, naming it as the client sent it.
pub(crate) fn not_found_as_sent(requested: &str) -> Refusal {
    Refusal::new(404, format!("model '{requested}' not found"))
}
