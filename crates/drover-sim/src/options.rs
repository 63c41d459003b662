//! What a simulation runs: parsed from the `drover sim` flags.

use std::fmt;
use std::str::FromStr;

use drover_core::placement::AdaptiveConfig;
use drover_core::Strategy;

/// The prefetch a worker uses when `--prefetch` is not given: the worker agent's own default
/// (`drover-worker` `WorkerConfig::default().prefetch`), chosen from the tables in
/// docs/placement.md.
pub const DEFAULT_PREFETCH: u32 = 0;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct OptionError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, OptionError> {
    Err(OptionError(msg.into()))
}

/// A placement rule to simulate: one of the core's strategies, or the `oracle` baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimStrategy {
    Core(Strategy),
    /// Shortest expected delay from the workers' true speeds (which the real strategies are
    /// never told), with the same waiting rule as `adaptive`.
    Oracle,
}

impl SimStrategy {
    /// What `--strategy all` runs: every strategy but `broadcast` (which multiplies the work
    /// by the number of workers), then `oracle`.
    pub fn all() -> Vec<SimStrategy> {
        Strategy::ALL
            .into_iter()
            .filter(|s| *s != Strategy::Broadcast)
            .map(SimStrategy::Core)
            .chain([SimStrategy::Oracle])
            .collect()
    }

    /// `all`, one name, or a comma list.
    pub fn parse_list(s: &str) -> Result<Vec<SimStrategy>, OptionError> {
        if s.trim() == "all" {
            return Ok(SimStrategy::all());
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let st: SimStrategy = part.parse()?;
            if !out.contains(&st) {
                out.push(st);
            }
        }
        if out.is_empty() {
            return err("--strategy: no strategy given");
        }
        Ok(out)
    }
}

impl fmt::Display for SimStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimStrategy::Core(s) => s.fmt(f),
            SimStrategy::Oracle => f.write_str("oracle"),
        }
    }
}

impl FromStr for SimStrategy {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "oracle" {
            return Ok(SimStrategy::Oracle);
        }
        s.parse::<Strategy>()
            .map(SimStrategy::Core)
            .map_err(|e| OptionError(format!("--strategy: {e}, oracle or all")))
    }
}

/// `COUNTxSPEED[:SLOTS][/FAIL]`: COUNT workers working at SPEED (1 = the nominal rate), with
/// SLOTS slots each (default 1), failing a FAIL fraction of attempts (default: `--fail-rate`).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerGroup {
    pub count: u32,
    pub speed: f64,
    pub slots: u32,
    pub fail_rate: Option<f64>,
}

impl WorkerGroup {
    /// A comma list of groups, e.g. `4x1,4x2,4x4:2/0.05`.
    pub fn parse_list(s: &str) -> Result<Vec<WorkerGroup>, OptionError> {
        let v: Vec<WorkerGroup> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if v.is_empty() {
            return err("--workers: no worker group given (e.g. 4x1,4x2,4x4:2)");
        }
        Ok(v)
    }

    pub fn list_to_string(groups: &[WorkerGroup]) -> String {
        groups
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for WorkerGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.count, self.speed)?;
        if self.slots != 1 {
            write!(f, ":{}", self.slots)?;
        }
        if let Some(p) = self.fail_rate {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

impl FromStr for WorkerGroup {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            OptionError(format!(
                "--workers: '{s}': {why} (expected COUNTxSPEED[:SLOTS][/FAIL], e.g. 4x2:2/0.05)"
            ))
        };
        let (rest, fail_rate) = match s.split_once('/') {
            Some((r, p)) => {
                let p: f64 = p.trim().parse().map_err(|_| bad("FAIL is not a number"))?;
                if !(0.0..1.0).contains(&p) {
                    return Err(bad("FAIL must be in [0, 1)"));
                }
                (r, Some(p))
            }
            None => (s, None),
        };
        let (rest, slots) = match rest.split_once(':') {
            Some((r, n)) => (
                r,
                n.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad("SLOTS must be a whole number above 0"))?,
            ),
            None => (rest, 1),
        };
        let (count, speed) = rest.split_once('x').ok_or_else(|| bad("missing 'x'"))?;
        let count = count
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad("COUNT must be a whole number above 0"))?;
        let speed: f64 = speed
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| bad("SPEED must be a number above 0"))?;
        Ok(WorkerGroup {
            count,
            speed,
            slots,
            fail_rate,
        })
    }
}

/// Task durations at speed 1, in simulated seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DurationDist {
    /// `fixed:M`
    Fixed(f64),
    /// `exp:M`: exponential with mean M.
    Exp(f64),
    /// `pareto:A`: Pareto with shape A (> 1), scaled to mean 1.
    Pareto(f64),
}

impl DurationDist {
    pub fn mean(self) -> f64 {
        match self {
            DurationDist::Fixed(m) | DurationDist::Exp(m) => m,
            DurationDist::Pareto(_) => 1.0,
        }
    }

    /// A draw from the distribution, given a uniform `u` in [0, 1).
    pub fn sample(self, u: f64) -> f64 {
        match self {
            DurationDist::Fixed(m) => m,
            DurationDist::Exp(m) => -m * (1.0 - u).ln(),
            DurationDist::Pareto(a) => {
                let xm = (a - 1.0) / a;
                xm / (1.0 - u).powf(1.0 / a)
            }
        }
    }
}

impl fmt::Display for DurationDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationDist::Fixed(m) => write!(f, "fixed:{m}"),
            DurationDist::Exp(m) => write!(f, "exp:{m}"),
            DurationDist::Pareto(a) => write!(f, "pareto:{a}"),
        }
    }
}

impl FromStr for DurationDist {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, v) = s.split_once(':').ok_or_else(|| {
            OptionError(format!(
                "--duration: '{s}': expected fixed:M, exp:M or pareto:A"
            ))
        })?;
        let v: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| {
                OptionError(format!("--duration: '{s}': '{v}' is not a number above 0"))
            })?;
        match name.trim() {
            "fixed" => Ok(DurationDist::Fixed(v)),
            "exp" => Ok(DurationDist::Exp(v)),
            "pareto" if v > 1.0 => Ok(DurationDist::Pareto(v)),
            "pareto" => err(format!(
                "--duration: '{s}': a Pareto shape must be above 1 for the mean to exist"
            )),
            other => err(format!(
                "--duration: unknown distribution '{other}' (fixed:M, exp:M or pareto:A)"
            )),
        }
    }
}

/// Everything a simulation run needs; `Default` is a small heterogeneous cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    pub strategies: Vec<SimStrategy>,
    pub workers: Vec<WorkerGroup>,
    pub tasks: usize,
    /// Tasks per simulated second (Poisson arrivals); `None`: all submitted at time 0.
    pub arrival: Option<f64>,
    pub duration: DurationDist,
    /// Fraction of attempts that fail, for groups without their own `/FAIL`.
    pub fail_rate: f64,
    /// Assignments a worker may hold beyond its slots.
    pub prefetch: u32,
    pub seed: u64,
    /// Retries after a failed attempt (each task has `1 + retries` attempts).
    pub retries: u32,
    /// Distinct routing keys drawn for the tasks (used by `consistent_hash`).
    pub keys: u32,
    /// Check the coordinator's invariants after every step (slow; for tests).
    pub check_invariants: bool,
    /// The adaptive model's tuning (the server's default unless changed; not a CLI flag).
    pub adaptive: AdaptiveConfig,
    /// Queues with weights; task `i` goes to queue `i mod n` (empty: one queue).
    pub queues: Vec<crate::queues::QueueWeight>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            strategies: SimStrategy::all(),
            workers: WorkerGroup::parse_list("4x1,4x2,4x4").expect("valid"),
            tasks: 10_000,
            arrival: None,
            duration: DurationDist::Exp(1.0),
            fail_rate: 0.0,
            prefetch: DEFAULT_PREFETCH,
            seed: 1,
            retries: 2,
            keys: 1000,
            check_invariants: false,
            adaptive: AdaptiveConfig::default(),
            queues: Vec::new(),
        }
    }
}

impl SimOptions {
    /// Tasks per second the cluster completes at full use: Σ count × speed × slots / mean.
    pub fn capacity(&self) -> f64 {
        let work: f64 = self
            .workers
            .iter()
            .map(|g| g.count as f64 * g.speed * g.slots as f64)
            .sum();
        work / self.duration.mean()
    }

    /// Offered load (arrival rate / capacity), when arrivals are given.
    pub fn load(&self) -> Option<f64> {
        self.arrival.map(|r| r / self.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let g = WorkerGroup::parse_list("4x1,4x2,4x4:2,2x0.5/0.1").unwrap();
        assert_eq!(g[2].slots, 2);
        assert_eq!(g[3].speed, 0.5);
        assert_eq!(g[3].fail_rate, Some(0.1));
        assert_eq!(WorkerGroup::list_to_string(&g), "4x1,4x2,4x4:2,2x0.5/0.1");
        assert!("4y1".parse::<WorkerGroup>().is_err());
        assert!("0x1".parse::<WorkerGroup>().is_err());
        assert!("4x1:0".parse::<WorkerGroup>().is_err());
        assert_eq!(
            "exp:2".parse::<DurationDist>().unwrap(),
            DurationDist::Exp(2.0)
        );
        assert!("pareto:1".parse::<DurationDist>().is_err());
        assert!("normal:1".parse::<DurationDist>().is_err());
        assert_eq!(SimStrategy::parse_list("all").unwrap().len(), 10);
        assert_eq!(
            SimStrategy::parse_list("adaptive,oracle").unwrap(),
            vec![SimStrategy::Core(Strategy::Adaptive), SimStrategy::Oracle]
        );
        assert!(SimStrategy::parse_list("fastest").is_err());
    }

    #[test]
    fn pareto_is_scaled_to_mean_one() {
        let d = DurationDist::Pareto(2.5);
        let n = 200_000;
        let mean: f64 = (0..n)
            .map(|i| d.sample((i as f64 + 0.5) / n as f64))
            .sum::<f64>()
            / n as f64;
        assert!((mean - 1.0).abs() < 0.02, "{mean}");
    }
}
