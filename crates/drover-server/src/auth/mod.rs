//! Authentication and authorization at the edge: bearer tokens (stored as SHA-256 hashes),
//! roles (`roles.rs`, the one role → permission table), dashboard sessions (HttpOnly cookies
//! tied to a token), the browser protections (`layer.rs`: Host and Origin checks), the token
//! and session endpoints (`tokens.rs`), the admin token of a fresh store (`bootstrap.rs`),
//! streams that end when their token is revoked (`streams.rs`) and the listen policy
//! (`policy.rs`).
//!
//! Secrets never reach a log line: only token names are logged.

mod bootstrap;
mod hosts;
mod layer;
pub mod openapi;
pub mod policy;
pub mod roles;
mod sessions;
mod streams;
mod tokens;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use drover_api::auth::{Role, WorkerLimits};
use drover_api::namespace::Scope;
use drover_api::{ApiError, ErrorCode};
use drover_core::Micros;
use drover_store::{Store, TokenRecord};
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

pub use bootstrap::write_private;
pub use hosts::HostPolicy;
pub use layer::guard;
pub use streams::until_revoked;
pub use tokens::{routes, AuthApi};

use crate::clock::now_micros;

/// Every secret starts with this, so a leaked one is recognisable (secret scanners).
pub const SECRET_PREFIX: &str = "drover_";
/// Hex digits of a secret's random part: 256 bits.
const SECRET_HEX: usize = 64;

/// How the server authenticates; `ServerConfig::auth`.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// `false` only with `--no-auth` on loopback: every caller is an anonymous admin, the
    /// browser protections still apply.
    pub enabled: bool,
    /// Where the admin token of a fresh store is written [default: `admin.token` next to the
    /// SQLite file].
    pub admin_token_file: Option<PathBuf>,
    /// Host names served besides loopback and the listen address (`--allowed-host`).
    pub allowed_hosts: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            admin_token_file: None,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Who is calling, put into each authenticated request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    /// The token's hash (`None` with `--no-auth`): what streams check for revocation.
    pub(crate) hash: Option<[u8; 32]>,
    /// What a worker registering with this token may claim.
    pub worker_limits: WorkerLimits,
    /// The namespaces the token may see and act in (empty: every namespace).
    pub namespaces: Vec<String>,
}

impl Identity {
    pub fn scope(&self) -> Scope {
        Scope::of(&self.namespaces)
    }
}

/// A token's stored worker limits; unreadable ones let no worker in (fail closed).
pub(crate) fn worker_limits_of(t: &TokenRecord) -> WorkerLimits {
    serde_json::from_str(&t.worker_limits).unwrap_or_else(|_| WorkerLimits::deny_all())
}

/// A new secret: the prefix and 256 random bits in hex.
pub fn new_secret() -> Result<String, ApiError> {
    Ok(format!("{SECRET_PREFIX}{}", random_hex()?))
}

/// 256 random bits from the OS, in hex.
pub(crate) fn random_hex() -> Result<String, ApiError> {
    let mut bytes = [0u8; SECRET_HEX / 2];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| ApiError::internal(format!("reading OS randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Whether `s` has the shape of a secret (prefix, then 64 lowercase hex digits).
pub fn well_formed(s: &str) -> bool {
    s.strip_prefix(SECRET_PREFIX).is_some_and(|h| {
        h.len() == SECRET_HEX
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn unauthenticated(msg: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, msg)
}

/// The tokens (a cache of the store's, which it keeps in step), the dashboard sessions, and a
/// signal for streams when a token is revoked.
pub struct Auth {
    store: Arc<dyn Store>,
    enabled: bool,
    /// By hash. The store is the truth; other servers on a shared store write it too, and
    /// `follow` brings their changes here.
    tokens: RwLock<HashMap<[u8; 32], TokenRecord>>,
    pub(crate) sessions: sessions::Sessions,
    pub(crate) hosts: HostPolicy,
    /// Bumped on every revocation: open streams re-check their token.
    revoked: watch::Sender<u64>,
    /// Where the admin token was written (or found) at start.
    pub admin_token_file: Option<PathBuf>,
}

impl Auth {
    /// Loads the tokens; on a store without any, creates the admin token first (`bootstrap`).
    pub async fn start(
        store: Arc<dyn Store>,
        cfg: &AuthConfig,
        default_token_file: Option<PathBuf>,
        listen: std::net::SocketAddr,
    ) -> anyhow::Result<Arc<Auth>> {
        let file = cfg.admin_token_file.clone().or(default_token_file);
        if let Some(f) = &file {
            bootstrap::ensure_admin(store.as_ref(), f).await?;
        }
        let tokens = store.tokens().await?;
        Ok(Arc::new(Auth {
            store,
            enabled: cfg.enabled,
            tokens: RwLock::new(tokens.into_iter().map(|t| (t.hash, t)).collect()),
            sessions: sessions::Sessions::default(),
            hosts: HostPolicy::new(listen, &cfg.allowed_hosts),
            revoked: watch::channel(0).0,
            admin_token_file: file,
        }))
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<[u8; 32], TokenRecord>> {
        self.tokens.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], TokenRecord>> {
        self.tokens.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The identity of a token's hash, if the token exists and has not expired at `now`.
    fn identity_of(&self, h: &[u8; 32], now: Micros) -> Option<Identity> {
        let tokens = self.read();
        let t = tokens.get(h)?;
        // The map lookup found it by hash; compare again in constant time, so no code path
        // depends on a partial match of secret material.
        if !bool::from(t.hash.ct_eq(h)) || t.expires_at.is_some_and(|e| e <= now) {
            return None;
        }
        Some(Identity {
            name: t.name.clone(),
            role: Role::parse(&t.role)?,
            hash: Some(t.hash),
            worker_limits: worker_limits_of(t),
            namespaces: t.namespaces.clone(),
        })
    }

    /// The caller of a bearer secret.
    pub fn bearer(&self, secret: &str) -> Result<Identity, ApiError> {
        if !self.enabled {
            return Ok(anonymous());
        }
        if !well_formed(secret) {
            return Err(unauthenticated(
                "malformed bearer token; tokens look like drover_<64 hex digits>",
            ));
        }
        self.identity_of(&hash(secret), now_micros())
            .ok_or_else(|| unauthenticated("unknown, revoked or expired token"))
    }

    /// Whether the token behind `who` is still valid (streams ask this).
    pub fn still_valid(&self, who: &Identity) -> bool {
        match &who.hash {
            None => true,
            Some(h) => self.identity_of(h, now_micros()).is_some(),
        }
    }

    /// A receiver that changes whenever a token is revoked.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revoked.subscribe()
    }

    /// Stores a new token and returns it with its secret (shown once). 409 if the name is
    /// taken.
    pub async fn create(
        &self,
        name: &str,
        role: Role,
        expires_at: Option<Micros>,
        worker_limits: &WorkerLimits,
        namespaces: Vec<String>,
    ) -> Result<(TokenRecord, String), ApiError> {
        drover_api::auth::check_token_name(name)?;
        worker_limits.validate()?;
        let limits = serde_json::to_string(worker_limits)
            .map_err(|e| ApiError::internal(format!("encoding worker limits: {e}")))?;
        let secret = new_secret()?;
        let rec = TokenRecord {
            name: name.to_string(),
            role: role.as_str().to_string(),
            namespaces,
            hash: hash(&secret),
            created_at: now_micros(),
            expires_at,
            worker_limits: limits,
        };
        let stored = self.store.insert_token(&rec).await.map_err(store_err)?;
        if !stored {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("a token named '{name}' exists; revoke it first or pick another name"),
            ));
        }
        self.write().insert(rec.hash, rec.clone());
        tracing::info!(token = %name, role = %role, "token created");
        Ok((rec, secret))
    }

    /// Deletes a token; its sessions and open streams end within a second. False if none.
    pub async fn revoke(&self, name: &str) -> Result<bool, ApiError> {
        let found = self.store.delete_token(name).await.map_err(store_err)?;
        let removed: Vec<[u8; 32]> = {
            let mut tokens = self.write();
            let hashes: Vec<_> = tokens
                .values()
                .filter(|t| t.name == name)
                .map(|t| t.hash)
                .collect();
            for h in &hashes {
                tokens.remove(h);
            }
            hashes
        };
        for h in &removed {
            self.sessions.end_token(h);
        }
        self.revoked.send_modify(|n| *n += 1);
        if found {
            tracing::info!(token = %name, "token revoked");
        }
        Ok(found || !removed.is_empty())
    }

    /// Reloads the tokens from the store: another server created or revoked some. The
    /// sessions and streams of tokens gone end as on a revocation here.
    pub async fn refresh(&self) -> Result<(), drover_store::StoreError> {
        let fresh: HashMap<[u8; 32], TokenRecord> = self
            .store
            .tokens()
            .await?
            .into_iter()
            .map(|t| (t.hash, t))
            .collect();
        let gone: Vec<[u8; 32]> = {
            let mut tokens = self.write();
            let gone = tokens
                .keys()
                .filter(|h| !fresh.contains_key(*h))
                .copied()
                .collect();
            *tokens = fresh;
            gone
        };
        if !gone.is_empty() {
            for h in &gone {
                self.sessions.end_token(h);
            }
            self.revoked.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// Keeps the tokens in step with the store's changes (`Store::notices`), until aborted.
    pub async fn follow(self: Arc<Self>, mut changed: watch::Receiver<u64>) {
        while changed.changed().await.is_ok() {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "reloading the tokens failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                changed.mark_changed();
            }
        }
    }

    /// Every token, by name (no secrets: none are kept).
    pub async fn list(&self) -> Result<Vec<TokenRecord>, ApiError> {
        self.store.tokens().await.map_err(store_err)
    }

    /// Replaces the token `name` with a new one of `role` and returns its secret: the token
    /// `drover up` gives its local workers, new at every start.
    pub async fn rotate(&self, name: &str, role: Role) -> anyhow::Result<String> {
        self.revoke(name).await.map_err(anyhow::Error::new)?;
        let (_, secret) = self
            .create(name, role, None, &WorkerLimits::default(), Vec::new())
            .await
            .map_err(anyhow::Error::new)?;
        Ok(secret)
    }

    /// A one-time code that logs the dashboard in as the token `secret` (the login link of
    /// `drover up`); `None` if the secret is not a valid token.
    pub fn login_code(&self, secret: &str) -> Option<String> {
        let who = self.bearer(secret).ok()?;
        self.sessions.new_code(who.hash?)
    }
}

/// The caller of a server run with `--no-auth` (loopback only).
fn anonymous() -> Identity {
    Identity {
        name: "anonymous".into(),
        role: Role::Admin,
        hash: None,
        worker_limits: WorkerLimits::default(),
        namespaces: Vec::new(),
    }
}

fn store_err(e: drover_store::StoreError) -> ApiError {
    let crate::http::HttpError(e) = e.into();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_256_bits_and_recognisable() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b), "{a}");
        assert_eq!(a.len(), SECRET_PREFIX.len() + 64);
        for bad in [
            "",
            "drover_",
            "drover_xyz",
            &a[1..],
            &a.to_uppercase(),
            &format!("{a}0"),
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
        assert_eq!(hash(&a), hash(&a.clone()));
        assert_ne!(hash(&a), hash(&b));
    }
}
