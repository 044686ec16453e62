//! Failures: a killed backend, a stream cut before or after its first line, a hanging
//! backend, a backend that comes back, all backends down, drain.

use std::time::Duration;

use aiproxy_backends::{Circuit, Health, RouteError};
use aiproxy_ollama::OllamaError;
use aiproxy_ollama_sim::OllamaSim;
use futures_util::StreamExt;

use crate::harness::{chat, cluster, eventually, node, quick_config, sim_config};

#[actix_web::test]
async fn killing_a_backend_in_the_middle_of_a_run_loses_no_request() {
    let mut cluster = cluster(
        &[
            node("a", &["llama3.2"], &["llama3.2"]),
            node("b", &["llama3.2"], &[]),
        ],
        quick_config(),
        true,
    )
    .await;
    for sim in &cluster.sims {
        sim.control().set_token_delay(Duration::from_millis(2));
    }
    let clients = cluster.clients.clone();
    let run: Vec<_> = (0..40)
        .map(|i| {
            let clients = clients.clone();
            actix_rt::spawn(async move {
                // Spread the run out so that it straddles the kill.
                tokio::time::sleep(Duration::from_millis(i * 3)).await;
                clients
                    .chat(&chat("llama3.2", "one two three four five"), None)
                    .await
            })
        })
        .collect();
    let a_received = || cluster.chats_on("a");
    eventually("a has answered some of the run", || a_received() >= 3).await;
    cluster.sims.remove(0).stop().await;
    let mut by_backend = std::collections::BTreeMap::<String, u32>::new();
    for request in run {
        let answer = request.await.unwrap().expect("every request succeeds");
        let content = answer.value.message.unwrap().content;
        assert_eq!(content, "Echo: one two three four five");
        *by_backend.entry(answer.backend.to_string()).or_default() += 1;
    }
    assert_eq!(by_backend.values().sum::<u32>(), 40);
    assert!(
        by_backend.get("b").copied().unwrap_or(0) > 0,
        "{by_backend:?}"
    );
    eventually("a is ejected", || cluster.circuit("a") == Circuit::Open).await;
}

#[actix_web::test]
async fn a_stream_cut_before_its_first_line_is_retried_on_the_next_backend() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &["llama3.2"]),
            node("b", &["llama3.2"], &[]),
        ],
        quick_config(),
        false,
    )
    .await;
    cluster.sims[0].control().set_close_after_tokens(Some(0));
    let routed = cluster
        .clients
        .chat_stream(&chat("llama3.2", "one two three"), None)
        .await
        .unwrap();
    assert_eq!((&*routed.backend, routed.attempts), ("b", 2));
    let mut stream = routed.value;
    let mut text = String::new();
    while let Some(line) = stream.next().await {
        text.push_str(&line.unwrap().message.unwrap_or_default().content);
    }
    assert_eq!(text, "Echo: one two three");
    let a = cluster.report("a");
    assert_eq!(
        (a.failed, a.consecutive_failures, a.health),
        (1, 1, Health::Failing)
    );
    assert!(a.last_error.is_some());
}

#[actix_web::test]
async fn a_stream_that_fails_after_its_first_line_is_not_retried() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &["llama3.2"]),
            node("b", &["llama3.2"], &[]),
        ],
        quick_config(),
        false,
    )
    .await;
    cluster.sims[0].control().set_error_after_tokens(Some(2));
    let routed = cluster
        .clients
        .chat_stream(&chat("llama3.2", "one two three"), None)
        .await
        .unwrap();
    assert_eq!((&*routed.backend, routed.attempts), ("a", 1));
    let mut stream = routed.value;
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    assert_eq!(items.len(), 3);
    assert!(
        matches!(items[2], Err(OllamaError::Stream { .. })),
        "{:?}",
        items[2]
    );
    drop(stream);
    assert_eq!(cluster.chats_on("b"), 0);
    let a = cluster.report("a");
    assert_eq!((a.served, a.failed, a.in_flight), (1, 1, 0));
}

#[actix_web::test]
async fn a_5xx_moves_the_call_on_and_enough_of_them_open_the_circuit() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &["llama3.2"]),
            node("b", &["llama3.2"], &[]),
        ],
        quick_config(),
        false,
    )
    .await;
    cluster.sims[0].control().fail_with(500, "boom");
    for _ in 0..5 {
        let answer = cluster
            .clients
            .chat(&chat("llama3.2", "hi"), None)
            .await
            .unwrap();
        assert_eq!(&*answer.backend, "b");
    }
    // Threshold 2: the third request did not try a.
    assert_eq!(cluster.chats_on("a"), 2);
    let a = cluster.report("a");
    assert_eq!(
        (a.circuit, a.health, a.failed),
        (Circuit::Open, Health::Down, 2)
    );
    assert!(a.last_error.unwrap().message.contains("boom"));
}

#[actix_web::test]
async fn a_hanging_backend_is_ejected_and_requests_go_elsewhere_within_the_timeout() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &["llama3.2"]),
            node("b", &["llama3.2"], &[]),
        ],
        quick_config(),
        true,
    )
    .await;
    cluster.sims[0].control().set_unresponsive(true);
    for _ in 0..6 {
        let answer = cluster
            .clients
            .chat(&chat("llama3.2", "hi"), None)
            .await
            .unwrap();
        assert_eq!(&*answer.backend, "b");
    }
    let a = cluster.report("a");
    assert_eq!(a.circuit, Circuit::Open);
    assert!(
        a.failed <= 2,
        "at most the threshold of requests waited for a: {a:?}"
    );
    assert!(
        a.last_error.unwrap().message.contains("timed out"),
        "the hang was cut by the response timeout"
    );
}

#[actix_web::test]
async fn a_deadline_bounds_the_whole_call() {
    let cluster = cluster(&[node("a", &["llama3.2"], &[])], quick_config(), false).await;
    cluster.sims[0].control().set_hang(true);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
    let error = cluster
        .clients
        .chat(&chat("llama3.2", "hi"), Some(deadline))
        .await
        .unwrap_err();
    assert!(
        matches!(error.upstream(), Some(OllamaError::Timeout { .. })),
        "{error:?}"
    );
}

#[actix_web::test]
async fn a_backend_that_comes_back_is_readmitted_after_one_trial() {
    let mut cluster = cluster(
        &[
            node("a", &["llama3.2"], &["llama3.2"]),
            node("b", &["llama3.2"], &[]),
        ],
        quick_config(),
        true,
    )
    .await;
    let address = cluster.sims[0].addr();
    cluster.sims.remove(0).stop().await;
    eventually("a is ejected", || cluster.circuit("a") == Circuit::Open).await;
    for _ in 0..3 {
        let answer = cluster
            .clients
            .chat(&chat("llama3.2", "hi"), None)
            .await
            .unwrap();
        assert_eq!(&*answer.backend, "b");
    }

    let revived = OllamaSim::start_on(
        address,
        sim_config(&node("a", &["llama3.2"], &["llama3.2"])),
    )
    .await
    .unwrap();
    cluster.sims.push(revived);
    eventually("a is probed back to half-open", || {
        cluster.circuit("a") == Circuit::HalfOpen
    })
    .await;
    assert_eq!(cluster.report("a").health, Health::Recovering);
    // a has the model loaded again, so the next request is its trial.
    let answer = cluster
        .clients
        .chat(&chat("llama3.2", "hi"), None)
        .await
        .unwrap();
    assert_eq!(&*answer.backend, "a");
    let a = cluster.report("a");
    assert_eq!(
        (a.circuit, a.health, a.consecutive_failures),
        (Circuit::Closed, Health::Healthy, 0)
    );
}

#[actix_web::test]
async fn all_backends_down_is_no_backend_never_a_hang() {
    let mut cluster = cluster(
        &[node("a", &["llama3.2"], &[]), node("b", &["llama3.2"], &[])],
        quick_config(),
        true,
    )
    .await;
    for sim in cluster.sims.drain(..) {
        sim.stop().await;
    }
    eventually("both are ejected", || {
        cluster
            .backends
            .report()
            .iter()
            .all(|r| r.circuit == Circuit::Open)
    })
    .await;
    let error = cluster
        .clients
        .chat(&chat("llama3.2", "hi"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RouteError::NoBackend { why, .. } if why.down == 2),
        "{error:?}"
    );
    // A model nobody lists is no different.
    let error = cluster
        .clients
        .chat(&chat("other", "hi"), None)
        .await
        .unwrap_err();
    assert!(matches!(&error, RouteError::NoBackend { .. }), "{error:?}");
}

#[actix_web::test]
async fn one_backend_down_gives_ollamas_error_until_its_circuit_opens() {
    let mut cluster = cluster(&[node("a", &["llama3.2"], &[])], quick_config(), false).await;
    cluster.sims.remove(0).stop().await;
    let error = cluster
        .clients
        .chat(&chat("llama3.2", "hi"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            RouteError::Upstream {
                error: OllamaError::Connect { .. },
                attempts: 1,
                ..
            }
        ),
        "{error:?}"
    );
    let _ = cluster.clients.chat(&chat("llama3.2", "hi"), None).await;
    let error = cluster
        .clients
        .chat(&chat("llama3.2", "hi"), None)
        .await
        .unwrap_err();
    assert!(matches!(&error, RouteError::NoBackend { .. }), "{error:?}");
}

#[actix_web::test]
async fn a_drained_backend_gets_nothing_new_and_its_in_flight_requests_finish() {
    let cluster = cluster(
        &[
            node("a", &["llama3.2"], &["llama3.2"]),
            node("b", &["llama3.2"], &[]),
        ],
        quick_config(),
        false,
    )
    .await;
    let routed = cluster
        .clients
        .chat_stream(&chat("llama3.2", "one two three"), None)
        .await
        .unwrap();
    assert_eq!(&*routed.backend, "a");
    let mut in_flight = routed.value;
    cluster.backends.drain("a").unwrap();
    assert!(cluster.report("a").drained);
    for _ in 0..5 {
        let answer = cluster
            .clients
            .chat(&chat("llama3.2", "hi"), None)
            .await
            .unwrap();
        assert_eq!(&*answer.backend, "b");
    }
    assert_eq!(cluster.chats_on("a"), 1);
    assert_eq!(cluster.report("a").in_flight, 1);
    let mut text = String::new();
    while let Some(line) = in_flight.next().await {
        text.push_str(&line.unwrap().message.unwrap_or_default().content);
    }
    assert_eq!(text, "Echo: one two three");
    in_flight.release();
    assert_eq!(cluster.report("a").in_flight, 0);

    // Undrained, it takes its turn again (both have the model loaded by now).
    cluster.backends.undrain("a").unwrap();
    let mut turns = Vec::new();
    for _ in 0..2 {
        let answer = cluster
            .clients
            .chat(&chat("llama3.2", "hi"), None)
            .await
            .unwrap();
        turns.push(answer.backend.to_string());
    }
    turns.sort_unstable();
    assert_eq!(turns, ["a", "b"]);
}
