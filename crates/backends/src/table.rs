//! The model table: which backends have each model and which have it loaded, as one
//! immutable snapshot that workers share and replace only when discovery changed something.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::name;

/// What discovery last learned about one backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Listing {
    /// `/api/tags`, in the backend's order.
    pub(crate) models: Vec<aiproxy_ollama::ModelInfo>,
    /// Names from `/api/ps`.
    pub(crate) loaded: Vec<String>,
}

/// A snapshot of every backend's models.
///
/// The masks are atomics so that what a request learns between two discoveries (a model
/// turned out missing, or got loaded) is visible to every worker at once without a new
/// snapshot; the next discovery replaces them with what the backends report.
#[derive(Debug, Default)]
pub(crate) struct ModelTable {
    /// Every alias of every model (see [`name::aliases`]) to its entry.
    by_name: HashMap<Box<str>, usize, BuildHasherDefault<Fnv>>,
    entries: Vec<ModelEntry>,
}

/// One model: bit `i` is backend `i`.
#[derive(Debug, Default)]
pub(crate) struct ModelEntry {
    pub(crate) has: AtomicU64,
    pub(crate) loaded: AtomicU64,
}

impl ModelTable {
    /// Builds the table from each backend's listing (index = backend index).
    pub(crate) fn build<'a>(listings: impl IntoIterator<Item = &'a Listing>) -> ModelTable {
        let mut table = ModelTable::default();
        for (index, listing) in listings.into_iter().enumerate() {
            let bit = 1u64 << index;
            for model in &listing.models {
                let entry = table.entry_for(&model.name);
                *table.entries[entry].has.get_mut() |= bit;
            }
            for loaded in &listing.loaded {
                if let Some(entry) = table.find_index(loaded) {
                    *table.entries[entry].loaded.get_mut() |= bit;
                }
            }
        }
        table
    }

    fn entry_for(&mut self, listed: &str) -> usize {
        if let Some(entry) = self.find_index(listed) {
            return entry;
        }
        let entry = self.entries.len();
        self.entries.push(ModelEntry::default());
        for alias in name::aliases(listed) {
            self.by_name.entry(alias.into_boxed_str()).or_insert(entry);
        }
        entry
    }

    fn find_index(&self, model: &str) -> Option<usize> {
        // The usual spellings hit without allocating; others are canonicalised first.
        self.by_name
            .get(model)
            .or_else(|| self.by_name.get(name::canonical(model).as_str()))
            .copied()
    }

    /// The entry for a model as a request names it, if any backend lists it.
    pub(crate) fn find(&self, model: &str) -> Option<&ModelEntry> {
        self.find_index(model).map(|entry| &self.entries[entry])
    }
}

/// FNV-1a: a model name hashes in a few nanoseconds, against some twenty for the default
/// SipHash. Flooding is no concern: keys come from the backends' own listings, and a
/// request's name is only looked up, never inserted.
#[derive(Debug)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl ModelEntry {
    pub(crate) fn has(&self) -> u64 {
        self.has.load(Ordering::Relaxed)
    }

    pub(crate) fn loaded(&self) -> u64 {
        self.loaded.load(Ordering::Relaxed)
    }

    /// Marks the model loaded on a backend; writes only when that changes something, so the
    /// steady state reads the cache line without taking it from other workers.
    pub(crate) fn mark_loaded(&self, bit: u64) {
        if self.loaded() & bit == 0 {
            self.loaded.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// Marks the model missing on a backend (it answered "model not found").
    pub(crate) fn mark_missing(&self, bit: u64) {
        self.has.fetch_and(!bit, Ordering::Relaxed);
        self.loaded.fetch_and(!bit, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(models: &[&str], loaded: &[&str]) -> Listing {
        Listing {
            models: models
                .iter()
                .map(|name| aiproxy_ollama::ModelInfo {
                    name: (*name).to_owned(),
                    ..Default::default()
                })
                .collect(),
            loaded: loaded.iter().map(|name| (*name).to_owned()).collect(),
        }
    }

    #[test]
    fn each_model_knows_its_backends_under_any_spelling() {
        let table = ModelTable::build(&[
            listing(&["llama3.2:latest", "gemma3:1b"], &["llama3.2:latest"]),
            listing(&["Llama3.2:latest"], &[]),
            listing(&["nomic-embed-text:latest"], &["nomic-embed-text"]),
        ]);
        let llama = table.find("llama3.2").unwrap();
        assert_eq!((llama.has(), llama.loaded()), (0b011, 0b001));
        assert_eq!(
            table
                .find("registry.ollama.ai/library/LLAMA3.2:latest")
                .unwrap()
                .has(),
            0b011
        );
        assert_eq!(table.find("gemma3:1b").unwrap().has(), 0b001);
        assert!(table.find("gemma3").is_none());
        let nomic = table.find("nomic-embed-text:latest").unwrap();
        assert_eq!((nomic.has(), nomic.loaded()), (0b100, 0b100));
    }

    #[test]
    fn marks_change_only_their_backend() {
        let table = ModelTable::build(&[listing(&["m"], &[]), listing(&["m"], &["m"])]);
        let entry = table.find("m").unwrap();
        entry.mark_loaded(0b01);
        assert_eq!(entry.loaded(), 0b11);
        entry.mark_missing(0b10);
        assert_eq!((entry.has(), entry.loaded()), (0b01, 0b01));
    }
}
