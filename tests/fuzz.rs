//! The differential fuzzer (see `tests/fuzzer/mod.rs`): 500 seeded random programs over the op
//! set, large shapes among them, each on the GPU and on the CPU backend in one process,
//! outputs and gradients compared, every generated kernel validated by naga.
//! `WGRAD_FUZZ_CASES` and `WGRAD_FUZZ_SEED` change the run; `cargo run --release --example
//! fuzz -- --cases N --seed S` runs long ones.

mod common;
mod fuzzer;

#[test]
fn gpu_and_cpu_agree_on_random_programs() {
    if common::gpu().is_none() {
        return;
    }
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (cases, seed) = (
        var("WGRAD_FUZZ_CASES", 500) as usize,
        var("WGRAD_FUZZ_SEED", 1),
    );
    let mut fuzzer = fuzzer::Fuzzer::new().expect("a GPU adapter, since gpu() found one");
    let started = std::time::Instant::now();
    if let Err(failure) = fuzzer.run(seed, 0, cases, |_, _| {}) {
        panic!("{failure}");
    }
    let s = &fuzzer.stats;
    eprintln!(
        "fuzz: {} cases ({} large, {} expected index errors, {} with gradients not compared at a \
         kink) in {:.1} s; {} generated kernels validated by naga",
        s.cases,
        s.large,
        s.expected_errors,
        s.ambiguous_gradients,
        started.elapsed().as_secs_f64(),
        s.sources_validated
    );
    assert_eq!(s.cases, cases);
    let fusion = std::env::var("WGRAD_FUSION").map_or(true, |v| v != "0");
    assert!(
        !fusion || s.sources_validated > 0,
        "no generated kernel was validated"
    );
}
