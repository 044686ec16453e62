//! How a simulator instance is set up before it starts.

use crate::SimError;
use crate::model::{ModelName, SimModel};
use crate::registry::KeepAlive;
use crate::settings::SimSettings;

/// Everything an instance starts with: its name, its models, version and server knobs.
///
/// Behaviour that tests change while the server runs (latency, faults, the model set, the
/// loaded models) lives behind a [`crate::SimControl`]; the fields here are starting values.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The instance's name, sent as the `x-sim-instance` header of every response and shown in
    /// `/sim/stats`, so a test can tell which of several instances answered. Empty (the
    /// default): no such header, so the answers carry exactly Ollama's headers.
    pub name: String,
    /// Installed models, in the order `/api/tags` lists them.
    pub models: Vec<SimModel>,
    /// Names of installed models that are already loaded in memory at start (in `/api/ps`,
    /// each with `keep_alive` from start). Starting fails if one is not installed.
    pub loaded: Vec<String>,
    /// The models `/api/pull` (and `POST /sim/control` `models`) can add, like a registry.
    pub catalog: Vec<SimModel>,
    /// How long a model stays loaded after a request without `keep_alive` (Ollama's
    /// `OLLAMA_KEEP_ALIVE`, five minutes by default).
    pub keep_alive: KeepAlive,
    /// The context window a model is loaded with when a request sets no `num_ctx` (capped by
    /// the model's own `context_length`); `/api/ps` reports it.
    pub default_num_ctx: u64,
    /// What `GET /api/version` reports.
    pub version: String,
    /// Actix worker threads; 1 is enough for tests.
    pub workers: usize,
    /// How many request bodies [`crate::SimControl::requests`] keeps (oldest dropped first).
    pub request_log_capacity: usize,
    /// The largest request body accepted, in bytes (images make bodies big).
    pub max_body_bytes: usize,
    /// Latency and faults in force when the server starts.
    pub settings: SimSettings,
}

impl Default for SimConfig {
    /// No name; the three default models installed and none loaded; the catalog of
    /// [`SimModel::catalog`]; keep-alive 5 minutes; `num_ctx` 4096; version `0.33.0`; one
    /// worker; a 64-entry request log; 64 MiB bodies.
    fn default() -> Self {
        Self {
            name: String::new(),
            models: SimModel::defaults(),
            loaded: Vec::new(),
            catalog: SimModel::catalog(),
            keep_alive: KeepAlive::DEFAULT,
            default_num_ctx: 4096,
            version: "0.33.0".into(),
            workers: 1,
            request_log_capacity: 64,
            max_body_bytes: 64 * 1024 * 1024,
            settings: SimSettings::default(),
        }
    }
}

impl SimConfig {
    /// Installs exactly the named models, each taken from the installed models or the catalog
    /// (any spelling Ollama would resolve, e.g. `gemma3:1b` or `library/llama3.2`).
    pub fn select_models(&mut self, names: &[&str]) -> Result<(), SimError> {
        let mut selected = Vec::with_capacity(names.len());
        for raw in names {
            let wanted = ModelName::parse(raw)
                .map_err(|_| SimError::Models(format!("invalid model name {raw:?}")))?;
            let model = self
                .models
                .iter()
                .chain(&self.catalog)
                .find(|model| ModelName::parse(&model.name).is_ok_and(|name| name == wanted))
                .ok_or_else(|| {
                    SimError::Models(format!(
                        "model {raw:?} is neither installed nor in the catalog"
                    ))
                })?;
            selected.push(model.clone());
        }
        self.models = selected;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_models_takes_installed_and_catalog_models_by_any_spelling() {
        let mut config = SimConfig::default();
        config
            .select_models(&["gemma3:1b", "library/llama3.2"])
            .unwrap();
        let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["gemma3:1b", "llama3.2:latest"]);
        assert!(config.select_models(&["mistral"]).is_err());
        assert!(config.select_models(&["bad name!"]).is_err());
    }
}
