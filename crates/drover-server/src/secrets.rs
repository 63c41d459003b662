//! Secret environment variables at rest: sealed with the server's key (XChaCha20-Poly1305, a
//! random 192-bit nonce per value, the variable's name as associated data) when a task or
//! schedule is submitted, opened only when the driver builds the assignment it sends to a
//! worker. The plaintext exists in the submit request, the assignment message, and nowhere
//! else: the core, the store, views, events and logs see only [`Sealed`] bytes or `***`.
//!
//! A sealed value is `version (1) | key id (8) | nonce (24) | ciphertext and tag`. The key id
//! (a hash of the key) picks the key that opens it, so a server given `--previous-secret-key-file`
//! opens values sealed with either key and seals new ones with the current key.
//!
//! The associated data is the name, not the task id: the core copies a definition into new
//! tasks (schedule fires, broadcast copies, workflow reruns), and whoever can write the
//! database can change a task's argv to print its secrets anyway, so binding a value to one
//! task id would add nothing; the name keeps values from being swapped between variables.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use drover_api::proto;
use drover_api::secret::Seal;
use drover_core::{Assignment, Sealed, TaskSpec};
use rand::TryRngCore;
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const HEADER: usize = 1 + ID_LEN + NONCE_LEN;
/// The key file's name in the data directory, unless `--secret-key-file` says otherwise.
pub const DEFAULT_KEY_FILE: &str = "secret.key";

struct Key {
    id: [u8; ID_LEN],
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"drover secret key id\0")
            .chain_update(bytes)
            .finalize();
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[..ID_LEN]);
        Key {
            id,
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// The server's secret keys: the current one seals and opens, the previous one (during a
/// rotation) only opens.
pub struct SecretKeys {
    current: Key,
    previous: Option<Key>,
}

fn aad(name: &str) -> Vec<u8> {
    [b"drover secret_env v1\0".as_slice(), name.as_bytes()].concat()
}

impl SecretKeys {
    pub fn from_bytes(current: &[u8; 32], previous: Option<&[u8; 32]>) -> Self {
        SecretKeys {
            current: Key::new(current),
            previous: previous.map(Key::new),
        }
    }

    /// The server's keys: `--secret-key-file` (default `secret.key` in the server's data
    /// directory, `data_dir`) and `--previous-secret-key-file`.
    pub fn for_server(cfg: &crate::ServerConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let current = cfg
            .secret_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join(DEFAULT_KEY_FILE));
        Self::load(&current, cfg.previous_secret_key_file.as_deref())
            .with_context(|| format!("loading the secret key {}", current.display()))
    }

    /// Reads the current key from `current` (creating it, mode 0600, if it does not exist) and
    /// the previous one from `previous`, which must exist.
    pub fn load(current: &Path, previous: Option<&Path>) -> anyhow::Result<Self> {
        let cur = match read_key(current) {
            Ok(k) => k,
            Err(e) if is_missing(&e) => create_key(current)?,
            Err(e) => return Err(e),
        };
        let prev = previous
            .map(|p| {
                read_key(p).with_context(|| format!("--previous-secret-key-file {}", p.display()))
            })
            .transpose()?;
        Ok(Self::from_bytes(&cur, prev.as_ref()))
    }

    /// Opens one value; the error says why, never what.
    pub fn open(&self, name: &str, sealed: &Sealed) -> Result<String, String> {
        let b = &sealed.0;
        if b.len() < HEADER || b[0] != VERSION {
            return Err("not a sealed value of this version".into());
        }
        let id = &b[1..1 + ID_LEN];
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == id)
            .ok_or(
                "sealed with a key this server does not have (see key rotation in the README)",
            )?;
        let nonce = XNonce::from_slice(&b[1 + ID_LEN..HEADER]);
        let aad = aad(name);
        let plain = key
            .cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &b[HEADER..],
                    aad: &aad,
                },
            )
            .map_err(|_| "the sealed value does not authenticate")?;
        String::from_utf8(plain).map_err(|_| "the opened value is not UTF-8".into())
    }

    /// Adds an assignment's secret env, opened, to its message; if one cannot be opened, sets
    /// `secret_error` instead (the worker fails the attempt and runs nothing).
    pub fn reveal(&self, a: &Assignment, msg: &mut proto::Assignment) {
        let TaskSpec::Exec { secret_env, .. } = &a.def.spec else {
            return;
        };
        let Some(proto::assignment::Spec::Exec(exec)) = &mut msg.spec else {
            return;
        };
        for (name, sealed) in secret_env {
            match self.open(name, sealed) {
                Ok(v) => {
                    exec.secret_env.insert(name.clone(), v);
                }
                Err(why) => {
                    tracing::warn!(task_id = %a.task_id, secret = %name, %why, "cannot open a secret env value");
                    exec.secret_env.clear();
                    exec.secret_error = Some(format!("cannot decrypt secret_env {name}: {why}"));
                    return;
                }
            }
        }
    }
}

impl Seal for SecretKeys {
    fn seal(&self, name: &str, value: &str) -> Result<Sealed, String> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| format!("reading OS randomness: {e}"))?;
        let aad = aad(name);
        let ct = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| "encryption failed".to_string())?;
        let mut out = Vec::with_capacity(HEADER + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(Sealed(out))
    }
}

fn is_missing(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// Reads a key file: 64 hex digits (32 bytes), surrounding whitespace ignored.
fn read_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)?;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the secret key file is readable by others; chmod 600 it");
        }
    }
    let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 32);
    let Some(bytes) = bytes else {
        bail!(
            "{} is not a Drover secret key (64 hex digits); leave the path free to have one created",
            path.display()
        );
    };
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Creates a new random key file, mode 0600; another process creating it first wins.
fn create_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .context("reading OS randomness")?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return read_key(path),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("creating the secret key file {}", path.display()))
        }
    };
    file.write_all(format!("{}\n", hex::encode(key)).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the secret key file {}", path.display()))?;
    tracing::info!(path = %path.display(), "created the secret key for secret env");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_the_name_with_fresh_nonces() {
        let k = SecretKeys::from_bytes(&[7; 32], None);
        let a = k.seal("TOKEN", "s3cr3t").unwrap();
        let b = k.seal("TOKEN", "s3cr3t").unwrap();
        assert_ne!(a, b, "a random nonce per value");
        assert!(!a.0.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(k.open("TOKEN", &a).unwrap(), "s3cr3t");
        assert!(k.open("OTHER", &a).is_err(), "bound to its name");
        let mut tampered = a.clone();
        *tampered.0.last_mut().unwrap() ^= 1;
        assert!(k.open("TOKEN", &tampered).is_err());
        assert!(k.open("TOKEN", &Sealed(vec![])).is_err());
    }

    #[test]
    fn rotation_opens_with_either_key_and_seals_with_the_new_one() {
        let old = SecretKeys::from_bytes(&[1; 32], None);
        let by_old = old.seal("T", "v").unwrap();
        let rotated = SecretKeys::from_bytes(&[2; 32], Some(&[1; 32]));
        assert_eq!(rotated.open("T", &by_old).unwrap(), "v");
        let by_new = rotated.seal("T", "v").unwrap();
        assert!(old.open("T", &by_new).is_err());
        let only_new = SecretKeys::from_bytes(&[2; 32], None);
        assert_eq!(only_new.open("T", &by_new).unwrap(), "v");
        let e = only_new.open("T", &by_old).unwrap_err();
        assert!(e.contains("key"), "{e}");
    }

    #[test]
    fn the_key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let k1 = SecretKeys::load(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = k1.seal("T", "v").unwrap();
        let k2 = SecretKeys::load(&path, None).unwrap();
        assert_eq!(k2.open("T", &sealed).unwrap(), "v");
        let missing = dir.path().join("missing.key");
        assert!(SecretKeys::load(&path, Some(&missing)).is_err());
        assert!(!missing.exists(), "a previous key is never created");
        std::fs::write(&path, "not a key").unwrap();
        let e = SecretKeys::load(&path, None).err().unwrap().to_string();
        assert!(e.contains("not a Drover secret key"), "{e}");
    }
}
