//! Bounds on every input. Requests beyond them are refused with a 4xx, never truncated.

/// Request body size for REST.
pub const MAX_BODY_BYTES: usize = 16 << 20;
pub const MAX_BATCH: usize = 10_000;
pub const MAX_ARGV: usize = 4096;
pub const MAX_ENV: usize = 1024;
/// Secret environment variables of one task, and the bytes of one value.
pub const MAX_SECRETS: usize = 100;
pub const MAX_SECRET_BYTES: usize = 32 << 10;
/// argv plus env plus secret env, in bytes.
pub const MAX_SPEC_BYTES: usize = 256 << 10;
/// Names: queues, kinds, labels, idempotency keys.
pub const MAX_NAME: usize = 200;
pub const MAX_RETRIES: u32 = 100;
pub const MAX_DURATION_MS: u64 = 365 * 24 * 3600 * 1000;
pub const MAX_PAGE: usize = 1000;
