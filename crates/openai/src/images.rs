//! Images in chat messages: `data:` URIs decoded here, http(s) URLs left for the caller to
//! fetch.

use crate::error::InvalidRequest;

/// An image part given by URL, to be fetched before the request goes to Ollama.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingImage {
    /// Index into the Ollama request's `messages`.
    pub message: usize,
    /// Index into that message's `images`.
    pub image: usize,
    /// The URL to fetch.
    pub url: String,
    /// The part's path in the request, for error messages (`messages[1].content[2]`).
    pub param: String,
}

/// Decodes a `data:image/...;base64,` URI into the padded standard base64 Ollama expects,
/// checking that the bytes really are an image.
pub(crate) fn decode_data_uri(url: &str, param: &str) -> Result<String, InvalidRequest> {
    let bad = |why: &str| InvalidRequest {
        message: format!("The image at {param} is not usable: {why}."),
        param: Some(param.to_owned()),
        code: Some("invalid_image"),
    };
    let rest = url
        .strip_prefix("data:")
        .ok_or_else(|| bad("not a data: URI"))?;
    let (meta, payload) = rest
        .split_once(',')
        .ok_or_else(|| bad("a data: URI needs a comma before its payload"))?;
    let (mime, encoding) = meta.split_once(';').unwrap_or((meta, ""));
    if encoding != "base64" {
        return Err(bad("only base64 data: URIs are supported"));
    }
    if !(mime.is_empty() || mime.starts_with("image/")) {
        return Err(bad("the data: URI's type is not an image type"));
    }
    aiproxy_ollama::image_from_base64(payload).map_err(|why| bad(&why.to_string()))
}

/// Recognises an image by its first bytes (Ollama's own check, re-exported for the image
/// fetcher).
pub use aiproxy_ollama::image_kind;
