//! Model names as Ollama resolves them, so that `llama3.2`, `llama3.2:latest`,
//! `library/llama3.2` and `registry.ollama.ai/library/llama3.2:latest` find the same model.

const DEFAULT_HOST: &str = "registry.ollama.ai";
const DEFAULT_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";

/// The one spelling of a model name used as a key: lower case (Ollama compares names
/// case-insensitively), tag `latest` when none is given, and the default host and namespace
/// left out. A digest suffix (`@sha256:...`) is kept as written.
pub(crate) fn canonical(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let (path, digest) = match lower.split_once('@') {
        Some((path, digest)) => (path, Some(digest)),
        None => (lower.as_str(), None),
    };
    let mut parts: Vec<&str> = path.split('/').collect();
    let last = parts.pop().unwrap_or_default();
    let (model, tag) = last.split_once(':').unwrap_or((last, DEFAULT_TAG));
    let (host, namespace) = match parts.as_slice() {
        [] => (DEFAULT_HOST, DEFAULT_NAMESPACE),
        [namespace] => (DEFAULT_HOST, *namespace),
        [host, namespace] => (*host, *namespace),
        [host, rest @ ..] => {
            // Ollama allows only host/namespace/model; anything deeper is kept whole so it
            // never collides with a valid name.
            return with_digest(format!("{host}/{}/{model}:{tag}", rest.join("/")), digest);
        }
    };
    let short = match (host == DEFAULT_HOST, namespace == DEFAULT_NAMESPACE) {
        (true, true) => format!("{model}:{tag}"),
        (true, false) => format!("{namespace}/{model}:{tag}"),
        (false, _) => format!("{host}/{namespace}/{model}:{tag}"),
    };
    with_digest(short, digest)
}

fn with_digest(name: String, digest: Option<&str>) -> String {
    match digest {
        Some(digest) => format!("{name}@{digest}"),
        None => name,
    }
}

/// The spellings a request is likely to use for a listed model, besides the canonical one:
/// the name as listed, and without `:latest`. Looking these up needs no allocation.
pub(crate) fn aliases(listed: &str) -> impl Iterator<Item = String> {
    let canonical = canonical(listed);
    let bare = canonical
        .strip_suffix(":latest")
        .filter(|bare| !bare.contains('@'))
        .map(str::to_owned);
    [Some(listed.to_owned()), bare, Some(canonical)]
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_ollama_accepts_has_one_key() {
        for spelling in [
            "llama3.2",
            "llama3.2:latest",
            "Llama3.2",
            "library/llama3.2",
            "registry.ollama.ai/library/llama3.2:latest",
            "REGISTRY.OLLAMA.AI/Library/LLAMA3.2",
        ] {
            assert_eq!(canonical(spelling), "llama3.2:latest", "{spelling}");
        }
        assert_eq!(canonical("gemma3:1b"), "gemma3:1b");
        assert_eq!(canonical("alice/tiny:q4"), "alice/tiny:q4");
        assert_eq!(canonical("hf.co/org/model:Q8_0"), "hf.co/org/model:q8_0");
        assert_ne!(canonical("llama3.2:1b"), canonical("llama3.2"));
        assert_eq!(canonical("m@sha256:ab"), "m:latest@sha256:ab");
    }

    #[test]
    fn aliases_cover_the_listed_and_the_bare_spelling() {
        let all: Vec<String> = aliases("llama3.2:latest").collect();
        assert!(all.contains(&"llama3.2".to_owned()));
        assert!(all.contains(&"llama3.2:latest".to_owned()));
        let tagged: Vec<String> = aliases("gemma3:1b").collect();
        assert!(!tagged.contains(&"gemma3".to_owned()));
    }
}
