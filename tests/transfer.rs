//! Transfer learning: frozen parameters stay as they are through training steps, a weights
//! file lists its tensors, and weights load by name strictly or into a model that shares
//! only part of them.

use wgrad::nn::{io, Adam, Dense, Module, Optimizer, Rng, Sequential};
use wgrad::Tensor;

fn model(dev: &wgrad::Device, outputs: usize, seed: u64) -> Sequential {
    let mut rng = Rng::new(seed);
    Sequential::new()
        .add(Dense::new(dev, 3, 4, &mut rng).unwrap())
        .add(Dense::new(dev, 4, outputs, &mut rng).unwrap())
}

#[test]
fn frozen_layers_stay_while_the_rest_trains() {
    let dev = wgrad::cpu();
    let m = model(&dev, 2, 1);
    m.layers()[0].freeze();
    let before: Vec<Vec<f32>> = m.parameters().iter().map(|p| p.to_vec().unwrap()).collect();
    let mut opt = Adam::new(m.parameters(), 0.1);
    let x = Tensor::from_slice(&dev, &[0.5, -1.0, 2.0, 1.0, 0.0, -0.5], &[2, 3]).unwrap();
    let y = Tensor::from_u32(&dev, &[1, 0], &[2]).unwrap();
    for _ in 0..3 {
        let loss = wgrad::cross_entropy(&m.forward(&x), &y);
        opt.step_with(&loss.backward(), &[&loss]).unwrap();
    }
    let after: Vec<Vec<f32>> = m.parameters().iter().map(|p| p.to_vec().unwrap()).collect();
    assert_eq!(after[0], before[0], "a frozen weight changed");
    assert_eq!(after[1], before[1], "a frozen bias changed");
    assert_ne!(after[2], before[2], "a trainable weight did not change");
    let summary = m.summary();
    assert!(
        summary.contains("16 frozen") && summary.contains("10 trainable, 16 frozen"),
        "{summary}"
    );
    m.layers()[0].unfreeze();
    assert!(m.parameters().iter().all(|p| p.requires_grad()));
}

#[test]
fn weights_list_and_load_by_name_strictly_or_in_part() {
    let dev = wgrad::cpu();
    let dir = std::env::temp_dir().join(format!("wgrad-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.safetensors");
    let a = model(&dev, 2, 1);
    io::save(&path, &a, None).unwrap();
    let listed = io::inspect(&path).unwrap();
    let names: Vec<(&str, &[usize], &str)> = listed
        .iter()
        .map(|t| (t.name.as_str(), &t.shape[..], t.dtype.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("0.bias", &[4][..], "F32"),
            ("0.weight", &[3, 4][..], "F32"),
            ("1.bias", &[2][..], "F32"),
            ("1.weight", &[4, 2][..], "F32")
        ]
    );
    // A model with a new head: strictly, an error naming the tensor; in part, the shared
    // layer loads and the report names the rest.
    let b = model(&dev, 5, 2);
    let e = io::load_state_dict(&path, &b, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1.weight") || e.contains("1.bias"), "{e}");
    let report = io::load_state_dict(&path, &b, false).unwrap();
    assert_eq!(report.loaded, ["0.weight", "0.bias"]);
    assert_eq!(
        report.mismatched,
        [
            ("1.weight".to_string(), vec![4, 2], vec![4, 5]),
            ("1.bias".to_string(), vec![2], vec![5])
        ]
    );
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    assert_eq!(
        b.parameters()[0].to_vec().unwrap(),
        a.parameters()[0].to_vec().unwrap()
    );
    // Strictly into an identical model: everything loads.
    let c = model(&dev, 2, 3);
    let report = io::load_state_dict(&path, &c, true).unwrap();
    assert_eq!(report.loaded.len(), 4);
    assert_eq!(
        c.parameters()[3].to_vec().unwrap(),
        a.parameters()[3].to_vec().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sequential_layers_are_indexed_replaced_removed_and_sliced() {
    let dev = wgrad::cpu();
    let mut m = model(&dev, 2, 1);
    m.push(wgrad::nn::Activation::Relu);
    assert_eq!(m.len(), 3);
    assert_eq!(m.get(1).unwrap().describe(), "Dense(4 -> 2)");
    assert!(m.get(3).is_none());
    let old = m
        .replace(1, Dense::new(&dev, 4, 7, &mut Rng::new(5)).unwrap())
        .unwrap();
    assert_eq!(old.describe(), "Dense(4 -> 2)");
    let x = Tensor::from_slice(&dev, &[1.0, 2.0, 3.0], &[1, 3]).unwrap();
    assert_eq!(m.forward(&x).shape(), &[1, 7]);
    assert!(m
        .replace(9, Dense::new(&dev, 1, 1, &mut Rng::new(5)).unwrap())
        .is_err());
    let relu = m.remove(2).unwrap();
    assert_eq!(relu.describe(), "Relu");
    let rest = m.truncate_to(0..1).unwrap();
    assert_eq!((m.len(), rest.len()), (1, 1));
    assert_eq!(m.forward(&x).shape(), &[1, 4]);
    assert!(m.truncate_to(0..5).is_err() && m.remove(3).is_err());
}

#[test]
fn unflatten_splits_an_axis_and_checks_it() {
    use wgrad::nn::Unflatten;
    let dev = wgrad::cpu();
    let x = Tensor::from_slice(&dev, &[0.0; 2 * 12], &[2, 12]).unwrap();
    let u = Unflatten::new(1, &[3, 2, 2]);
    assert_eq!(u.forward(&x).shape(), &[2, 3, 2, 2]);
    assert_eq!(u.output_shape(&[5, 12]).unwrap(), [5, 3, 2, 2]);
    let e = wgrad::nn::check_input(&u, &[2, 10])
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not split"), "{e}");
}

#[test]
fn the_library_builds_the_source_materials_models() {
    let dev = wgrad::cpu();
    let cnn = wgrad::nn::models::mnist_cnn(&dev, 0).unwrap();
    // 320 + 18,496 + 36,928 (convolutions) + 36,928 + 650 (dense).
    assert_eq!(cnn.num_parameters(), 93_322);
    let x = Tensor::from_slice(&dev, &vec![0.5; 2 * 784], &[2, 1, 28, 28]).unwrap();
    assert_eq!(cnn.forward(&x).shape(), &[2, 10]);
    let mlp = wgrad::nn::models::mnist_mlp(&dev, 784, 0).unwrap();
    assert_eq!(mlp.num_parameters(), 784 * 128 + 128 + 128 * 10 + 10);
    assert_eq!(mlp.forward(&x).shape(), &[2, 10]);
}

/// Autoencoder data (images as their own targets) and the PNG grid of images.
#[test]
fn reconstruction_data_and_image_grids() {
    use wgrad::nn::{Dataset, Reconstruct, Samples, Targets};
    let dev = wgrad::cpu();
    let data = Dataset {
        images: (0..3 * 4).map(|i| i as f32 / 12.0).collect(),
        labels: vec![0, 1, 0],
        sample_shape: vec![1, 2, 2],
        classes: 2,
    };
    let r = Reconstruct(&data);
    assert_eq!((r.len(), r.targets()), (3, Targets::Values));
    let (x, y) = r.batch(&dev, &[2, 0]).unwrap();
    assert_eq!(x.shape(), &[2, 1, 2, 2]);
    assert_eq!(x.to_vec().unwrap(), y.to_vec().unwrap());
    assert_eq!(x.to_vec().unwrap()[..4], data.images[8..12]);
    let path = std::env::temp_dir().join(format!("wgrad-grid-{}.png", std::process::id()));
    let images = vec![vec![0.0; 4], vec![1.0; 4], vec![0.5; 4]];
    wgrad::plot::save_image_grid(&images, (2, 2), 1, 3, &path).unwrap();
    let png = std::fs::read(&path).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // Width and height from the IHDR chunk: 3 cells of 2·3 + 2 pixels, plus the border.
    let dim = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (3 * 8 + 2, 8 + 2));
    std::fs::remove_file(&path).unwrap();
}
