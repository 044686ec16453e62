//! The dependency directions of docs/ARCHITECTURE.md, between crates and between the modules of
//! each crate, kept true by tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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
        normal_deps(&edges, "aiproxy-backends"),
        set(&["aiproxy-domain", "aiproxy-ollama"]),
        "routing knows the Ollama client and nothing of HTTP serving or storage"
    );
    assert_eq!(
        normal_deps(&edges, "aiproxy-ratelimit"),
        set(&["aiproxy-domain"])
    );
    assert_eq!(
        normal_deps(&edges, "aiproxy-ollama-sim"),
        set(&[]),
        "the simulator shares no wire types"
    );
    for wire in ["aiproxy-openai", "aiproxy-anthropic"] {
        assert_eq!(
            normal_deps(&edges, wire),
            set(&["aiproxy-ollama"]),
            "a wire crate translates to Ollama's types and knows nothing else of ours"
        );
    }
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
    assert_eq!(
        normal_deps(&edges, "proxy-server"),
        set(&[
            "aiproxy-api",
            "aiproxy-domain",
            "aiproxy-ollama",
            "aiproxy-ratelimit",
            "aiproxy-storage"
        ]),
        "the binary wires the api crate to the store it names"
    );
    assert_eq!(
        normal_deps(&edges, "aiproxy-e2e"),
        set(&[
            "aiproxy-api",
            "aiproxy-domain",
            "aiproxy-ollama-sim",
            "aiproxy-ratelimit",
            "aiproxy-storage",
            "proxy-server"
        ]),
        "the revocation tests build the api over a store wrapper and the in-process admission"
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
    for wire in ["aiproxy-openai", "aiproxy-anthropic"] {
        let named: Vec<String> = normal_deps(&edges, wire)
            .into_iter()
            .filter(|dep| io.contains(&dep.as_str()))
            .collect();
        assert!(named.is_empty(), "{wire} depends on {named:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Module circles inside each crate.
//
// Each target's module tree is followed from its root file through `mod name;` declarations.
// A module depends on another when its file names it through a `crate::` path (in `use` or in
// code; comments and string literals are skipped). A `crate::Name` path that names no module
// resolves through the root's `pub use` re-exports to the module that holds `Name`, else to
// the root itself. `super::` and `self::` paths are not followed: they stay next to the code
// they name.

/// A token of Rust source, as far as paths need: identifiers and the punctuation of paths.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// The tokens of `source`, without comments, string and character literals.
fn tokens(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let is_ident = |c: char| c == '_' || c.is_alphanumeric();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F980}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if is_ident(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // Raw strings (r"…", r#"…"#, br#"…"#): skip to the matching quote and hashes.
            let mut hashes = 0;
            while (word == "r" || word == "br") && chars.get(i + hashes) == Some(&'#') {
                hashes += 1;
            }
            if (word == "r" || word == "br") && chars.get(i + hashes) == Some(&'"') {
                i += hashes + 1;
                let closing: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                while i < chars.len() && !chars[i..].starts_with(&closing) {
                    i += 1;
                }
                i += closing.len();
            } else if word == "b" && chars.get(i) == Some(&'"') {
                // A byte string: the quote is read next, as a string.
            } else {
                out.push(Token::Ident(word));
            }
        } else if c == ':' && next == Some(':') {
            out.push(Token::PathSep);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    out
}

/// The paths of a use tree starting at `tokens[*at]` (after a `::`), each as its segments;
/// `*` and `self` end a path. Moves `at` past the tree.
fn use_tree(tokens: &[Token], at: &mut usize) -> Vec<Vec<String>> {
    match tokens.get(*at) {
        Some(Token::Punct('{')) => {
            *at += 1;
            let mut paths = Vec::new();
            loop {
                match tokens.get(*at) {
                    None => return paths,
                    Some(Token::Punct('}')) => {
                        *at += 1;
                        return paths;
                    }
                    Some(Token::Punct(',')) => *at += 1,
                    Some(_) => {
                        let before = *at;
                        paths.extend(use_tree(tokens, at));
                        if *at == before {
                            *at += 1;
                        }
                    }
                }
            }
        }
        Some(Token::Ident(name)) if name != "self" => {
            *at += 1;
            if tokens.get(*at) == Some(&Token::PathSep) {
                *at += 1;
                let rest = use_tree(tokens, at);
                if rest.is_empty() {
                    return vec![vec![name.clone()]];
                }
                rest.into_iter()
                    .map(|mut tail| {
                        tail.insert(0, name.clone());
                        tail
                    })
                    .collect()
            } else {
                vec![vec![name.clone()]]
            }
        }
        Some(Token::Ident(_) | Token::Punct('*')) => {
            *at += 1;
            vec![Vec::new()]
        }
        _ => Vec::new(),
    }
}

/// Every `crate::` path in `tokens`, as the segments after `crate`.
fn crate_paths(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut at = 0;
    while at + 1 < tokens.len() {
        if tokens[at] == Token::Ident("crate".into()) && tokens[at + 1] == Token::PathSep {
            at += 2;
            paths.extend(use_tree(tokens, &mut at));
        } else {
            at += 1;
        }
    }
    paths
}

/// The `mod name;` declarations of a file (inline `mod name { … }` blocks are part of it).
fn declared_modules(tokens: &[Token]) -> Vec<String> {
    tokens
        .windows(3)
        .filter_map(|w| match w {
            [Token::Ident(m), Token::Ident(name), Token::Punct(';')] if m == "mod" => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect()
}

/// Names the root re-exports (`pub use a::b::Name;`, `pub use a::{X, Y as Z};`), each with the
/// module path it comes from.
fn root_reexports(tokens: &[Token]) -> BTreeMap<String, Vec<String>> {
    let mut names = BTreeMap::new();
    let mut at = 0;
    while at + 1 < tokens.len() {
        if tokens[at] == Token::Ident("use".into()) {
            at += 1;
            if tokens.get(at) == Some(&Token::Ident("crate".into()))
                || tokens.get(at) == Some(&Token::Ident("self".into()))
            {
                at += 2;
            }
            for path in use_tree(tokens, &mut at) {
                if let Some((name, module)) = path.split_last() {
                    names.insert(name.clone(), module.to_vec());
                }
            }
            // `as Alias`: the alias names the same item.
            if tokens.get(at) == Some(&Token::Ident("as".into()))
                && let (Some(Token::Ident(alias)), Some(last)) =
                    (tokens.get(at + 1), names.values().last().cloned())
            {
                names.insert(alias.clone(), last);
            }
        } else {
            at += 1;
        }
    }
    names
}

/// The module graph of one target: module path (`""` for the root) -> the modules it names.
fn module_graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    // Module path -> file, found by following `mod` declarations from the root.
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut pending = vec![(String::new(), root.to_path_buf())];
    let mut sources = BTreeMap::new();
    while let Some((module, file)) = pending.pop() {
        let source = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let toks = tokens(&source);
        let owns_dir = module.is_empty()
            || file.file_name().is_some_and(|n| n == "mod.rs")
            || file
                .file_name()
                .is_some_and(|n| n == "lib.rs" || n == "main.rs");
        let dir = if owns_dir {
            file.parent().unwrap().to_path_buf()
        } else {
            file.with_extension("")
        };
        for child in declared_modules(&toks) {
            let flat = dir.join(format!("{child}.rs"));
            let nested = dir.join(&child).join("mod.rs");
            let path = if flat.exists() { flat } else { nested };
            let name = if module.is_empty() {
                child
            } else {
                format!("{module}::{child}")
            };
            pending.push((name, path));
        }
        files.insert(module.clone(), file);
        sources.insert(module, toks);
    }
    let reexports = root_reexports(&sources[""]);
    let resolve = |path: &[String]| -> String {
        for len in (1..=path.len()).rev() {
            let candidate = path[..len].join("::");
            if files.contains_key(&candidate) {
                return candidate;
            }
        }
        match path.first().and_then(|name| reexports.get(name)) {
            Some(module) => {
                for len in (1..=module.len()).rev() {
                    let candidate = module[..len].join("::");
                    if files.contains_key(&candidate) {
                        return candidate;
                    }
                }
                String::new()
            }
            None => String::new(),
        }
    };
    sources
        .iter()
        .map(|(module, toks)| {
            let targets = crate_paths(toks)
                .iter()
                .map(|path| resolve(path))
                .filter(|target| target != module)
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// The circles of `graph`: its strongly connected components of more than one module.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Two modules are on one circle when each reaches the other.
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(node) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut found: Vec<Vec<String>> = Vec::new();
    for module in graph.keys() {
        if found.iter().any(|c| c.contains(module)) {
            continue;
        }
        let circle: Vec<String> = graph
            .keys()
            .filter(|other| {
                *other == module
                    || (reachable[module].contains(*other) && reachable[*other].contains(module))
            })
            .cloned()
            .collect();
        if circle.len() > 1 {
            found.push(circle);
        }
    }
    found
}

/// Every target root of every workspace package (libraries, binaries, tests, benches, examples).
fn target_roots() -> Vec<(String, PathBuf)> {
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
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut roots = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        for target in package["targets"].as_array().unwrap() {
            let kinds = target["kind"].as_array().unwrap();
            if kinds.iter().any(|k| k == "custom-build") {
                continue;
            }
            let name = format!(
                "{} ({})",
                package["name"].as_str().unwrap(),
                target["name"].as_str().unwrap()
            );
            roots.push((name, PathBuf::from(target["src_path"].as_str().unwrap())));
        }
    }
    roots
}

#[test]
fn no_module_circle_inside_any_crate() {
    let mut report = Vec::new();
    for (target, root) in target_roots() {
        for circle in circles(&module_graph(&root)) {
            let named: Vec<String> = circle
                .iter()
                .map(|m| {
                    if m.is_empty() {
                        "<root>".into()
                    } else {
                        m.clone()
                    }
                })
                .collect();
            report.push(format!("{target}: {}", named.join(", ")));
        }
    }
    assert!(
        report.is_empty(),
        "modules that import each other in a circle:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_circle_check_sees_paths_in_use_trees_and_code_but_not_in_comments_or_strings() {
    let source = r##"
        use crate::{a::X, b::{self, c::Y}, d};
        // crate::commented::Out
        /* crate::block::Out */
        fn f() -> crate::e::Z { let _ = "crate::string::Out"; let _ = r#"crate::raw::Out"#; crate::f::g() }
        fn h<'a>(c: char) -> bool { c == '"' && crate::i::J }
        mod k;
    "##;
    let toks = tokens(source);
    let paths: Vec<String> = crate_paths(&toks).iter().map(|p| p.join("::")).collect();
    assert_eq!(paths, ["a::X", "b", "b::c::Y", "d", "e::Z", "f::g", "i::J"]);
    assert_eq!(declared_modules(&toks), ["k"]);

    let graph = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            graph
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
            graph.entry(to.to_string()).or_default();
        }
        graph
    };
    assert!(circles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
    assert_eq!(
        circles(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
        [["a", "b", "c"]]
    );
}
