//! API tokens: name, role, namespaces, the hash of the secret, expiry.

use deadpool_postgres::GenericClient;

use super::codec::get;
use super::db_err;
use crate::{StoreError, TokenRecord};

/// Inserts a token; false (and nothing changed) when its name or hash is taken.
pub(super) async fn insert(c: &impl GenericClient, t: &TokenRecord) -> Result<bool, StoreError> {
    let namespaces = serde_json::to_string(&t.namespaces)
        .map_err(|e| StoreError::Backend(format!("encoding token namespaces: {e}")))?;
    let n = c
        .execute(
            "INSERT INTO api_tokens (name, role, namespaces, hash, created_at, expires_at, \
             worker_limits) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &t.name,
                &t.role,
                &namespaces,
                &&t.hash[..],
                &t.created_at,
                &t.expires_at,
                &t.worker_limits,
            ],
        )
        .await
        .map_err(db_err)?;
    Ok(n == 1)
}

pub(super) async fn all(c: &impl GenericClient) -> Result<Vec<TokenRecord>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT name, role, namespaces, hash, created_at, expires_at, worker_limits \
             FROM api_tokens ORDER BY name",
        )
        .await
        .map_err(db_err)?;
    let rows = c.query(&st, &[]).await.map_err(db_err)?;
    let mut out = Vec::new();
    for row in &rows {
        let namespaces: &str = get(row, 2)?;
        let hash: &[u8] = get(row, 3)?;
        out.push(TokenRecord {
            name: get(row, 0)?,
            role: get(row, 1)?,
            namespaces: serde_json::from_str(namespaces)
                .map_err(|e| StoreError::Corrupt(format!("token namespaces: {e}")))?,
            hash: hash
                .try_into()
                .map_err(|_| StoreError::Corrupt("token hash is not 32 bytes".into()))?,
            created_at: get(row, 4)?,
            expires_at: get(row, 5)?,
            worker_limits: get(row, 6)?,
        });
    }
    Ok(out)
}

/// Deletes a token; whether it existed.
pub(super) async fn delete(c: &impl GenericClient, name: &str) -> Result<bool, StoreError> {
    let n = c
        .execute("DELETE FROM api_tokens WHERE name = $1", &[&name])
        .await
        .map_err(db_err)?;
    Ok(n > 0)
}
