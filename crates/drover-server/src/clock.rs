//! The one place that reads the wall clock (the server's and the CLI's); the core only ever
//! sees the values.

use std::time::{SystemTime, UNIX_EPOCH};

use drover_core::Micros;

/// Microseconds since the Unix epoch (0 for a clock set before it).
pub fn now_micros() -> Micros {
    // The one wall-clock read; clippy.toml bans it everywhere else.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as Micros)
        .unwrap_or(0)
}
