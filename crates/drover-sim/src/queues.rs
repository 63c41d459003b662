//! Several queues with weights (`drover sim --queues a:1,b:2,c:5`): task `i` goes to queue
//! `i mod n`, each queue is configured with its weight, and the report says each queue's share
//! of the starts while every queue still had tasks waiting (the window where the weights
//! decide), beside its weight's share.

use serde::Serialize;

use drover_core::Micros;

use crate::options::OptionError;

/// `NAME:WEIGHT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueWeight {
    pub name: String,
    pub weight: u32,
}

impl QueueWeight {
    /// `a:1,b:2,c:5` (a missing weight is 1).
    pub fn parse_list(s: &str) -> Result<Vec<QueueWeight>, OptionError> {
        let mut out: Vec<QueueWeight> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (name, weight) = match item.split_once(':') {
                Some((n, w)) => (n, w.parse::<u32>().ok()),
                None => (item, Some(1)),
            };
            let weight = weight
                .filter(|w| (1..=drover_core::MAX_WEIGHT).contains(w))
                .ok_or_else(|| {
                    OptionError(format!(
                        "--queues: '{item}' is not NAME:WEIGHT with a weight of 1 to {}",
                        drover_core::MAX_WEIGHT
                    ))
                })?;
            if name.is_empty() || out.iter().any(|q| q.name == name) {
                return Err(OptionError(format!(
                    "--queues: empty or repeated name in '{s}'"
                )));
            }
            out.push(QueueWeight {
                name: name.into(),
                weight,
            });
        }
        Ok(out)
    }
}

/// One queue's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueReport {
    pub name: String,
    pub weight: u32,
    /// Its weight over the sum of the weights.
    pub weight_share: f64,
    /// Its starts over all starts, while every queue had tasks waiting.
    pub start_share: f64,
    /// Mean submit → finish of its tasks, simulated seconds.
    pub mean: f64,
}

/// The queue of task `i`.
pub fn queue_of(queues: &[QueueWeight], i: usize) -> Option<&QueueWeight> {
    (!queues.is_empty()).then(|| &queues[i % queues.len()])
}

/// Shares and means per queue from each task's first start and end (`None`: never).
pub fn report(
    queues: &[QueueWeight],
    submitted: &[Micros],
    started: &[Option<Micros>],
    ended: &[Option<(Micros, bool)>],
) -> Vec<QueueReport> {
    let n = queues.len();
    if n == 0 {
        return Vec::new();
    }
    // The window closes at the first instant some queue has nothing left to start.
    let last_start = |q: usize| {
        (q..started.len())
            .step_by(n)
            .filter_map(|i| started[i])
            .max()
            .unwrap_or(0)
    };
    let window = (0..n).map(last_start).min().unwrap_or(0);
    let in_window = |q: usize| {
        (q..started.len())
            .step_by(n)
            .filter(|&i| started[i].is_some_and(|s| s < window))
            .count()
    };
    let counts: Vec<usize> = (0..n).map(in_window).collect();
    let total = counts.iter().sum::<usize>().max(1) as f64;
    let weights: u32 = queues.iter().map(|q| q.weight).sum();
    queues
        .iter()
        .enumerate()
        .map(|(q, w)| {
            let times: Vec<f64> = (q..ended.len())
                .step_by(n)
                .filter_map(|i| ended[i].map(|(at, _)| (at - submitted[i]) as f64 / 1e6))
                .collect();
            QueueReport {
                name: w.name.clone(),
                weight: w.weight,
                weight_share: round4(w.weight as f64 / weights as f64),
                start_share: round4(counts[q] as f64 / total),
                mean: round4(times.iter().sum::<f64>() / times.len().max(1) as f64),
            }
        })
        .collect()
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The per-queue table of the text report.
pub fn render(out: &mut String, strategy: &str, queues: &[QueueReport]) {
    use std::fmt::Write as _;
    for q in queues {
        let _ = writeln!(
            out,
            "{:<16} {:<10} {:>6} {:>12.3} {:>12.3} {:>10.3}",
            strategy, q.name, q.weight, q.weight_share, q.start_share, q.mean
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_weights() {
        let q = QueueWeight::parse_list("a:1,b:3,c").unwrap();
        assert_eq!(q.iter().map(|q| q.weight).collect::<Vec<_>>(), [1, 3, 1]);
        assert!(QueueWeight::parse_list("a:0").is_err());
        assert!(QueueWeight::parse_list("a:1,a:2").is_err());
    }
}
