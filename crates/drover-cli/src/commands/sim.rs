//! `drover sim`: the real coordinator against simulated workers, on a simulated clock.

use drover_sim::{DurationDist, SimOptions, SimStrategy, WorkerGroup};

use crate::cli::SimArgs;
use crate::exit::usage;
use crate::output::{self, Format};

pub fn run(args: SimArgs) -> anyhow::Result<u8> {
    let mut opts = SimOptions {
        strategies: SimStrategy::parse_list(&args.strategy).map_err(|e| usage(e.0))?,
        workers: WorkerGroup::parse_list(&args.workers).map_err(|e| usage(e.0))?,
        tasks: args.tasks,
        arrival: args.arrival,
        duration: args
            .duration
            .parse::<DurationDist>()
            .map_err(|e| usage(e.0))?,
        fail_rate: args.fail_rate,
        seed: args.seed,
        ..SimOptions::default()
    };
    if let Some(p) = args.prefetch {
        opts.prefetch = p;
    }
    if let Some(q) = &args.queues {
        opts.queues = drover_sim::QueueWeight::parse_list(q).map_err(|e| usage(e.0))?;
    }
    if opts.tasks == 0 {
        return Err(usage("--tasks must be at least 1"));
    }
    if !(0.0..1.0).contains(&opts.fail_rate) {
        return Err(usage("--fail-rate is a probability below 1, e.g. 0.05"));
    }
    if opts.arrival.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(usage(
            "--arrival is a positive rate in tasks per simulated second",
        ));
    }
    let reports = drover_sim::run(&opts);
    match args.output {
        Format::Json => output::text(&drover_sim::render_json(&reports))?,
        Format::Text => output::text(&drover_sim::render_text(&opts, &reports))?,
    }
    Ok(0)
}
