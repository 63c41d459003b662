//! Retry backoff: exponential with jitter, so a burst of failures does not retry in lockstep.

use rand::Rng;

/// Delay before the retry that follows attempt number `attempt` (1-based): `base * 2^(attempt-1)`,
/// capped at `cap_ms`, then drawn uniformly from its upper half ("equal jitter").
pub fn backoff_ms<R: Rng>(base_ms: u64, attempt: u32, cap_ms: u64, rng: &mut R) -> u64 {
    let exp = base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(40))
        .min(cap_ms);
    if exp < 2 {
        return exp;
    }
    rng.random_range(exp / 2..=exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn grows_exponentially_within_jitter_and_cap() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for attempt in 1..=20u32 {
            let d = backoff_ms(100, attempt, 10_000, &mut rng);
            let exp = (100u64 << (attempt - 1)).min(10_000);
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempt}: {d} not in [{}, {exp}]",
                exp / 2
            );
        }
        assert_eq!(backoff_ms(0, 3, 1000, &mut rng), 0);
    }
}
