use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ValidationError;

/// How many leading characters of a key are kept in clear, to tell keys apart in listings.
pub const KEY_PREFIX_LEN: usize = 12;

const GENERATED_PREFIX: &str = "sk-";
const GENERATED_RANDOM_BYTES: usize = 32;
const MIN_IMPORTED_LEN: usize = 32;
const MAX_KEY_LEN: usize = 256;
const MIN_DISTINCT_CHARS: usize = 12;

/// A user's secret API key, in clear. It exists only while a key is being issued or checked:
/// what is stored is its [`ApiKeyHash`].
///
/// `Debug` never prints the key, so a key cannot leak through a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({}…)", self.prefix())
    }
}

impl ApiKey {
    /// A new random key: `sk-` followed by 64 hex digits (256 bits from the OS generator).
    pub fn generate() -> Self {
        let mut bytes = [0u8; GENERATED_RANDOM_BYTES];
        // The OS random source failing is not something a request can cause or recover from;
        // a key made of zeros would be far worse than stopping.
        #[expect(
            clippy::expect_used,
            reason = "no safe key can be made without the OS random source"
        )]
        getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
        let mut key = String::with_capacity(GENERATED_PREFIX.len() + 2 * bytes.len());
        key.push_str(GENERATED_PREFIX);
        for byte in bytes {
            key.push_str(&format!("{byte:02x}"));
        }
        Self(key)
    }

    /// Accepts a key as a client presents it (no validation of its strength: any string
    /// without whitespace or control characters may be looked up).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::new("api_key", "the key is empty"));
        }
        if raw.len() > MAX_KEY_LEN {
            return Err(ValidationError::new(
                "api_key",
                format!("the key is longer than {MAX_KEY_LEN} characters"),
            ));
        }
        if !raw.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "api_key",
                "the key may contain only printable ASCII characters without spaces",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Accepts a key brought over from another system, but only one that is long and varied
    /// enough to be a random secret: at least 32 printable characters, with at least 12
    /// distinct ones (which rules out `aaaa…`, `1234…1234` and dictionary phrases padded out).
    pub fn parse_imported(raw: &str) -> Result<Self, ValidationError> {
        let key = Self::parse(raw)?;
        if raw.len() < MIN_IMPORTED_LEN {
            return Err(ValidationError::new(
                "api_key",
                format!("an imported key must be at least {MIN_IMPORTED_LEN} characters long"),
            ));
        }
        let mut seen = [false; 128];
        let mut distinct = 0;
        for b in raw.bytes() {
            let slot = &mut seen[usize::from(b & 0x7f)];
            if !*slot {
                *slot = true;
                distinct += 1;
            }
        }
        if distinct < MIN_DISTINCT_CHARS {
            return Err(ValidationError::new(
                "api_key",
                format!(
                    "an imported key must look random: at least {MIN_DISTINCT_CHARS} distinct characters"
                ),
            ));
        }
        Ok(key)
    }

    /// The key in clear, to show once to the person it was issued to.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first characters of the key, safe to show in listings and logs.
    pub fn prefix(&self) -> String {
        self.0.chars().take(KEY_PREFIX_LEN).collect()
    }

    /// The SHA-256 of the key: what is stored and looked up.
    ///
    /// A plain hash is enough because generated keys carry 256 random bits and imported ones
    /// must look random: there is no dictionary to try against a leaked database.
    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

/// The SHA-256 of an [`ApiKey`]; the only form in which keys are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyHash(pub [u8; 32]);

impl std::fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeyHash({})", &self.to_hex()[..8])
    }
}

impl ApiKeyHash {
    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// Parses 64 hex digits back into a hash.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

/// Compares two secrets in time that depends on neither their contents nor their lengths.
///
/// Both sides are hashed first, so the comparison always runs over 32 bytes and an attacker
/// timing responses learns nothing about how much of a guess was right.
pub fn secrets_equal(presented: &str, expected: &str) -> bool {
    let a: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(expected.as_bytes()).into();
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_long_and_parse_back() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 3 + 64);
        assert!(ApiKey::parse_imported(a.expose()).is_ok());
        assert_eq!(ApiKey::parse(a.expose()).unwrap().hash(), a.hash());
    }

    #[test]
    fn debug_never_shows_the_whole_key() {
        let key = ApiKey::generate();
        let shown = format!("{key:?}");
        assert!(!shown.contains(key.expose()));
    }

    #[test]
    fn weak_imported_keys_are_refused() {
        assert!(ApiKey::parse_imported("short").is_err());
        assert!(ApiKey::parse_imported(&"a".repeat(40)).is_err());
        assert!(ApiKey::parse_imported("abababababababababababababababababab").is_err());
        assert!(
            ApiKey::parse_imported("has space in it and is quite long enough to pass").is_err()
        );
        assert!(ApiKey::parse_imported("sk-proj-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5Hs0GpE").is_ok());
    }

    #[test]
    fn hash_hex_round_trips() {
        let hash = ApiKey::generate().hash();
        assert_eq!(ApiKeyHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(ApiKeyHash::from_hex("zz"), None);
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(secrets_equal("admin-secret-key", "admin-secret-key"));
        assert!(!secrets_equal("admin-secret-ke", "admin-secret-key"));
        assert!(!secrets_equal("", "admin-secret-key"));
    }
}
