//! Small helpers shared by the examples: command-line options, the MNIST CNN and MNIST
//! evaluation.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use wgrad::dist::Ddp;
use wgrad::nn::{
    io, Adam, DataParallel, Dataset, EarlyStopping, FitOptions, LrSchedule, Module, Optimizer,
    Sequential, Trainer,
};
use wgrad::{Device, Result};

/// The MNIST CNN (`nn::models::mnist_cnn`), weights drawn from `seed`.
pub fn mnist_cnn_model(dev: &Device, seed: u64) -> Result<Sequential> {
    wgrad::nn::models::mnist_cnn(dev, seed)
}

/// `--key value` options and `--flag` switches, with defaults and a usage line.
pub struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    /// Parses the process arguments; `spec` lists `(name, takes_value, help)`.
    pub fn parse(usage: &str, spec: &[(&str, bool, &str)]) -> Args {
        let mut values = HashMap::new();
        let mut flags = Vec::new();
        let mut it = std::env::args().skip(1);
        let help = || {
            eprintln!("{usage}\n\noptions:");
            for (name, takes, help) in spec {
                let arg = if *takes { " VALUE" } else { "" };
                eprintln!("  --{name}{arg:<8} {help}");
            }
        };
        while let Some(a) = it.next() {
            if a == "--help" || a == "-h" {
                help();
                std::process::exit(0);
            }
            let name = a.trim_start_matches("--");
            match spec.iter().find(|s| s.0 == name) {
                Some((_, true, _)) => match it.next() {
                    Some(v) => {
                        values.insert(name.to_string(), v);
                    }
                    None => {
                        eprintln!("error: --{name} needs a value");
                        std::process::exit(2);
                    }
                },
                Some((_, false, _)) => flags.push(name.to_string()),
                None => {
                    eprintln!("error: unknown option {a}");
                    help();
                    std::process::exit(2);
                }
            }
        }
        Args { values, flags }
    }

    /// The value of `--name` parsed as `T`, or `default`; a bad value exits with a message.
    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("error: --{name}: cannot parse {v:?}");
                std::process::exit(2);
            }),
        }
    }

    pub fn path(&self, name: &str, default: &str) -> PathBuf {
        PathBuf::from(self.values.get(name).map(String::as_str).unwrap_or(default))
    }

    /// The raw value of `--name`, if given.
    pub fn values_get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

/// The bundled MNIST subset, relative to the workspace root.
pub const DEFAULT_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");

/// With `--distributed`: this process as a rank of the MPI job it was started in
/// (`mpirun -np N …`); exits with a message when that fails (e.g. a build without MPI).
pub fn distributed(args: &Args) -> Option<Ddp> {
    if !args.flag("distributed") {
        return None;
    }
    let ddp = exit_on_error(Ddp::from_mpi());
    if ddp.is_main() {
        println!("distributed: {} rank(s) over MPI", ddp.world_size());
    }
    Some(ddp)
}

/// The device to train on: as `wgrad::default_device`, except that a rank of a distributed
/// run takes the GPU of its local rank on a machine with several (unless
/// `WGRAD_ADAPTER_INDEX` says otherwise).
pub fn device(ddp: Option<&Ddp>) -> Device {
    let local = ddp.and(wgrad::dist::local_rank());
    let cpu = std::env::var("WGRAD_DEVICE").is_ok_and(|v| v.eq_ignore_ascii_case("cpu"));
    match local {
        Some(rank) if !cpu => {
            let mut options = wgrad::device::AdapterOptions::from_env();
            options.index = options.index.or(Some(rank));
            wgrad::default_device_with(&options)
        }
        _ => wgrad::default_device(),
    }
}

/// Whether this process prints and writes files: not a rank other than 0.
pub fn is_main(ddp: Option<&Ddp>) -> bool {
    ddp.is_none_or(|d| d.is_main())
}

/// Like [`exit_on_error`] for a rank of a distributed run: an error ends every rank, since
/// the others would wait for this one.
pub fn exit_ranked<T>(r: Result<T>, ddp: Option<&Ddp>) -> T {
    match (r, ddp) {
        (Err(e), Some(d)) if d.world_size() > 1 => {
            eprintln!("error: rank {}: {e}", d.rank());
            d.abort(1)
        }
        (r, _) => exit_on_error(r),
    }
}

/// Prints an error and exits with status 1.
pub fn exit_on_error<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    })
}

/// Options shared by the MNIST examples: `(name, takes a value, help)`.
pub const TRAIN_OPTIONS: &[(&str, bool, &str)] = &[
    ("epochs", true, "training epochs (default 5)"),
    ("batch", true, "batch size (default 64)"),
    ("lr", true, "Adam learning rate (default 0.001)"),
    (
        "data",
        true,
        "directory with the MNIST IDX files (default: the bundled subset)",
    ),
    (
        "seed",
        true,
        "seed for initialisation, shuffling and dropout (default 0)",
    ),
    ("save", true, "where to save the trained weights"),
    (
        "eval",
        true,
        "load weights from FILE, evaluate them on the test split and exit",
    ),
    ("log", true, "write the per-epoch history as CSV"),
    (
        "plot",
        true,
        "draw loss and accuracy curves into a PNG file",
    ),
    (
        "checkpoint-dir",
        true,
        "save model and optimizer state after every epoch",
    ),
    (
        "resume",
        false,
        "continue from the last checkpoint in --checkpoint-dir",
    ),
    (
        "overwrite",
        false,
        "replace the checkpoints of another run in --checkpoint-dir",
    ),
    (
        "patience",
        true,
        "stop when validation loss has not improved for N epochs (default: off)",
    ),
    (
        "lr-schedule",
        true,
        "none, step (halve every 2 epochs) or cosine (default none)",
    ),
    (
        "check-finite",
        false,
        "stop at the first NaN or Inf loss or gradient",
    ),
    ("quiet", false, "no progress bar"),
    (
        "distributed",
        false,
        "train as one rank of an MPI job: mpirun -np N ... --distributed (--batch is per rank; needs --features mpi)",
    ),
];

/// Trains `model` on a training split (validating on the test split after every epoch) or, with
/// `--eval`, evaluates saved weights; then saves weights, history and chart as asked.
pub fn train_classifier(
    args: &Args,
    model: &dyn Module,
    dev: &Device,
    data: (&Dataset, &Dataset),
    (default_save, default_plot): (&str, Option<&str>),
    ddp: Option<&Ddp>,
) -> Result<()> {
    let main = is_main(ddp);
    let eval: String = args.get("eval", String::new());
    if !eval.is_empty() {
        io::load(&eval, model, None)?;
        let mut opt = Adam::new(model.parameters(), 0.0);
        let mut trainer = Trainer::new(model, &mut opt, dev);
        if let Some(d) = ddp {
            trainer = trainer.with_data_parallel(d);
        }
        let e = trainer.evaluate(data.1)?;
        if !main {
            return Ok(());
        }
        println!(
            "{eval}: test accuracy {:.2}% on {} images (loss {:.4})",
            e.confusion.accuracy() * 100.0,
            data.1.len(),
            e.loss
        );
        println!("{}", e.confusion);
        return Ok(());
    }
    if main {
        println!(
            "data: {} training and {} test images",
            data.0.len(),
            data.1.len()
        );
    }
    let lr: f32 = args.get("lr", 1e-3);
    let epochs: usize = args.get("epochs", 5);
    let batch_size: usize = args.get("batch", 64);
    if !(lr.is_finite() && lr >= 0.0) {
        usage_error(&format!(
            "--lr {lr}: give a finite learning rate of at least 0"
        ));
    }
    if epochs == 0 {
        usage_error(
            "--epochs 0 trains nothing; give at least 1 (--eval FILE evaluates saved weights)",
        );
    }
    if batch_size == 0 {
        usage_error("--batch 0: give a batch size of at least 1");
    }
    // Every output is checked before training, so that no run ends without its weights.
    let save = args.path("save", default_save);
    let plot = args.values_get("plot").or(default_plot);
    for path in [
        Some(save.as_path()),
        args.values_get("log").map(Path::new),
        plot.map(Path::new),
    ]
    .into_iter()
    .flatten()
    .filter(|_| main)
    {
        check_writable(path)?;
    }
    let mut opt = Adam::new(model.parameters(), lr);
    let options = FitOptions {
        epochs,
        batch_size,
        seed: args.get("seed", 0),
        quiet: args.flag("quiet"),
        check_finite: args.flag("check-finite"),
        checkpoint_dir: args.values_get("checkpoint-dir").map(PathBuf::from),
        resume: args.flag("resume"),
        overwrite: args.flag("overwrite"),
        verbose: true,
    };
    let mut trainer = Trainer::new(model, &mut opt, dev).with_options(options);
    if let Some(d) = ddp {
        trainer = trainer.with_data_parallel(d);
    }
    let patience: usize = args.get("patience", 0);
    if patience > 0 {
        trainer = trainer.with_callback(EarlyStopping::new(patience));
    }
    match args.get("lr-schedule", "none".to_string()).as_str() {
        "none" => {}
        "step" => {
            trainer = trainer.with_callback(LrSchedule::Step {
                base: lr,
                step: 2,
                gamma: 0.5,
            })
        }
        "cosine" => {
            trainer = trainer.with_callback(LrSchedule::Cosine {
                base: lr,
                min: 0.0,
                epochs,
            })
        }
        other => {
            eprintln!("error: --lr-schedule {other:?}: use none, step or cosine");
            std::process::exit(2);
        }
    }
    let history = trainer.fit(data.0, Some(data.1))?;
    drop(trainer);
    if !main {
        return Ok(());
    }
    if let Some(c) = &history.confusion {
        println!("{c}");
    }
    // The weights first: they are what the run was for.
    io::save(&save, model, Some(&opt as &dyn Optimizer))?;
    println!("saved weights to {}", save.display());
    if let Some(path) = args.values_get("log") {
        history.save_csv(path)?;
        println!("history written to {path}");
    }
    if let Some(path) = plot {
        wgrad::plot::save_history_png(&history, path)?;
        println!("chart written to {path}");
    }
    Ok(())
}

/// Prints a usage error and exits with status 2.
fn usage_error(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2);
}

/// Whether `path` can be written: an existing file is opened for writing (not truncated), a
/// new one is created and removed again.
pub fn check_writable(path: &Path) -> Result<()> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| wgrad::Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
