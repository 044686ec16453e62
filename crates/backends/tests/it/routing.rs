//! Where requests go: by model, to the loaded model, to the least busy, by weight; and what
//! comes back when nothing can take them.

use aiproxy_backends::{BackendSpec, Backends, RouteError, RoutedStream, RouterConfig};
use aiproxy_ollama::{ChatStream, EmbedRequest, OllamaError};
use futures_util::StreamExt;
use serde_json::json;

use crate::harness::{chat, cluster, node, quick_config};

#[actix_web::test]
async fn requests_go_only_to_backends_that_have_the_model() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2", "nomic-embed-text"], &[]),
            node("b", &["gemma3:1b"], &[]),
            node("c", &["llama3.2", "qwen3:0.6b"], &[]),
        ],
        quick_config(),
        false,
    )
    .await;
    for _ in 0..5 {
        let answer = cluster
            .clients
            .chat(&chat("gemma3:1b", "hi"), None)
            .await
            .unwrap();
        assert_eq!(&*answer.backend, "b");
        assert_eq!(answer.attempts, 1);
    }
    let answer = cluster
        .clients
        .chat(&chat("qwen3:0.6b", "hi"), None)
        .await
        .unwrap();
    assert_eq!(&*answer.backend, "c");
    let embed = EmbedRequest {
        model: "nomic-embed-text".into(),
        input: json!("hello"),
        ..EmbedRequest::default()
    };
    assert_eq!(
        &*cluster.clients.embed(&embed, None).await.unwrap().backend,
        "a"
    );
    for _ in 0..6 {
        let answer = cluster
            .clients
            .chat(&chat("llama3.2", "hi"), None)
            .await
            .unwrap();
        assert_ne!(&*answer.backend, "b");
    }
    assert_eq!(cluster.chats_on("b"), 5);
    // Any spelling Ollama accepts routes the same way.
    let answer = cluster
        .clients
        .chat(&chat("registry.ollama.ai/library/Gemma3:1b", "hi"), None)
        .await
        .unwrap();
    assert_eq!(&*answer.backend, "b");
}

#[actix_web::test]
async fn the_backend_with_the_model_loaded_is_preferred() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &[]),
            node("b", &["llama3.2"], &["llama3.2"]),
            node("c", &["llama3.2"], &[]),
        ],
        quick_config(),
        false,
    )
    .await;
    for _ in 0..6 {
        let answer = cluster
            .clients
            .chat(&chat("llama3.2", "hi"), None)
            .await
            .unwrap();
        assert_eq!(&*answer.backend, "b");
    }
    assert_eq!((cluster.chats_on("a"), cluster.chats_on("c")), (0, 0));
}

/// Opens a stream and keeps it (after its first line): the request stays in flight.
async fn hold(
    cluster: &crate::harness::Cluster,
    model: &str,
) -> (String, RoutedStream<ChatStream>) {
    let routed = cluster
        .clients
        .chat_stream(&chat(model, "one two three"), None)
        .await
        .unwrap();
    (routed.backend.to_string(), routed.value)
}

#[actix_web::test]
async fn the_fewest_in_flight_wins_and_ties_take_turns() {
    let config = RouterConfig {
        prefer_loaded_below: 0,
        ..quick_config()
    };
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &[]),
            node("b", &["llama3.2"], &[]),
            node("c", &["llama3.2"], &[]),
        ],
        config,
        false,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(hold(&cluster, "llama3.2").await);
    }
    let mut where_: Vec<&str> = held.iter().map(|(backend, _)| backend.as_str()).collect();
    where_.sort_unstable();
    assert_eq!(where_, ["a", "b", "c"]);
    assert!(cluster.backends.report().iter().all(|r| r.in_flight == 1));

    // One finishes on b: b has the fewest in flight now.
    let position = held.iter().position(|(backend, _)| backend == "b").unwrap();
    let (_, mut stream) = held.remove(position);
    while let Some(line) = stream.next().await {
        line.unwrap();
    }
    drop(stream);
    assert_eq!(cluster.report("b").in_flight, 0);
    let (backend, _kept) = hold(&cluster, "llama3.2").await;
    assert_eq!(backend, "b");

    // Idle and tied: in turn.
    drop(held);
    drop(_kept);
    let mut turns = Vec::new();
    for _ in 0..3 {
        turns.push(
            cluster
                .clients
                .chat(&chat("llama3.2", "hi"), None)
                .await
                .unwrap()
                .backend
                .to_string(),
        );
    }
    turns.sort_unstable();
    assert_eq!(turns, ["a", "b", "c"]);
}

#[actix_web::test]
async fn a_busy_loaded_backend_spills_to_one_without_the_model_loaded() {
    let config = RouterConfig {
        prefer_loaded_below: 2,
        ..quick_config()
    };
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &["llama3.2"]),
            node("b", &["llama3.2"], &[]),
        ],
        config,
        false,
    )
    .await;
    let first = hold(&cluster, "llama3.2").await;
    let second = hold(&cluster, "llama3.2").await;
    assert_eq!((first.0.as_str(), second.0.as_str()), ("a", "a"));
    let third = hold(&cluster, "llama3.2").await;
    assert_eq!(third.0, "b");
}

#[actix_web::test]
async fn weight_fills_a_bigger_backend_proportionally() {
    let sims = [
        aiproxy_ollama_sim::OllamaSim::start(crate::harness::sim_config(&node(
            "big",
            &["llama3.2"],
            &[],
        )))
        .await
        .unwrap(),
        aiproxy_ollama_sim::OllamaSim::start(crate::harness::sim_config(&node(
            "small",
            &["llama3.2"],
            &[],
        )))
        .await
        .unwrap(),
    ];
    let specs = vec![
        BackendSpec {
            name: Some("big".into()),
            weight: 2,
            ..BackendSpec::new(sims[0].base_url())
        },
        BackendSpec {
            name: Some("small".into()),
            ..BackendSpec::new(sims[1].base_url())
        },
    ];
    let config = RouterConfig {
        prefer_loaded_below: 0,
        ..quick_config()
    };
    let backends = Backends::new(specs, config).unwrap();
    backends.discover_all().await;
    let clients = backends.worker();
    let mut held = Vec::new();
    for _ in 0..6 {
        let routed = clients
            .chat_stream(&chat("llama3.2", "one two"), None)
            .await
            .unwrap();
        held.push(routed);
    }
    let on_big = held
        .iter()
        .filter(|routed| &*routed.backend == "big")
        .count();
    assert_eq!(
        on_big, 4,
        "two thirds of the requests on the backend of weight 2"
    );
}

#[actix_web::test]
async fn a_model_no_backend_has_is_ollamas_not_found_after_one_try() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &[]),
            node("b", &["gemma3:1b"], &[]),
        ],
        quick_config(),
        false,
    )
    .await;
    let error = cluster
        .clients
        .chat(&chat("nope", "hi"), None)
        .await
        .unwrap_err();
    let RouteError::Upstream {
        error, attempts, ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(attempts, 1);
    assert_eq!(
        error,
        OllamaError::ModelNotFound {
            model: "nope".into(),
            message: "model 'nope' not found".into()
        }
    );
    // The 404 is an answer: nobody's health suffers.
    assert!(
        cluster
            .backends
            .report()
            .iter()
            .all(|r| r.failed == 0 && r.consecutive_failures == 0)
    );
}

#[actix_web::test]
async fn a_4xx_answer_is_returned_as_it_is_and_not_retried() {
    let cluster = cluster(
        &[
            node("a", &["moondream"], &[]),
            node("b", &["moondream"], &[]),
        ],
        quick_config(),
        false,
    )
    .await;
    let mut request = chat("moondream", "hi");
    request.tools = Some(vec![json!({"type": "function", "function": {"name": "f"}})]);
    let error = cluster.clients.chat(&request, None).await.unwrap_err();
    let RouteError::Upstream {
        error,
        attempts,
        backend,
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!((error.status(), attempts), (Some(400), 1));
    let report = cluster.report(&backend);
    assert_eq!((report.served, report.failed), (1, 0));
}

#[actix_web::test]
async fn nothing_eligible_is_no_backend_at_once_with_the_reasons() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &[]),
            node("b", &["llama3.2"], &[]),
            node("c", &["gemma3:1b"], &[]),
        ],
        quick_config(),
        false,
    )
    .await;
    cluster.backends.drain("a").unwrap();
    cluster.backends.drain("b").unwrap();
    let error = cluster
        .clients
        .chat(&chat("llama3.2", "hi"), None)
        .await
        .unwrap_err();
    let RouteError::NoBackend { model, why } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(model, "llama3.2");
    assert_eq!(
        (why.configured, why.with_model, why.drained, why.down),
        (3, 2, 2, 0)
    );
    assert_eq!(
        error.to_string(),
        "no backend available for model 'llama3.2' (2 of 3 backends have it: 0 down, 2 drained, 0 at capacity)"
    );
    assert!(matches!(
        cluster.backends.drain("zz"),
        Err(RouteError::UnknownBackend { .. })
    ));
}

#[actix_web::test]
async fn a_backend_at_its_cap_takes_no_more() {
    let sims = [
        aiproxy_ollama_sim::OllamaSim::start(crate::harness::sim_config(&node(
            "capped",
            &["llama3.2"],
            &["llama3.2"],
        )))
        .await
        .unwrap(),
        aiproxy_ollama_sim::OllamaSim::start(crate::harness::sim_config(&node(
            "other",
            &["llama3.2"],
            &[],
        )))
        .await
        .unwrap(),
    ];
    let specs = vec![
        BackendSpec {
            name: Some("capped".into()),
            max_in_flight: Some(1),
            ..BackendSpec::new(sims[0].base_url())
        },
        BackendSpec {
            name: Some("other".into()),
            max_in_flight: Some(1),
            ..BackendSpec::new(sims[1].base_url())
        },
    ];
    let backends = Backends::new(specs, quick_config()).unwrap();
    backends.discover_all().await;
    let clients = backends.worker();
    let first = clients
        .chat_stream(&chat("llama3.2", "a b"), None)
        .await
        .unwrap();
    assert_eq!(&*first.backend, "capped");
    let second = clients
        .chat_stream(&chat("llama3.2", "a b"), None)
        .await
        .unwrap();
    assert_eq!(&*second.backend, "other");
    let error = clients
        .chat(&chat("llama3.2", "a b"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RouteError::NoBackend { why, .. } if why.full == 2),
        "{error:?}"
    );
    drop(first);
    assert_eq!(
        &*clients
            .chat(&chat("llama3.2", "a b"), None)
            .await
            .unwrap()
            .backend,
        "capped"
    );
}

#[actix_web::test]
async fn workers_share_one_view_of_the_backends() {
    let cluster = cluster(
        &[node("a", &["llama3.2"], &[]), node("b", &["llama3.2"], &[])],
        RouterConfig {
            prefer_loaded_below: 0,
            ..quick_config()
        },
        false,
    )
    .await;
    let other_worker = cluster.backends.worker();
    let (first, _kept) = hold(&cluster, "llama3.2").await;
    // The other worker sees that request in flight and picks the other backend.
    let routed = other_worker
        .chat_stream(&chat("llama3.2", "x"), None)
        .await
        .unwrap();
    assert_ne!(&*routed.backend, first.as_str());
    let report = cluster.backends.report();
    assert_eq!(report.iter().map(|r| r.in_flight).sum::<u64>(), 2);
}
