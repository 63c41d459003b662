//! The first token: on a store without any, an `admin` token is created and its secret written
//! to a file only its owner can read (mode 0600), never to a log. A well-formed secret already
//! in that file is adopted instead of a new one (a test harness or an operator may choose it).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use drover_store::{Store, TokenRecord};

use super::{hash, new_secret, well_formed};
use crate::clock::now_micros;

/// The name of the first token.
pub const ADMIN: &str = "admin";

/// Creates the admin token if the store has no token at all.
pub async fn ensure_admin(store: &dyn Store, file: &Path) -> anyhow::Result<()> {
    if !store.tokens().await?.is_empty() {
        return Ok(());
    }
    let existing = std::fs::read_to_string(file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| well_formed(s));
    let secret = match existing {
        Some(s) => {
            restrict(file)?;
            tracing::info!(file = %file.display(), "admin token adopted from its file");
            s
        }
        None => {
            let s = new_secret().map_err(anyhow::Error::new)?;
            write_secret(file, &s)?;
            tracing::info!(file = %file.display(), "admin token created (the file holds it)");
            s
        }
    };
    let rec = TokenRecord {
        name: ADMIN.into(),
        role: drover_api::auth::Role::Admin.as_str().into(),
        namespaces: Vec::new(),
        hash: hash(&secret),
        created_at: now_micros(),
        expires_at: None,
        worker_limits: "{}".into(),
    };
    anyhow::ensure!(
        store.insert_token(&rec).await?,
        "could not store the admin token"
    );
    Ok(())
}

/// Writes `secret` to `file` (replacing it), readable by the owner only.
pub fn write_secret(file: &Path, secret: &str) -> anyhow::Result<()> {
    write_private(file, &format!("{secret}\n"))
}

/// Writes `contents` to `file` (replacing it atomically), readable by the owner only.
pub fn write_private(file: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    restrict(&tmp)?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))
}

fn restrict(file: &Path) -> anyhow::Result<()> {
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private (mode 0600)", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_store::MemStore;

    #[tokio::test]
    async fn first_start_writes_a_private_admin_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/admin.token");
        let store = MemStore::new();
        ensure_admin(&store, &file).await.unwrap();
        let secret = std::fs::read_to_string(&file).unwrap().trim().to_string();
        assert!(well_formed(&secret));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let tokens = store.tokens().await.unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(
            (tokens[0].name.as_str(), tokens[0].role.as_str()),
            ("admin", "admin")
        );
        assert_eq!(tokens[0].hash, hash(&secret));
        // A second start changes nothing.
        ensure_admin(&store, &file).await.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), secret);
        assert_eq!(store.tokens().await.unwrap(), tokens);
    }

    #[tokio::test]
    async fn a_secret_in_the_file_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.token");
        let chosen = format!("drover_{}", "ab".repeat(32));
        std::fs::write(&file, format!("{chosen}\n")).unwrap();
        let store = MemStore::new();
        ensure_admin(&store, &file).await.unwrap();
        assert_eq!(store.tokens().await.unwrap()[0].hash, hash(&chosen));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
