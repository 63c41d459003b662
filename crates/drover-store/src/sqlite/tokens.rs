//! API tokens: name, role, namespaces, the hash of the secret, expiry.

use rusqlite::{params, Connection, ErrorCode};

use super::db_err;
use crate::{StoreError, TokenRecord};

/// Inserts a token; false (and nothing changed) when its name or hash is taken.
pub(super) fn insert(c: &Connection, t: &TokenRecord) -> Result<bool, StoreError> {
    let namespaces = serde_json::to_string(&t.namespaces)
        .map_err(|e| StoreError::Backend(format!("encoding token namespaces: {e}")))?;
    let r = c.execute(
        "INSERT INTO api_tokens (name, role, namespaces, hash, created_at, expires_at, \
         worker_limits) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            t.name,
            t.role,
            namespaces,
            &t.hash[..],
            t.created_at,
            t.expires_at,
            t.worker_limits
        ],
    );
    match r {
        Ok(_) => Ok(true),
        Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == ErrorCode::ConstraintViolation => {
            Ok(false)
        }
        Err(e) => Err(db_err(e)),
    }
}

pub(super) fn all(c: &Connection) -> Result<Vec<TokenRecord>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT name, role, namespaces, hash, created_at, expires_at, worker_limits \
             FROM api_tokens ORDER BY name",
        )
        .map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        let namespaces: String = row.get(2).map_err(db_err)?;
        let hash: Vec<u8> = row.get(3).map_err(db_err)?;
        out.push(TokenRecord {
            name: row.get(0).map_err(db_err)?,
            role: row.get(1).map_err(db_err)?,
            namespaces: serde_json::from_str(&namespaces)
                .map_err(|e| StoreError::Corrupt(format!("token namespaces: {e}")))?,
            hash: hash
                .try_into()
                .map_err(|_| StoreError::Corrupt("token hash is not 32 bytes".into()))?,
            created_at: row.get(4).map_err(db_err)?,
            expires_at: row.get(5).map_err(db_err)?,
            worker_limits: row.get(6).map_err(db_err)?,
        });
    }
    Ok(out)
}

/// Deletes a token; whether it existed.
pub(super) fn delete(c: &Connection, name: &str) -> Result<bool, StoreError> {
    let n = c
        .execute("DELETE FROM api_tokens WHERE name = ?1", [name])
        .map_err(db_err)?;
    Ok(n > 0)
}
