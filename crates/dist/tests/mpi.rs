//! Data-parallel training with ranks as processes of an MPI job. Run as a test
//! (`cargo test -p wgrad-dist --features mpi`), this binary starts
//! `mpirun --allow-run-as-root --oversubscribe -np 2` on itself for each scenario and checks
//! what the job did; under mpirun it is a rank and runs the scenario named by its argument.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_equal, equality, Net};
use wgrad_dist::Ddp;
use wgrad_graph::Device;
use wgrad_nn::DataParallel;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--rank-scenario") {
        Some(i) => rank(&args[i + 1]),
        None => drive(),
    }
}

/// What a rank does in each scenario.
fn rank(scenario: &str) {
    let ddp = Ddp::from_mpi().unwrap_or_else(|e| panic!("MPI: {e}"));
    let gpu = || -> Device {
        match wgrad_device::GpuBackend::device() {
            Ok(d) => d,
            Err(e) if std::env::var("WGRAD_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
                panic!("WGRAD_REQUIRE_GPU=1 but no GPU adapter could be opened: {e}")
            }
            Err(e) => {
                println!("skipped: no GPU adapter ({e})");
                std::process::exit(0)
            }
        }
    };
    match scenario {
        "equality-cpu" => {
            // The MLP: the CPU backend's convolutions would make this a minutes-long test,
            // and the averaging does not depend on the layers (the GPU run has the CNN).
            let report = equality(&ddp, &wgrad_cpu::CpuBackend::device(), Net::Mlp, 20, 32)
                .expect("equality");
            print!("rank {} cpu: ", ddp.rank());
            assert_equal(&report);
        }
        "equality-gpu" => {
            let dev = gpu();
            // Small buckets: the CNN's gradients take several all-reduces.
            let ddp = ddp.with_bucket_bytes(64 << 10);
            let report = equality(&ddp, &dev, Net::Cnn, 20, 32).expect("equality");
            println!("rank {} gpu: {:?}", ddp.rank(), ddp.stats());
            print!("rank {} gpu: ", ddp.rank());
            assert_equal(&report);
        }
        "trainer-resumes" => {
            // A directory per job; rank 0 names it, as a launcher's working directory would.
            let mut dir = std::env::temp_dir()
                .join(format!("wgrad-mpi-trainer-{}", std::process::id()))
                .into_os_string()
                .into_encoded_bytes();
            ddp.broadcast_bytes(&mut dir).expect("broadcast");
            let root = std::path::PathBuf::from(String::from_utf8(dir).expect("utf-8"));
            let dev = wgrad_cpu::CpuBackend::device();
            let straight = root.join("straight");
            let whole = common::fit_mlp(&ddp, &dev, &straight, 2, false).expect("fit");
            common::fit_mlp(&ddp, &dev, &root.join("split"), 1, false).expect("fit");
            let resumed =
                common::fit_mlp(&ddp, &dev, &root.join("split"), 2, true).expect("resume");
            assert_eq!(
                resumed.1,
                whole.1,
                "rank {}: resumed weights differ",
                ddp.rank()
            );
            assert_eq!(resumed.0.epochs.len(), 2);
            assert_eq!(resumed.0.epochs[1].val_loss, whole.0.epochs[1].val_loss);
            ddp.communicator().barrier().expect("barrier");
            if ddp.rank() == 0 {
                let files = std::fs::read_dir(&straight).expect("rank 0 wrote").count();
                assert_eq!(files, 2, "one checkpoint per epoch, from rank 0 alone");
                std::fs::remove_dir_all(&root).expect("clean up");
            }
            println!(
                "rank {}: resumed run equals the straight one (val_loss {:?})",
                ddp.rank(),
                whole.0.epochs[1].val_loss
            );
        }
        "rank-dies" | "rank-stalls" | "rank-panics" => {
            let comm = ddp.communicator();
            for step in 0..1000 {
                if step == 5 && comm.rank() == 1 {
                    match scenario {
                        "rank-dies" => std::process::exit(7),
                        "rank-stalls" => std::thread::sleep(Duration::from_secs(600)),
                        _ => panic!("rank 1 fails at step {step}"),
                    }
                }
                let mut v = [step as f32];
                comm.all_reduce_sum(&mut v).expect("all-reduce");
                std::thread::sleep(Duration::from_millis(20));
            }
            println!("rank {}: finished although rank 1 stopped", comm.rank());
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Starts the job for each scenario and checks its outcome.
fn drive() {
    let Some(mpirun) = find_mpirun() else {
        panic!(
            "mpirun was not found: install an MPI (Debian: openmpi-bin libopenmpi-dev) to run \
             the data-parallel tests"
        );
    };
    let mut failed = Vec::new();
    for (scenario, want_success, env) in [
        ("equality-cpu", true, None),
        ("equality-gpu", true, None),
        ("trainer-resumes", true, None),
        ("rank-dies", false, None),
        ("rank-panics", false, None),
        ("rank-stalls", false, Some(("WGRAD_DIST_TIMEOUT", "5"))),
    ] {
        let started = Instant::now();
        let (ok, output) = job(&mpirun, scenario, env, Duration::from_secs(300));
        let secs = started.elapsed().as_secs_f64();
        println!(
            "== {scenario}: {} in {secs:.1} s\n{output}",
            if ok { "succeeded" } else { "failed" }
        );
        let good = match scenario {
            _ if want_success => ok,
            // The job ends, with an error, long before the scenario's own end (1000 steps
            // of 20 ms, or a 600 s sleep).
            "rank-stalls" => !ok && secs < 60.0 && output.contains("has waited"),
            "rank-panics" => !ok && secs < 60.0 && output.contains("panicked; aborting"),
            _ => !ok && secs < 60.0 && !output.contains("finished although"),
        };
        if !good {
            failed.push(scenario);
        }
    }
    assert!(failed.is_empty(), "scenarios failed: {failed:?}");
    println!("all MPI scenarios passed");
}

/// Runs `mpirun -np 2` on this binary; returns whether every rank succeeded, and the
/// output. A job still running after `limit` is killed and counts as failed.
fn job(mpirun: &str, scenario: &str, env: Option<(&str, &str)>, limit: Duration) -> (bool, String) {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = Command::new(mpirun);
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
        .arg(exe)
        .args(["--rank-scenario", scenario])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("mpirun starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).ok();
    child.stderr.take().unwrap().read_to_string(&mut out).ok();
    match status {
        Some(s) => (s.success(), out),
        None => (false, format!("{out}\n(killed after {limit:?})")),
    }
}

fn find_mpirun() -> Option<String> {
    let ok = |c: &str| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ["mpirun", "mpiexec"]
        .into_iter()
        .find(|c| ok(c))
        .map(String::from)
}
