//! The classic XOR network: 2 inputs, 3 sigmoid hidden units, 1 sigmoid output, trained by
//! plain gradient descent (lr 0.1) on the four XOR points for 10,000 epochs.
//!
//! `cargo run --release --example xor`

#[path = "common/mod.rs"]
mod common;

use wgrad::nn::{Init, Optimizer, Rng, Sgd};
use wgrad::{Result, Tensor};

fn run() -> Result<()> {
    let args = common::Args::parse(
        "usage: xor [--epochs N] [--lr LR] [--seed S]",
        &[
            ("epochs", true, "training epochs (default 10000)"),
            ("lr", true, "learning rate (default 0.1)"),
            (
                "seed",
                true,
                "seed of the weight initialisation (default 1)",
            ),
        ],
    );
    let epochs: usize = args.get("epochs", 10_000);
    let lr: f32 = args.get("lr", 0.1);
    wgrad::init_logging();
    let dev = wgrad::default_device();
    println!("device: {}", dev.name());

    let x = Tensor::from_slice(&dev, &[0., 0., 0., 1., 1., 0., 1., 1.], &[4, 2])?;
    let y = Tensor::from_slice(&dev, &[0., 1., 1., 0.], &[4, 1])?;

    // Weights from a standard normal distribution, biases zero.
    let mut rng = Rng::new(args.get("seed", 1));
    let normal = |rng: &mut Rng, n| Init::Normal(1.0).sample(rng, 0, 0, n);
    let w1 = Tensor::param(&dev, &normal(&mut rng, 6), &[2, 3])?;
    let b1 = Tensor::param(&dev, &[0.0; 3], &[3])?;
    let w2 = Tensor::param(&dev, &normal(&mut rng, 3), &[3, 1])?;
    let b2 = Tensor::param(&dev, &[0.0], &[1])?;
    let mut opt = Sgd::new(vec![w1.clone(), b1.clone(), w2.clone(), b2.clone()], lr);

    let forward = || {
        let a1 = (x.matmul(&w1) + &b1).sigmoid();
        a1.matmul(&w2) + &b2 // logits; A2 = σ(Z2)
    };
    for epoch in 0..epochs {
        // With a sigmoid output, cross-entropy's gradient at the logits is (A2 - Y)/n.
        let loss = wgrad::bce_with_logits(&forward(), &y);
        let grads = loss.backward();
        opt.step_with(&grads, &[&loss])?;
        if epoch % 1000 == 0 || epoch + 1 == epochs {
            println!("epoch {epoch:>5}  loss {:.5}", loss.item()?);
        }
    }
    let pred = wgrad::no_grad(|| forward().sigmoid()).to_vec()?;
    let inputs = [[0, 0], [0, 1], [1, 0], [1, 1]];
    for (i, p) in inputs.iter().zip(&pred) {
        println!("{} xor {} -> {p:.4} (rounds to {})", i[0], i[1], p.round());
    }
    Ok(())
}

fn main() {
    common::exit_on_error(run());
}
