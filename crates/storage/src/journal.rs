//! The usage journal's file format: a header line, then one JSON line per usage record.
//!
//! ```text
//! {"journal":"aiproxy-usage","version":1,"generation":7}
//! {"id":"req-1","user":"alice","model":"llama3.2","endpoint":"/v1/chat/completions","prompt":12,"completion":30,"status":"ok","ms":840,"at":1700000000000,"backend":"gpu-1","client":"trace-9"}
//! ```
//!
//! `backend` and `client` (the client's own request id) are written only when known. Lines
//! of earlier builds (older endpoint names, no `backend` or `client`) still read.
//!
//! A generation names one life of the file between truncations; the database remembers the
//! generation and byte offset it has ingested up to, which is how a restart knows which lines
//! are new. A line without its final newline was cut short by a crash and is not a record.

use std::collections::HashMap;

use aiproxy_domain::{Endpoint, UnixMillis, UsageRecord, UsageStatus, UserId};
use serde::{Deserialize, Serialize};

const MAGIC: &str = "aiproxy-usage";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header<'a> {
    journal: &'a str,
    version: u32,
    generation: u64,
}

/// A line's fields as serde writes them: what [`encode`] must match.
#[cfg(test)]
#[derive(Serialize)]
struct LineOut<'a> {
    id: &'a str,
    user: &'a str,
    model: &'a str,
    endpoint: &'static str,
    prompt: u64,
    completion: u64,
    status: &'static str,
    ms: u64,
    at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
}

#[derive(Deserialize)]
struct LineIn {
    id: String,
    user: String,
    model: String,
    endpoint: String,
    prompt: u64,
    completion: u64,
    status: String,
    ms: u64,
    at: i64,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    client: Option<String>,
}

/// The header line (with its newline) of a journal of this generation.
pub(crate) fn header(generation: u64) -> Vec<u8> {
    let mut line = serde_json::to_vec(&Header {
        journal: MAGIC,
        version: VERSION,
        generation,
    })
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// One record as a line, newline included.
///
/// Every request appends one, on its own worker. Written by hand rather than through serde:
/// serde_json escapes each field name at run time, and the names are constants. The test
/// `a_line_is_written_as_serde_writes_it` holds it to the derived form.
pub(crate) fn encode(record: &UsageRecord) -> Vec<u8> {
    let mut line = Vec::with_capacity(192);
    push_field(&mut line, b"{\"id\":", &record.request_id);
    push_field(&mut line, b",\"user\":", record.user_id.as_str());
    push_field(&mut line, b",\"model\":", &record.model);
    push_field(&mut line, b",\"endpoint\":", record.endpoint.as_str());
    push_field(&mut line, b",\"prompt\":", &record.prompt_tokens);
    push_field(&mut line, b",\"completion\":", &record.completion_tokens);
    push_field(&mut line, b",\"status\":", record.status.as_str());
    push_field(&mut line, b",\"ms\":", &record.duration_ms);
    push_field(&mut line, b",\"at\":", &record.created_at.0);
    if let Some(backend) = &record.backend {
        push_field(&mut line, b",\"backend\":", backend);
    }
    if let Some(client) = &record.client_request_id {
        push_field(&mut line, b",\"client\":", client);
    }
    line.extend_from_slice(b"}\n");
    line
}

/// Appends the name (with its punctuation) and the value, a string or an integer, as JSON;
/// neither can fail, nor can writing into a `Vec`.
fn push_field(line: &mut Vec<u8>, name: &[u8], value: &(impl Serialize + ?Sized)) {
    line.extend_from_slice(name);
    let _ = serde_json::to_writer(&mut *line, value);
}

/// One line back into a record. `renames` maps user ids the database renamed (see
/// `schema.rs`) to their new ids, so a line written under an old id still lands.
fn decode(line: &[u8], renames: &HashMap<String, UserId>) -> Result<UsageRecord, String> {
    let raw: LineIn = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let user_id = match UserId::parse(&raw.user) {
        Ok(id) => id,
        Err(error) => renames
            .get(&raw.user)
            .cloned()
            .ok_or_else(|| error.to_string())?,
    };
    Ok(UsageRecord {
        request_id: raw.id,
        user_id,
        model: raw.model,
        endpoint: Endpoint::parse(&raw.endpoint)
            .ok_or_else(|| format!("unknown endpoint {:?}", raw.endpoint))?,
        backend: raw.backend,
        client_request_id: raw.client,
        prompt_tokens: raw.prompt,
        completion_tokens: raw.completion,
        status: UsageStatus::parse(&raw.status)
            .ok_or_else(|| format!("unknown status {:?}", raw.status))?,
        duration_ms: raw.ms,
        created_at: UnixMillis(raw.at),
    })
}

/// What a journal file holds.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    /// The generation in its header; `None` for an empty file (or a header cut short).
    pub(crate) generation: Option<u64>,
    /// Records whose lines start at or after the `from` offset given to [`read`], with the
    /// offset just past each.
    pub(crate) records: Vec<(UsageRecord, u64)>,
    /// Lines that did not parse (damage); skipped, and reported by the caller.
    pub(crate) unreadable: usize,
    /// The length of the complete lines: anything after it is a line cut short.
    pub(crate) complete_len: u64,
}

/// Parses a journal file's bytes, keeping the records whose lines start at or after `from`
/// (an offset of the same generation), or every record when `from` is `None`; `renames` as
/// for [`decode`].
pub(crate) fn read(
    bytes: &[u8],
    from: impl Fn(u64) -> Option<u64>,
    renames: &HashMap<String, UserId>,
) -> Contents {
    let mut contents = Contents::default();
    let Some(header_end) = bytes.iter().position(|b| *b == b'\n') else {
        return contents;
    };
    let Ok(head) = serde_json::from_slice::<Header>(&bytes[..header_end]) else {
        // Not a journal we wrote; nothing in it can be trusted as a record.
        contents.unreadable = 1;
        return contents;
    };
    if head.journal != MAGIC || head.version != VERSION {
        contents.unreadable = 1;
        return contents;
    }
    contents.generation = Some(head.generation);
    let start = from(head.generation).unwrap_or(0);
    let mut offset = header_end + 1;
    contents.complete_len = offset as u64;
    while let Some(len) = bytes[offset..].iter().position(|b| *b == b'\n') {
        let line = &bytes[offset..offset + len];
        let end = (offset + len + 1) as u64;
        if offset as u64 >= start && !line.is_empty() {
            match decode(line, renames) {
                Ok(record) => contents.records.push((record, end)),
                Err(error) => {
                    tracing::warn!(offset, %error, "skipping a damaged usage journal line");
                    contents.unreadable += 1;
                }
            }
        }
        offset += len + 1;
        contents.complete_len = end;
    }
    contents
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            user_id: UserId::parse("alice").unwrap(),
            model: "llama3.2".into(),
            endpoint: Endpoint::ChatCompletions,
            backend: None,
            client_request_id: None,
            prompt_tokens: 3,
            completion_tokens: 4,
            status: UsageStatus::Aborted,
            duration_ms: 5,
            created_at: UnixMillis(1_700_000_000_000),
        }
    }

    #[test]
    fn a_line_is_written_as_serde_writes_it() {
        for (id, model, at, backend, client) in [
            ("req-1", "llama3.2", 1_700_000_000_000, None, None),
            (
                "a \"quoted\" id\\ \u{1}\n",
                "qwen2.5:7b \u{2028} 日本 🦀",
                -1,
                Some("gpu \"1\""),
                Some("trace\n9"),
            ),
            ("", "", i64::MIN, Some(""), None),
        ] {
            let mut record = record(id);
            record.model = model.into();
            record.backend = backend.map(str::to_owned);
            record.client_request_id = client.map(str::to_owned);
            record.created_at = UnixMillis(at);
            record.prompt_tokens = u64::MAX;
            let mut derived = serde_json::to_vec(&LineOut {
                id: &record.request_id,
                user: record.user_id.as_str(),
                model: &record.model,
                endpoint: record.endpoint.as_str(),
                prompt: record.prompt_tokens,
                completion: record.completion_tokens,
                status: record.status.as_str(),
                ms: record.duration_ms,
                at: record.created_at.0,
                backend: record.backend.as_deref(),
                client: record.client_request_id.as_deref(),
            })
            .unwrap();
            derived.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&encode(&record)),
                String::from_utf8_lossy(&derived)
            );
        }
    }

    #[test]
    fn records_round_trip_and_a_line_cut_short_is_not_a_record() {
        let mut bytes = header(3);
        bytes.extend(encode(&record("a\"\n\u{1F600}")));
        bytes.extend(encode(&record("b")));
        let whole = bytes.len() as u64;
        bytes.extend(&encode(&record("c"))[..20]);
        let contents = read(&bytes, |_| None, &HashMap::new());
        assert_eq!(contents.generation, Some(3));
        assert_eq!(contents.complete_len, whole);
        let ids: Vec<_> = contents
            .records
            .iter()
            .map(|(r, _)| r.request_id.as_str())
            .collect();
        assert_eq!(ids, ["a\"\n\u{1F600}", "b"]);
        assert_eq!(contents.records[0].0, record("a\"\n\u{1F600}"));
        assert_eq!(contents.records[1].1, whole);
    }

    #[test]
    fn reading_from_an_offset_skips_what_was_ingested_for_that_generation_only() {
        let mut bytes = header(3);
        bytes.extend(encode(&record("a")));
        let after_a = bytes.len() as u64;
        bytes.extend(encode(&record("b")));
        let same = read(&bytes, |g| (g == 3).then_some(after_a), &HashMap::new());
        assert_eq!(same.records.len(), 1);
        assert_eq!(same.records[0].0.request_id, "b");
        let other = read(&bytes, |g| (g == 2).then_some(after_a), &HashMap::new());
        assert_eq!(other.records.len(), 2);
    }

    #[test]
    fn damaged_lines_are_skipped_and_counted() {
        let mut bytes = header(1);
        bytes.extend(b"{not json}\n");
        bytes.extend(encode(&record("ok")));
        let contents = read(&bytes, |_| None, &HashMap::new());
        assert_eq!(contents.unreadable, 1);
        assert_eq!(contents.records.len(), 1);
        assert!(read(b"", |_| None, &HashMap::new()).generation.is_none());
        assert_eq!(read(b"garbage\n", |_| None, &HashMap::new()).unreadable, 1);
    }

    #[test]
    fn lines_of_earlier_builds_read_and_renamed_users_land_under_their_new_id() {
        let mut bytes = header(1);
        bytes.extend(
            br#"{"id":"r","user":"-x","model":"m","endpoint":"chat.completions","prompt":1,"completion":2,"status":"ok","ms":3,"at":4}"#,
        );
        bytes.push(b'\n');
        let unknown = read(&bytes, |_| None, &HashMap::new());
        assert_eq!(unknown.unreadable, 1);
        let renames = HashMap::from([("-x".to_owned(), UserId::parse("u-x").unwrap())]);
        let contents = read(&bytes, |_| None, &renames);
        let record = &contents.records[0].0;
        assert_eq!(record.user_id.as_str(), "u-x");
        assert_eq!(record.endpoint, Endpoint::ChatCompletions);
        assert_eq!(
            (
                record.backend.as_deref(),
                record.client_request_id.as_deref()
            ),
            (None, None)
        );
    }
}
