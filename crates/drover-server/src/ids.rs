//! Ids the server mints (tasks, workflows, webhooks): UUIDv7 from the `now` its caller read
//! from `clock.rs`, so no id reads the clock by itself. One shared counter keeps ids minted
//! in the same millisecond in order and the rest random, as `Uuid::now_v7` did.

use std::sync::Mutex;

use drover_core::{Micros, TaskId};
use uuid::{ContextV7, Timestamp, Uuid};

static CONTEXT: Mutex<ContextV7> = Mutex::new(ContextV7::new());

/// A UUIDv7 whose timestamp is `now` (µs since the epoch, 0 if before it).
pub fn uuid_at(now: Micros) -> Uuid {
    uuid_in(&CONTEXT.lock().unwrap_or_else(|e| e.into_inner()), now)
}

/// The context never goes back in time: after a later `now`, ids keep its timestamp.
fn uuid_in(context: &ContextV7, now: Micros) -> Uuid {
    let us = u64::try_from(now).unwrap_or(0);
    let nanos = (us % 1_000_000) as u32 * 1_000;
    Uuid::new_v7(Timestamp::from_unix(context, us / 1_000_000, nanos))
}

pub fn task_id_at(now: Micros) -> TaskId {
    TaskId(uuid_at(now).as_u128())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_given_time_and_sort_by_creation() {
        // A context of its own: the shared one may have seen a later time in another test.
        let context = ContextV7::new();
        let now: Micros = 1_700_000_000_123_456;
        let ids: Vec<Uuid> = (0..1000).map(|_| uuid_in(&context, now)).collect();
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            let (secs, nanos) = id.get_timestamp().expect("v7").to_unix();
            assert_eq!((secs, nanos / 1_000_000), (1_700_000_000, 123));
        }
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "same millisecond, in order"
        );
        assert!(uuid_in(&context, now + 1_000) > ids[999]);
        assert!(
            uuid_in(&context, now - 1_000) > ids[999],
            "never back in time"
        );
    }
}
