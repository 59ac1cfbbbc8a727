//! Small helpers shared by the examples: command-line options and MNIST evaluation.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use wgrad::nn::{DataLoader, Dataset, Module};
use wgrad::{Device, Result};

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

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

/// The bundled MNIST subset, relative to the workspace root.
pub const DEFAULT_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");

/// Accuracy of `model` on `data`, in evaluation mode and without autodiff.
pub fn evaluate(model: &dyn Module, data: &Dataset, device: &Device) -> Result<f32> {
    model.set_training(false);
    let mut correct = 0;
    wgrad::no_grad(|| -> Result<()> {
        for batch in DataLoader::new(data, 500).epoch(0) {
            let (x, y) = batch.to_device(device)?;
            correct += wgrad::nn::metrics::correct(&model.forward(&x), &y)?;
        }
        Ok(())
    })?;
    model.set_training(true);
    Ok(correct as f32 / data.len().max(1) as f32)
}

/// Prints an error and exits with status 1.
pub fn exit_on_error<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    })
}
