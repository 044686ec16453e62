//! How a simulator instance is set up before it starts.

use crate::control::SimSettings;
use crate::model::{ModelName, SimModel};

/// Everything fixed for the life of one simulator: its models, version and server knobs.
///
/// Behaviour that tests change while the server runs (latency, faults) lives in
/// [`SimSettings`] behind a [`crate::SimControl`]; `settings` here is only its starting value.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Installed models, in the order `/api/tags` lists them.
    pub models: Vec<SimModel>,
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
    /// The three default models, version `0.33.0`, one worker, a 64-entry request log, 64 MiB bodies.
    fn default() -> Self {
        Self {
            models: vec![
                SimModel::llama3_2(),
                SimModel::moondream(),
                SimModel::nomic_embed_text(),
            ],
            version: "0.33.0".into(),
            workers: 1,
            request_log_capacity: 64,
            max_body_bytes: 64 * 1024 * 1024,
            settings: SimSettings::default(),
        }
    }
}

impl SimConfig {
    /// The installed model a parsed name refers to, if any.
    pub fn find_model(&self, name: &ModelName) -> Option<&SimModel> {
        self.models
            .iter()
            .find(|model| ModelName::parse(&model.name).is_ok_and(|installed| installed == *name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_models_resolve_by_short_name() {
        let config = SimConfig::default();
        for short in ["llama3.2", "moondream", "nomic-embed-text"] {
            let name = ModelName::parse(short).unwrap();
            assert!(config.find_model(&name).is_some(), "{short}");
        }
        assert!(
            config
                .find_model(&ModelName::parse("llama3.2:70b").unwrap())
                .is_none()
        );
    }
}
