//! Bounds on every input. Requests beyond them are refused with a 4xx, never truncated.

/// Request body size for REST.
pub const MAX_BODY_BYTES: usize = 16 << 20;
pub const MAX_BATCH: usize = 10_000;
pub const MAX_ARGV: usize = 4096;
pub const MAX_ENV: usize = 1024;
/// Secret environment variables of one task, and the characters of one value.
pub const MAX_SECRETS: usize = 100;
pub const MAX_SECRET_BYTES: usize = 32 << 10;
/// argv plus env plus secret env, in bytes.
pub const MAX_SPEC_BYTES: usize = 256 << 10;
/// A handler task's payload and a handler's result, as compact JSON.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
pub const MAX_RESULT_BYTES: usize = 1 << 20;
/// Names: queues, kinds, labels, idempotency keys.
pub const MAX_NAME: usize = 200;
pub const MAX_RETRIES: u32 = 100;
/// The largest `max_concurrent` of a concurrency key.
pub const MAX_KEY_CONCURRENCY: u32 = 100_000;
pub const MAX_DURATION_MS: u64 = 365 * 24 * 3600 * 1000;
pub const MAX_PAGE: usize = 1000;
/// The largest backlog limit (`max_queued`) of a queue or a server.
pub const MAX_QUEUED: u64 = 1_000_000_000;

/// Longest worker name.
pub const MAX_WORKER_NAME: usize = 63;

/// Worker names: `[A-Za-z0-9][A-Za-z0-9._-]{0,62}`, so a name is safe in a log line, a URL path
/// and a label (no spaces, no control characters, no newline forging log lines).
pub fn check_worker_name(name: &str) -> Result<(), String> {
    let ok_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let ok_rest = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok_first && ok_rest && name.len() <= MAX_WORKER_NAME {
        return Ok(());
    }
    Err(format!(
        "worker name {:?} is not allowed: 1 to {MAX_WORKER_NAME} characters of A-Z a-z 0-9 . _ -, \
         starting with a letter or digit",
        name.chars().take(80).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::check_worker_name;

    #[test]
    fn worker_names_are_a_safe_character_set() {
        for ok in [
            "w1",
            "local-1",
            "host.example.com-1234",
            "A_b",
            &"x".repeat(63),
        ] {
            assert_eq!(check_worker_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-w",
            ".w",
            "_w",
            "w 1",
            "w\n1",
            "w\u{0}",
            "w/1",
            "wé",
            "w:1",
            &"x".repeat(64),
        ] {
            assert!(check_worker_name(bad).is_err(), "{bad:?}");
        }
    }
}
