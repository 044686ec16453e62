//! What the router knows about each backend's models, and how it learns of changes.

use std::time::Duration;

use aiproxy_backends::{BackendSpec, Backends, Circuit, Health, RouterConfig};
use aiproxy_ollama_sim::SimEndpoint;

use crate::harness::{chat, cluster, eventually, node, quick_config};

/// The monitor's periodic refresh is out of the picture: only what a request triggers.
fn no_periodic_refresh() -> RouterConfig {
    RouterConfig {
        refresh_interval: Duration::from_secs(3600),
        ..quick_config()
    }
}

#[actix_web::test]
async fn discovery_reads_models_and_loaded_models_and_the_union_is_deduplicated() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2", "nomic-embed-text"], &["llama3.2"]),
            node("b", &["llama3.2", "gemma3:1b"], &[]),
        ],
        quick_config(),
        false,
    )
    .await;
    let a = cluster.report("a");
    assert_eq!(a.models, ["llama3.2:latest", "nomic-embed-text:latest"]);
    assert_eq!(a.loaded_models, ["llama3.2:latest"]);
    assert_eq!((a.health, a.circuit), (Health::Healthy, Circuit::Closed));
    assert!(a.discovered_at_unix_ms.is_some());
    let names: Vec<String> = cluster
        .backends
        .models()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        names,
        ["llama3.2:latest", "nomic-embed-text:latest", "gemma3:1b"]
    );
}

#[actix_web::test]
async fn periodic_discovery_sees_models_added_and_loaded() {
    let cluster = cluster(&[node("a", &["llama3.2"], &[])], quick_config(), true).await;
    let control = cluster.sims[0].control();
    control.set_models(&["llama3.2", "gemma3:1b"]).unwrap();
    control.set_loaded(&["gemma3:1b"]).unwrap();
    eventually("the new model is listed and loaded", || {
        let a = cluster.report("a");
        a.models.contains(&"gemma3:1b".to_owned()) && a.loaded_models == ["gemma3:1b"]
    })
    .await;
}

#[actix_web::test]
async fn a_model_missing_where_it_was_listed_is_rediscovered_and_the_call_moves_on() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &["llama3.2"]),
            node("b", &["llama3.2"], &[]),
        ],
        no_periodic_refresh(),
        true,
    )
    .await;
    let tags_before = cluster.sims[0]
        .control()
        .stats()
        .requests_to(SimEndpoint::Tags);
    assert!(cluster.sims[0].control().remove_model("llama3.2"));
    let answer = cluster
        .clients
        .chat(&chat("llama3.2", "hi"), None)
        .await
        .unwrap();
    assert_eq!((&*answer.backend, answer.attempts), ("b", 2));
    eventually("a is read again and no longer lists the model", || {
        cluster.report("a").models.is_empty()
    })
    .await;
    assert!(
        cluster.sims[0]
            .control()
            .stats()
            .requests_to(SimEndpoint::Tags)
            > tags_before
    );
    // The 404 was not a failure of a.
    let a = cluster.report("a");
    assert_eq!(
        (a.failed, a.consecutive_failures, a.circuit),
        (0, 0, Circuit::Closed)
    );
    // And requests no longer try a.
    let answer = cluster
        .clients
        .chat(&chat("llama3.2", "hi"), None)
        .await
        .unwrap();
    assert_eq!((&*answer.backend, answer.attempts), ("b", 1));
}

#[actix_web::test]
async fn a_model_pulled_behind_the_proxys_back_works_at_once_and_gets_listed() {
    let cluster = cluster(
        &[node("a", &["llama3.2"], &[])],
        no_periodic_refresh(),
        true,
    )
    .await;
    cluster.sims[0]
        .control()
        .set_models(&["llama3.2", "gemma3:1b"])
        .unwrap();
    let answer = cluster
        .clients
        .chat(&chat("gemma3:1b", "hi"), None)
        .await
        .unwrap();
    assert_eq!(&*answer.backend, "a");
    eventually("the model is listed", || {
        cluster.report("a").models.contains(&"gemma3:1b".to_owned())
    })
    .await;
}

#[actix_web::test]
async fn an_operator_can_ask_for_rediscovery() {
    let cluster = cluster(
        &[node("a", &["llama3.2"], &[])],
        no_periodic_refresh(),
        true,
    )
    .await;
    cluster.sims[0]
        .control()
        .set_models(&["gemma3:1b"])
        .unwrap();
    cluster.backends.rediscover("a").unwrap();
    eventually("the new model set is listed", || {
        cluster.report("a").models == ["gemma3:1b"]
    })
    .await;
}

#[actix_web::test]
async fn a_backend_unreachable_at_start_starts_open_and_the_others_serve() {
    let sim = aiproxy_ollama_sim::OllamaSim::start(crate::harness::sim_config(&node(
        "live",
        &["llama3.2"],
        &[],
    )))
    .await
    .unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let specs = vec![
        BackendSpec::new(format!("http://127.0.0.1:{closed_port}")),
        BackendSpec {
            name: Some("live".into()),
            ..BackendSpec::new(sim.base_url())
        },
    ];
    let backends = Backends::new(specs, quick_config()).unwrap();
    backends.discover_all().await;
    let dead = &backends.report()[0];
    assert_eq!(dead.id, format!("127.0.0.1:{closed_port}"));
    assert_eq!((dead.circuit, dead.health), (Circuit::Open, Health::Down));
    assert!(dead.last_error.is_some());
    let clients = backends.worker();
    for _ in 0..3 {
        let answer = clients.chat(&chat("llama3.2", "hi"), None).await.unwrap();
        assert_eq!((&*answer.backend, answer.attempts), ("live", 1));
    }
}
