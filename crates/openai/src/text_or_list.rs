//! A field that is a string or a list of parts (message content, in chat and in Responses).

use serde::{Deserialize, Deserializer};

/// A string, or a list of `T`.
#[derive(Debug)]
pub(crate) enum TextOrList<T> {
    /// Plain text.
    Text(String),
    /// Parts.
    List(Vec<T>),
}

// By hand rather than `#[serde(untagged)]`, which buffers every message's content and then
// tries each variant on the copy: this runs for every message of every request.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOrList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ContentVisitor<T> {
            type Value = TextOrList<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of content parts")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(TextOrList::Text(text.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(TextOrList::Text(text))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(TextOrList::List(parts))
            }
        }

        deserializer.deserialize_any(ContentVisitor(std::marker::PhantomData))
    }
}
