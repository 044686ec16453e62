//! Images in chat messages: `data:` URIs decoded here, http(s) URLs left for the caller to
//! fetch.

use base64::Engine as _;

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
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|_| bad("its base64 payload does not decode"))?;
    if image_kind(&bytes).is_none() {
        return Err(bad("its bytes are not a PNG, JPEG, WebP or GIF image"));
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Recognises an image by its first bytes, whatever the sender claimed: `image/png`,
/// `image/jpeg`, `image/webp` or `image/gif`, else `None`.
pub fn image_kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else {
        None
    }
}
