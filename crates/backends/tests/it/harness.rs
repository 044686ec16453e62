//! Shared set-up: simulators with their own models, a router over them, and polling.

use std::time::Duration;

use aiproxy_backends::{
    BackendClients, BackendReport, BackendSpec, Backends, Circuit, RouterConfig,
};
use aiproxy_ollama::{ChatRequest, Message, OllamaConfig};
use aiproxy_ollama_sim::{OllamaSim, SimConfig};

/// One simulator to start: its name, installed models and loaded models.
pub struct Node<'a> {
    pub name: &'a str,
    pub models: &'a [&'a str],
    pub loaded: &'a [&'a str],
}

pub fn node<'a>(name: &'a str, models: &'a [&'a str], loaded: &'a [&'a str]) -> Node<'a> {
    Node {
        name,
        models,
        loaded,
    }
}

pub struct Cluster {
    pub sims: Vec<OllamaSim>,
    pub backends: Backends,
    pub clients: BackendClients,
    monitor: Option<actix_rt::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(monitor) = self.monitor.take() {
            monitor.abort();
        }
    }
}

/// Timeouts and intervals small enough that a test never waits long for the monitor.
pub fn quick_config() -> RouterConfig {
    RouterConfig {
        client: OllamaConfig {
            response_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(500),
            ..OllamaConfig::default()
        },
        failure_threshold: 2,
        max_attempts: 3,
        refresh_interval: Duration::from_millis(100),
        probe_interval: Duration::from_millis(20),
        probe_timeout: Duration::from_millis(300),
        stripes: 4,
        ..RouterConfig::default()
    }
}

pub async fn start_sim(node: &Node<'_>) -> OllamaSim {
    OllamaSim::start(sim_config(node)).await.unwrap()
}

pub fn sim_config(node: &Node<'_>) -> SimConfig {
    let mut config = SimConfig {
        name: node.name.to_owned(),
        loaded: node.loaded.iter().map(|name| (*name).to_owned()).collect(),
        ..SimConfig::default()
    };
    config.select_models(node.models).unwrap();
    config
}

/// Starts the simulators, a router named after them, reads their models once, and (with
/// `monitor`) runs the background monitor.
pub async fn cluster(nodes: &[Node<'_>], config: RouterConfig, monitor: bool) -> Cluster {
    let mut sims = Vec::new();
    for node in nodes {
        sims.push(start_sim(node).await);
    }
    let specs = sims
        .iter()
        .map(|sim| BackendSpec {
            name: Some(sim.name().to_owned()),
            ..BackendSpec::new(sim.base_url())
        })
        .collect();
    let backends = Backends::new(specs, config).unwrap();
    backends.discover_all().await;
    let clients = backends.worker();
    let monitor = monitor.then(|| actix_rt::spawn(backends.clone().monitor()));
    Cluster {
        sims,
        backends,
        clients,
        monitor,
    }
}

impl Cluster {
    pub fn report(&self, id: &str) -> BackendReport {
        self.backends
            .report()
            .into_iter()
            .find(|report| report.id == id)
            .unwrap()
    }

    pub fn circuit(&self, id: &str) -> Circuit {
        self.report(id).circuit
    }

    /// Chat requests the simulator called `id` received.
    pub fn chats_on(&self, id: &str) -> u64 {
        let sim = self.sims.iter().find(|sim| sim.name() == id).unwrap();
        sim.control()
            .stats()
            .requests_to(aiproxy_ollama_sim::SimEndpoint::Chat)
    }
}

pub fn chat(model: &str, content: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message {
            role: "user".into(),
            content: content.into(),
            ..Message::default()
        }],
        ..ChatRequest::default()
    }
}

/// Polls `condition` until it holds; fails the test after 10 s.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
