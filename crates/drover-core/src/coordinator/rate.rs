//! Queue rate limits (`drover queue set NAME --rate 100/s`): a token bucket per queue. It
//! holds at most one period's worth of starts (the burst) and refills continuously; a start
//! takes one token. A new limit starts full; after a restart the bucket starts empty, so a
//! restart never lets more through than the rate (the limit is durable, the level need not be).

use std::fmt;
use std::str::FromStr;

use crate::model::Micros;

/// `count` starts per `per_ms` milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per_ms: u64,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per_ms {
            1_000 => "s",
            60_000 => "m",
            3_600_000 => "h",
            _ => return write!(f, "{}/{}ms", self.count, self.per_ms),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl FromStr for Rate {
    type Err = String;
    /// `100/s`, `10/m`, `5/h` (1 to 1,000,000 starts per period).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a rate; write e.g. 100/s, 10/m or 5/h");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let per_ms = match unit.trim() {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        if !(1..=1_000_000).contains(&count) {
            return Err(format!("'{s}': 1 to 1000000 starts per period"));
        }
        Ok(Rate { count, per_ms })
    }
}

/// The bucket's level in credits: each microsecond adds `count`; a start costs `per_ms *
/// 1000` (one period in microseconds), so whole numbers suffice at any rate.
#[derive(Debug)]
pub(super) struct Bucket {
    rate: Rate,
    credits: u128,
    at: Micros,
}

impl Bucket {
    /// Full (a new limit) or empty (after a restart).
    pub(super) fn new(rate: Rate, now: Micros, full: bool) -> Bucket {
        let mut b = Bucket {
            rate,
            credits: 0,
            at: now,
        };
        if full {
            b.credits = b.capacity();
        }
        b
    }

    pub(super) fn rate(&self) -> Rate {
        self.rate
    }

    fn cost(&self) -> u128 {
        u128::from(self.rate.per_ms) * 1000
    }

    fn capacity(&self) -> u128 {
        self.cost() * u128::from(self.rate.count)
    }

    fn level(&self, now: Micros) -> u128 {
        let elapsed = (now - self.at).max(0) as u128;
        (self.credits + elapsed * u128::from(self.rate.count)).min(self.capacity())
    }

    /// Whole starts allowed at `now`.
    pub(super) fn available(&self, now: Micros) -> u32 {
        (self.level(now) / self.cost()) as u32
    }

    /// A start at `now` takes a token.
    pub(super) fn take(&mut self, now: Micros) {
        self.credits = self.level(now).saturating_sub(self.cost());
        self.at = now.max(self.at);
    }

    /// When the next whole token is there (`now` if one is).
    pub(super) fn next_token_at(&self, now: Micros) -> Micros {
        let (level, cost) = (self.level(now), self.cost());
        if level >= cost {
            return now;
        }
        let per = u128::from(self.rate.count);
        now + ((cost - level).div_ceil(per)) as Micros
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let r: Rate = "100/s".parse().unwrap();
        assert_eq!((r.count, r.per_ms), (100, 1000));
        assert_eq!(r.to_string(), "100/s");
        assert_eq!("5/h".parse::<Rate>().unwrap().to_string(), "5/h");
        for bad in ["", "100", "0/s", "1/d", "x/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_lets_through_its_burst_then_the_rate() {
        let rate: Rate = "10/s".parse().unwrap();
        let mut b = Bucket::new(rate, 0, true);
        assert_eq!(b.available(0), 10);
        for _ in 0..10 {
            b.take(0);
        }
        assert_eq!(b.available(0), 0);
        assert_eq!(b.next_token_at(0), 100_000, "one token every 100 ms");
        assert_eq!(b.available(250_000), 2);
        assert_eq!(b.available(10_000_000), 10, "never more than the burst");
        let empty = Bucket::new(rate, 5, false);
        assert_eq!(empty.available(5), 0);
    }
}
