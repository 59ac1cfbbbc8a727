//! The page's run, natively on the CPU backend: one epoch of the MLP reaches the accuracy the
//! browser test asks for, and reports what the page draws.

use wgrad_web::{train, Event, Options, SHOWN};

#[test]
fn one_epoch_of_the_page_run_on_the_cpu_backend() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let data = wgrad_nn::Mnist::load(dir).unwrap();
    let dev = wgrad_cpu::CpuBackend::device();
    let (mut steps, mut epochs) = (Vec::new(), Vec::new());
    let mut record = |e| match e {
        Event::Step { step, loss } => steps.push((step, loss)),
        Event::Epoch {
            accuracy,
            predictions,
            ..
        } => epochs.push((accuracy, predictions)),
    };
    pollster::block_on(train(&dev, &data, &Options::default(), &mut record)).unwrap();
    // The first 20 steps, then every 10th of the 125.
    assert_eq!(steps.len(), 20 + 10);
    assert!(steps[19].1 < steps[0].1);
    let (accuracy, predictions) = &epochs[0];
    assert!(*accuracy >= 0.85, "accuracy {accuracy}");
    assert_eq!(predictions.len(), SHOWN);
    assert!(predictions.iter().all(|&p| p < 10));
}
