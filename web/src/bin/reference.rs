//! The page's first training steps on the CPU backend, for the browser test to compare with:
//! `reference OUT.json [mlp|cnn]` writes `{"model": …, "losses": [...]}` for the page's
//! default options (seed 0, batch 64, Adam 1e-3).

use std::path::Path;

use wgrad_web::{train, Event, Model, Options};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(out), model) = (args.get(1), args.get(2).map_or("mlp", String::as_str)) else {
        eprintln!("usage: reference OUT.json [mlp|cnn]");
        std::process::exit(2);
    };
    let data_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let data = wgrad_nn::Mnist::load(&data_dir).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    let options = Options {
        model: if model == "cnn" {
            Model::Cnn
        } else {
            Model::Mlp
        },
        max_steps: Some(20),
        ..Options::default()
    };
    let dev = wgrad_cpu::CpuBackend::device();
    let mut losses = Vec::new();
    let mut record = |e| {
        if let Event::Step { loss, .. } = e {
            losses.push(loss);
        }
    };
    if let Err(e) = pollster::block_on(train(&dev, &data, &options, &mut record)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    let list: Vec<String> = losses.iter().map(|l| format!("{l}")).collect();
    let json = format!(
        "{{\"model\": \"{model}\", \"losses\": [{}]}}\n",
        list.join(", ")
    );
    if let Err(e) = std::fs::write(out, json) {
        eprintln!("error: cannot write {out}: {e}");
        std::process::exit(1);
    }
    println!("wrote the first {} losses to {out}", losses.len());
}
