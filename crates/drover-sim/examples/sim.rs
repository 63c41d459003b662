//! `cargo run --release -p drover-sim --example sim -- [FLAGS]`: the flags of `drover sim`
//! without the CLI, for measuring. See docs/placement.md.

use drover_sim::*;

fn main() {
    let mut opts = SimOptions::default();
    let mut json = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let fail = |m: String| -> ! {
        eprintln!("sim: {m}");
        std::process::exit(2)
    };
    while i < args.len() {
        let flag = args[i].as_str();
        let val = || {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| fail(format!("{flag} needs a value")))
        };
        match flag {
            "--strategy" => {
                opts.strategies = SimStrategy::parse_list(&val()).unwrap_or_else(|e| fail(e.0))
            }
            "--workers" => {
                opts.workers = WorkerGroup::parse_list(&val()).unwrap_or_else(|e| fail(e.0))
            }
            "--tasks" => {
                opts.tasks = val()
                    .parse()
                    .unwrap_or_else(|_| fail("--tasks: a number".into()))
            }
            "--arrival" => {
                opts.arrival = Some(
                    val()
                        .parse()
                        .unwrap_or_else(|_| fail("--arrival: a rate".into())),
                )
            }
            "--duration" => {
                opts.duration = val().parse().unwrap_or_else(|e: OptionError| fail(e.0))
            }
            "--fail-rate" => {
                opts.fail_rate = val()
                    .parse()
                    .unwrap_or_else(|_| fail("--fail-rate: a number".into()))
            }
            "--prefetch" => {
                opts.prefetch = val()
                    .parse()
                    .unwrap_or_else(|_| fail("--prefetch: a number".into()))
            }
            "--seed" => {
                opts.seed = val()
                    .parse()
                    .unwrap_or_else(|_| fail("--seed: a number".into()))
            }
            "-o" => json = val() == "json",
            // Tuning knobs for experiments (not flags of `drover sim`).
            "--alpha" => opts.adaptive.alpha = val().parse().unwrap(),
            "--explore" => opts.adaptive.explore_bonus = val().parse().unwrap(),
            "--queue-weight" => opts.adaptive.queue_weight = val().parse().unwrap(),
            "--hold-back" => opts.adaptive.hold_back = val() == "on",
            other => fail(format!("unknown flag {other}")),
        }
        i += 2;
    }
    let reports = run(&opts);
    if json {
        print!("{}", render_json(&reports));
    } else {
        print!("{}", render_text(&opts, &reports));
    }
}
