//! Dashboard sessions: a random id in an HttpOnly, SameSite=Strict cookie, mapped here (by its
//! hash) to the token that logged in. Revoking the token ends its sessions. Also the one-time
//! codes of `drover up`'s login link. Kept in memory: a restart logs the dashboard out.

use std::collections::HashMap;
use std::sync::Mutex;

use drover_api::ApiError;
use drover_core::Micros;

use super::{hash, random_hex, Auth, Identity};
use crate::clock::now_micros;

/// The cookie's name.
pub const COOKIE: &str = "drover_session";
/// A session ends this long after login.
pub const SESSION_TTL_US: Micros = 12 * 3600 * 1_000_000;
/// A login link works once, within this long.
const CODE_TTL_US: Micros = 24 * 3600 * 1_000_000;
/// Most sessions (and codes) kept; the oldest go first.
const MAX_ENTRIES: usize = 10_000;

#[derive(Clone, Copy)]
struct Entry {
    token: [u8; 32],
    expires: Micros,
}

#[derive(Default)]
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By the hash of the session id.
    sessions: HashMap<[u8; 32], Entry>,
    /// By the hash of the code.
    codes: HashMap<[u8; 32], Entry>,
}

fn insert(map: &mut HashMap<[u8; 32], Entry>, key: [u8; 32], e: Entry, now: Micros) {
    map.retain(|_, v| v.expires > now);
    if map.len() >= MAX_ENTRIES {
        if let Some(oldest) = map.iter().min_by_key(|(_, v)| v.expires).map(|(k, _)| *k) {
            map.remove(&oldest);
        }
    }
    map.insert(key, e);
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for the token `token`; returns the cookie value.
    pub fn create(&self, token: [u8; 32]) -> Result<String, ApiError> {
        let id = random_hex()?;
        let now = now_micros();
        let e = Entry {
            token,
            expires: now + SESSION_TTL_US,
        };
        insert(&mut self.lock().sessions, hash(&id), e, now);
        Ok(id)
    }

    /// The token hash behind a live session.
    fn token_of(&self, cookie: &str, now: Micros) -> Option<[u8; 32]> {
        let g = self.lock();
        g.sessions
            .get(&hash(cookie))
            .filter(|e| e.expires > now)
            .map(|e| e.token)
    }

    pub fn end(&self, cookie: &str) {
        self.lock().sessions.remove(&hash(cookie));
    }

    /// Ends every session (and code) of a token.
    pub fn end_token(&self, token: &[u8; 32]) {
        let mut g = self.lock();
        g.sessions.retain(|_, e| &e.token != token);
        g.codes.retain(|_, e| &e.token != token);
    }

    pub fn new_code(&self, token: [u8; 32]) -> Option<String> {
        let code = random_hex().ok()?;
        let now = now_micros();
        let e = Entry {
            token,
            expires: now + CODE_TTL_US,
        };
        insert(&mut self.lock().codes, hash(&code), e, now);
        Some(code)
    }

    /// The token of a login code; the code is used up.
    fn redeem(&self, code: &str, now: Micros) -> Option<[u8; 32]> {
        let e = self.lock().codes.remove(&hash(code))?;
        (e.expires > now).then_some(e.token)
    }
}

impl Auth {
    /// The caller of a session cookie: its token, if the session and the token are live.
    pub fn session(&self, cookie: &str) -> Option<Identity> {
        if !self.enabled {
            return Some(super::anonymous());
        }
        let now = now_micros();
        let token = self.sessions.token_of(cookie, now)?;
        self.identity_of(&token, now)
    }

    /// The identity a one-time login code stands for (used up either way).
    pub fn redeem_code(&self, code: &str) -> Option<Identity> {
        let now = now_micros();
        let token = self.sessions.redeem(code, now)?;
        self.identity_of(&token, now)
    }
}
