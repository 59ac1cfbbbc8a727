//! The differential fuzzer for long runs: `cargo run --release --example fuzz -- --cases N
//! --seed S [--from K]`. Random programs over wgrad's op set run on the GPU and on the CPU
//! backend in one process, outputs and gradients compared and every generated kernel
//! validated by naga; the first failure is shrunk and printed with its seed (exit status 1).

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/fuzzer/mod.rs"]
mod fuzzer;

fn main() {
    let args = common::Args::parse(
        "usage: fuzz [--cases N] [--seed S] [--from K]",
        &[
            ("cases", true, "number of cases (default 1000)"),
            ("seed", true, "seed of the run (default 1)"),
            ("from", true, "first case number (default 0)"),
        ],
    );
    let cases: usize = args.get("cases", 1000);
    let seed: u64 = args.get("seed", 1);
    let from: usize = args.get("from", 0);
    let mut fuzzer = match fuzzer::Fuzzer::new() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let started = std::time::Instant::now();
    let result = fuzzer.run(seed, from, cases, |case, stats| {
        if (case + 1) % 100 == 0 {
            eprintln!(
                "{} cases in {:.0} s ({} large, {} kernels validated)",
                stats.cases,
                started.elapsed().as_secs_f64(),
                stats.large,
                stats.sources_validated
            );
        }
    });
    match result {
        Ok(()) => println!(
            "{} cases of seed {seed} agree ({:?}) in {:.1} s",
            fuzzer.stats.cases,
            fuzzer.stats,
            started.elapsed().as_secs_f64()
        ),
        Err(failure) => {
            eprintln!("{failure}");
            std::process::exit(1);
        }
    }
}
