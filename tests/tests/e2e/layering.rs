//! The dependency directions of docs/ARCHITECTURE.md, kept true by a test.

use std::collections::{BTreeMap, BTreeSet};

/// Each workspace package's dependencies with their kind (`normal`, `dev`, `build`): only
/// those on our own packages, or with `all` every one.
fn workspace_edges(all: bool) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let ours: BTreeSet<String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let mut edges = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_owned();
        let deps = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| all || ours.contains(d["name"].as_str().unwrap()))
            .map(|d| {
                let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
                (d["name"].as_str().unwrap().to_owned(), kind)
            })
            .collect();
        edges.insert(name, deps);
    }
    edges
}

fn normal_deps(
    edges: &BTreeMap<String, BTreeSet<(String, String)>>,
    crate_name: &str,
) -> BTreeSet<String> {
    edges[crate_name]
        .iter()
        .filter(|(_, kind)| kind == "normal")
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn dependencies_point_one_way() {
    let edges = workspace_edges(false);
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        normal_deps(&edges, "aiproxy-domain"),
        set(&[]),
        "domain depends on none of ours"
    );
    assert_eq!(
        normal_deps(&edges, "aiproxy-storage"),
        set(&["aiproxy-domain"])
    );
    assert_eq!(normal_deps(&edges, "aiproxy-ollama"), set(&[]));
    assert_eq!(
        normal_deps(&edges, "aiproxy-ratelimit"),
        set(&["aiproxy-domain"])
    );
    assert_eq!(
        normal_deps(&edges, "aiproxy-ollama-sim"),
        set(&[]),
        "the simulator shares no wire types"
    );
    assert_eq!(
        normal_deps(&edges, "aiproxy-openai"),
        set(&["aiproxy-ollama"]),
        "a wire crate translates to Ollama's types and knows nothing else of ours"
    );
    assert_eq!(
        normal_deps(&edges, "aiproxy-api"),
        set(&[
            "aiproxy-domain",
            "aiproxy-ollama",
            "aiproxy-openai",
            "aiproxy-ratelimit"
        ]),
        "api sees the database only through the domain traits"
    );
    // Tests may start the real server (dev-dependencies); no library or tool builds on it.
    for name in edges.keys() {
        let deps = normal_deps(&edges, name);
        if name != "proxy-server" && name != "aiproxy-e2e" {
            assert!(
                !deps.contains("aiproxy-api") && !deps.contains("proxy-server"),
                "{name} must not depend on the api crate or the binary"
            );
        }
    }
    assert!(
        normal_deps(&edges, "proxy-server").contains("aiproxy-api"),
        "the binary wires the api crate"
    );
}

#[test]
fn wire_crates_name_no_http_framework_or_runtime() {
    let edges = workspace_edges(true);
    let io = [
        "actix-web",
        "actix-rt",
        "actix-tls",
        "awc",
        "tokio",
        "rustls",
    ];
    let wire = "aiproxy-openai";
    let named: Vec<String> = normal_deps(&edges, wire)
        .into_iter()
        .filter(|dep| io.contains(&dep.as_str()))
        .collect();
    assert!(named.is_empty(), "{wire} depends on {named:?}");
}
