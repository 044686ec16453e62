//! What Ollama accepts in a message's `images`: padded standard base64 of a PNG, JPEG, WebP or
//! GIF file. Every dialect's translator checks its images here, so a bad one is a clear 400
//! instead of a runner failure.

use base64::Engine as _;

/// Why a base64 payload is not an image Ollama can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The payload is not valid base64.
    #[error("its base64 payload does not decode")]
    NotBase64,
    /// The bytes decode but are not a PNG, JPEG, WebP or GIF file.
    #[error("its bytes are not a PNG, JPEG, WebP or GIF image")]
    NotAnImage,
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

/// Checks that `payload` (standard base64, surrounding whitespace ignored) holds an image, and
/// returns it re-encoded as the padded standard base64 Ollama decodes.
pub fn image_from_base64(payload: &str) -> Result<String, ImageError> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let bytes = engine
        .decode(payload.trim())
        .map_err(|_| ImageError::NotBase64)?;
    if image_kind(&bytes).is_none() {
        return Err(ImageError::NotAnImage);
    }
    Ok(engine.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_bytes_and_re_encoded() {
        // A PNG signature, base64 with surrounding whitespace.
        assert_eq!(
            image_from_base64(" iVBORw0KGgo= \n"),
            Ok("iVBORw0KGgo=".to_owned())
        );
        assert_eq!(image_from_base64("R0lGODlh"), Ok("R0lGODlh".to_owned()));
        assert_eq!(image_from_base64("aGVsbG8="), Err(ImageError::NotAnImage));
        assert_eq!(image_from_base64("not base64!"), Err(ImageError::NotBase64));
        assert_eq!(image_kind(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_kind(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(image_kind(b"RIFF"), None);
    }
}
