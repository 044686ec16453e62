use serde::{Deserialize, Serialize};

use crate::{ApiKeyHash, RateLimits, UnixMillis, ValidationError};

const MAX_USER_ID_LEN: usize = 64;

/// A user's identifier, chosen by the operator: 1 to 64 characters from `A-Z a-z 0-9 . _ - @`,
/// starting with a letter or a digit.
///
/// The set is small on purpose: ids appear in URL path segments, command lines, log lines and
/// CSV exports, and none of these characters needs escaping in any of them. The first
/// character rules out `.` and `..` (which a URL path resolves away), ids a command line
/// would take for a flag (`-x`), and cells a spreadsheet would take for a formula (`@x`, `-1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Validates a user id.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::new("user_id", "must not be empty"));
        }
        if raw.len() > MAX_USER_ID_LEN {
            return Err(ValidationError::new(
                "user_id",
                format!("must be at most {MAX_USER_ID_LEN} characters"),
            ));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
        {
            return Err(ValidationError::new(
                "user_id",
                "may contain only letters, digits and . _ - @",
            ));
        }
        if !raw.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(ValidationError::new(
                "user_id",
                "must start with a letter or a digit",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for UserId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> Self {
        id.0
    }
}

/// A user as stored, with its settings but without any secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The operator-chosen id.
    pub id: UserId,
    /// A human name to show in listings.
    pub display_name: Option<String>,
    /// Free text for the operator (team, purpose, ticket).
    pub note: Option<String>,
    /// The first characters of the current key, to tell keys apart.
    pub key_prefix: String,
    /// When the current key stops working; `None` for never.
    pub key_expires_at: Option<UnixMillis>,
    /// The models this user may call; `None` for all.
    pub allowed_models: Option<Vec<String>>,
    /// A disabled user keeps its history but every request answers 401.
    pub disabled: bool,
    /// When the user was created.
    pub created_at: UnixMillis,
    /// The user's limits (the defaults unless an operator changed them).
    pub limits: RateLimits,
}

impl User {
    /// Whether `model` is one this user may call. Names compare with and without `:latest`,
    /// as Ollama resolves them.
    pub fn may_use_model(&self, model: &str) -> bool {
        match &self.allowed_models {
            None => true,
            Some(allowed) => {
                let wanted = normalise_model_name(model);
                allowed.iter().any(|m| normalise_model_name(m) == wanted)
            }
        }
    }
}

fn normalise_model_name(name: &str) -> &str {
    name.strip_suffix(":latest").unwrap_or(name)
}

/// Everything needed to create a user. The key is already hashed: a store never sees one in
/// clear.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The operator-chosen id.
    pub id: UserId,
    /// See [`User::display_name`].
    pub display_name: Option<String>,
    /// See [`User::note`].
    pub note: Option<String>,
    /// The hash of the user's first key.
    pub key_hash: ApiKeyHash,
    /// The first characters of that key.
    pub key_prefix: String,
    /// See [`User::key_expires_at`].
    pub key_expires_at: Option<UnixMillis>,
    /// See [`User::allowed_models`].
    pub allowed_models: Option<Vec<String>>,
    /// The user's starting limits.
    pub limits: RateLimits,
    /// When the user is created.
    pub created_at: UnixMillis,
}

/// A partial update of a user's settings: `None` leaves a field as it is; for the optional
/// fields `Some(None)` clears them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    /// See [`User::display_name`].
    pub display_name: Option<Option<String>>,
    /// See [`User::note`].
    pub note: Option<Option<String>>,
    /// See [`User::key_expires_at`].
    pub key_expires_at: Option<Option<UnixMillis>>,
    /// See [`User::allowed_models`].
    pub allowed_models: Option<Option<Vec<String>>>,
    /// See [`User::disabled`].
    pub disabled: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_checked() {
        assert!(UserId::parse("alice.smith@lab-1_x").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"a".repeat(65)).is_err());
        assert!(UserId::parse("a/b").is_err());
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse("é").is_err());
    }

    #[test]
    fn ids_unsafe_in_a_path_segment_or_a_command_line_are_refused() {
        for unsafe_id in [".", "..", "-", "-rf", ".hidden", "_x", "@x"] {
            assert_eq!(
                UserId::parse(unsafe_id).unwrap_err().message,
                "must start with a letter or a digit",
                "{unsafe_id}"
            );
        }
        assert!(UserId::parse("0.x-y_z@w").is_ok());
    }

    #[test]
    fn allowed_models_ignore_the_latest_tag() {
        let user = User {
            id: UserId::parse("u").unwrap(),
            display_name: None,
            note: None,
            key_prefix: String::new(),
            key_expires_at: None,
            allowed_models: Some(vec!["llama3.2".into()]),
            disabled: false,
            created_at: UnixMillis(0),
            limits: RateLimits::default(),
        };
        assert!(user.may_use_model("llama3.2:latest"));
        assert!(user.may_use_model("llama3.2"));
        assert!(!user.may_use_model("moondream"));
    }
}
