//! Secret environment variables on the wire: names and bounds checked here, values sealed by
//! whoever validates for storage (the server, with its key), and shown only as [`MASK`].
//!
//! Error messages name a secret, never its value.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use drover_core::Sealed;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::limits;

/// What every view shows in place of a secret value.
pub const MASK: &str = "***";

/// Secret values by name, as a request carries them: a plain JSON object on the wire, but its
/// `Debug` shows names only, so a request logged by mistake shows no secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValues(pub BTreeMap<String, String>);

impl SecretValues {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Deref for SecretValues {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<BTreeMap<String, String>> for SecretValues {
    fn from(m: BTreeMap<String, String>) -> Self {
        SecretValues(m)
    }
}

impl fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, MASK)))
            .finish()
    }
}

/// Encrypts secret values for storage. The server implements it with its key; the core only
/// carries the result.
pub trait Seal {
    /// Seals one value, bound to its variable's name.
    fn seal(&self, name: &str, value: &str) -> Result<Sealed, String>;
}

/// Checks a request without encrypting anything (clients validate before they send). Its
/// "sealed" values are empty and can never be opened: a definition made with it must not be
/// stored, and if one were, its task would fail instead of running without its secrets.
pub struct CheckOnly;

impl Seal for CheckOnly {
    fn seal(&self, _name: &str, _value: &str) -> Result<Sealed, String> {
        Ok(Sealed(Vec::new()))
    }
}

/// A valid environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most `MAX_NAME` bytes.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= limits::MAX_NAME
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks the secret env of a spec: valid names, bounded count and sizes (in characters), no
/// NUL byte. (A name also in the plain env takes its secret value: see `SubmitRequest`.)
pub fn check(secret_env: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::invalid("secret_env", m));
    if secret_env.len() > limits::MAX_SECRETS {
        return bad(format!("at most {} secret variables", limits::MAX_SECRETS));
    }
    for (name, value) in secret_env {
        let shown: String = name.chars().take(64).collect();
        if !is_env_name(name) {
            return bad(format!(
                "'{shown}' is not a valid environment variable name: a letter or _ then \
                 letters, digits or _, at most {} bytes",
                limits::MAX_NAME
            ));
        }
        let chars = value.chars().count();
        if chars > limits::MAX_SECRET_BYTES {
            return bad(format!(
                "the value of '{shown}' has {chars} characters; at most {}",
                limits::MAX_SECRET_BYTES
            ));
        }
        if value.contains('\0') {
            return bad(format!("the value of '{shown}' contains a NUL byte"));
        }
    }
    Ok(())
}

/// Seals every value (in name order).
pub fn seal_all(
    secret_env: &BTreeMap<String, String>,
    seal: &dyn Seal,
) -> Result<Vec<(String, Sealed)>, ApiError> {
    secret_env
        .iter()
        .map(|(k, v)| {
            seal.seal(k, v)
                .map(|s| (k.clone(), s))
                .map_err(|e| ApiError::internal(format!("sealing secret_env {k}: {e}")))
        })
        .collect()
}

/// The names, each with the value [`MASK`].
pub fn masked(secret_env: &[(String, Sealed)]) -> BTreeMap<String, String> {
    secret_env
        .iter()
        .map(|(k, _)| (k.clone(), MASK.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_are_environment_names() {
        for ok in ["A", "_", "API_TOKEN", "x1", "_9"] {
            assert!(is_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É", &"A".repeat(201)] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_the_value() {
        assert!(check(&map(&[("TOKEN", "s3cr3t")])).is_ok());
        let e = check(&map(&[("BAD NAME", "s3cr3t")])).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("secret_env"));
        assert!(e.message.contains("BAD NAME") && !e.message.contains("s3cr3t"));
        let long = "s".repeat(limits::MAX_SECRET_BYTES + 1);
        let e = check(&map(&[("T", &long)])).unwrap_err();
        assert!(!e.message.contains(&long[..20]), "{}", e.message);
        let wide = "é".repeat(limits::MAX_SECRET_BYTES);
        assert!(check(&map(&[("T", &wide)])).is_ok());
        assert!(check(&map(&[("T", "a\0b")])).is_err());
        let many: BTreeMap<String, String> = (0..=limits::MAX_SECRETS)
            .map(|i| (format!("S{i}"), "v".to_string()))
            .collect();
        assert!(check(&many).is_err());
    }

    #[test]
    fn debug_of_request_values_shows_names_only() {
        let v = SecretValues(map(&[("TOKEN", "s3cr3t")]));
        assert_eq!(format!("{v:?}"), r#"{"TOKEN": "***"}"#);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"TOKEN":"s3cr3t"}"#);
    }

    #[test]
    fn masked_shows_names_only() {
        let sealed = vec![("B".to_string(), Sealed(vec![1, 2, 3]))];
        assert_eq!(masked(&sealed), map(&[("B", "***")]));
    }
}
