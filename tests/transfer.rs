//! Transfer learning: frozen parameters stay as they are through training steps, a weights
//! file lists its tensors, and weights load by name strictly or into a model that shares
//! only part of them.

mod common;

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
    // The optimizer made no state for the frozen parameters (0 and 1), only for the others.
    let state: Vec<String> = opt.state_dict().into_iter().map(|(n, _)| n).collect();
    assert!(!state.iter().any(|n| n == "m.0" || n == "v.1"), "{state:?}");
    assert!(
        state.iter().any(|n| n == "m.2") && state.iter().any(|n| n == "v.3"),
        "{state:?}"
    );
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
            ("0.weight", &[4, 3][..], "F32"),
            ("1.bias", &[2][..], "F32"),
            ("1.weight", &[2, 4][..], "F32")
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
            ("1.weight".to_string(), vec![2, 4], vec![5, 4]),
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

/// A weights file as wgrad wrote them before `Dense` took PyTorch's layout: format version 1
/// (no `format_version` in the header), `Dense` weights `[in, out]`.
fn version_1_file(model: &Sequential, optimizer: Option<&dyn Optimizer>) -> Vec<u8> {
    let mut named = model.named_parameters();
    let mut meta = std::collections::HashMap::from([("format".to_string(), "wgrad".to_string())]);
    if let Some(opt) = optimizer {
        meta.insert("optimizer".into(), opt.kind().into());
        named.extend(
            opt.state_dict()
                .into_iter()
                .map(|(n, t)| (format!("optimizer.{n}"), t)),
        );
    }
    let transposed = model.legacy_transposed();
    let mut data = Vec::new();
    for (name, t) in &named {
        let mut shape = t.shape().to_vec();
        let mut values = t.to_vec().unwrap();
        // The parameter names of optimizer state: `optimizer.m.0` is parameter 0's.
        let param = name
            .strip_prefix("optimizer.")
            .and_then(|k| k.rsplit_once('.'))
            .and_then(|(_, i)| i.parse::<usize>().ok())
            .map(|i| model.named_parameters()[i].0.clone());
        let legacy = transposed.contains(name) || param.is_some_and(|p| transposed.contains(&p));
        if legacy {
            let (rows, cols) = (shape[0], shape[1]);
            values = (0..rows * cols)
                .map(|k| values[(k % rows) * cols + k / rows])
                .collect();
            shape = vec![cols, rows];
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push((name.clone(), shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, s, b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b);
            (n.clone(), view.unwrap())
        })
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

#[test]
fn files_with_dense_weights_in_the_old_layout_still_load() {
    let dev = wgrad::cpu();
    let dir = std::env::temp_dir().join(format!("wgrad-legacy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v1.safetensors");
    // Square layers too, whose transposition no shape check could notice.
    let mut rng = Rng::new(3);
    let build = |rng: &mut Rng| {
        Sequential::new()
            .add(Dense::new(&dev, 3, 3, rng).unwrap())
            .add_named(
                "head",
                Sequential::new().add(Dense::new(&dev, 3, 2, rng).unwrap()),
            )
    };
    let a = build(&mut rng);
    let mut opt = Adam::new(a.parameters(), 0.1);
    let x = Tensor::from_slice(&dev, &[0.5, -1.0, 2.0, 1.0, 0.0, -0.5], &[2, 3]).unwrap();
    let y = Tensor::from_u32(&dev, &[1, 0], &[2]).unwrap();
    let loss = wgrad::cross_entropy(&a.forward(&x), &y);
    opt.step_with(&loss.backward(), &[&loss]).unwrap();
    assert_eq!(a.legacy_transposed(), ["0.weight", "head.0.weight"]);
    std::fs::write(&path, version_1_file(&a, Some(&opt))).unwrap();
    // In the file: [in, out].
    let listed = io::inspect(&path).unwrap();
    let head = listed.iter().find(|t| t.name == "head.0.weight").unwrap();
    assert_eq!(head.shape, [3, 2]);
    let want: Vec<Vec<f32>> = a.parameters().iter().map(|p| p.to_vec().unwrap()).collect();
    let want_out = a.forward(&x).to_vec().unwrap();
    for strict in [false, true] {
        let b = build(&mut Rng::new(9));
        let mut opt_b = Adam::new(b.parameters(), 0.1);
        if strict {
            io::load(&path, &b, Some(&mut opt_b)).unwrap();
        } else {
            let report = io::load_state_dict(&path, &b, false).unwrap();
            assert_eq!(report.loaded.len(), 4, "{report:?}");
        }
        for ((n, p), q) in b.named_parameters().iter().zip(&want) {
            assert_eq!(&p.to_vec().unwrap(), q, "{n}");
        }
        assert_eq!(b.forward(&x).to_vec().unwrap(), want_out);
        if strict {
            // The optimizer's moments came back in the new layout too: one more step on
            // each gives the same weights.
            let step = |m: &Sequential, o: &mut Adam| {
                let loss = wgrad::cross_entropy(&m.forward(&x), &y);
                o.step_with(&loss.backward(), &[&loss]).unwrap();
            };
            let mut opt_a = Adam::new(a.parameters(), 0.1);
            let state = opt.state_dict();
            let map = state.into_iter().collect();
            opt_a.load_state_dict(&map);
            step(&a, &mut opt_a);
            step(&b, &mut opt_b);
            for (p, q) in b.parameters().iter().zip(a.parameters()) {
                assert_eq!(p.to_vec().unwrap(), q.to_vec().unwrap());
            }
        }
    }
    // Saved again, the file has today's layout and version.
    io::save(&path, &a, None).unwrap();
    let listed = io::inspect(&path).unwrap();
    let head = listed.iter().find(|t| t.name == "head.0.weight").unwrap();
    assert_eq!(head.shape, [2, 3]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn named_layers_give_dotted_names_and_are_found_by_them() {
    let dev = wgrad::cpu();
    let mut rng = Rng::new(4);
    let encoder = Sequential::new()
        .add(Dense::new(&dev, 3, 2, &mut rng).unwrap())
        .add(wgrad::nn::BatchNorm::new_1d(&dev, 2, Default::default()).unwrap());
    let m = Sequential::new()
        .add_named("encoder", encoder)
        .add(Dense::new(&dev, 2, 3, &mut rng).unwrap());
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "encoder.0.weight",
            "encoder.0.bias",
            "encoder.1.weight",
            "encoder.1.bias",
            "1.weight",
            "1.bias"
        ]
    );
    let buffers: Vec<String> = m.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(buffers[0], "encoder.1.running_mean");
    assert_eq!(
        m.get_named("encoder").unwrap().describe(),
        "Sequential(2 layers)"
    );
    assert_eq!(m.get_named("1").unwrap().describe(), "Dense(2 -> 3)");
    assert!(m.get_named("0").is_none() && m.get_named("decoder").is_none());
    // Buffers are set through the dotted name.
    let mean = Tensor::from_slice(&dev, &[1.0, 2.0], &[2]).unwrap();
    assert!(m.set_buffer("encoder.1.running_mean", mean));
    assert_eq!(m.named_buffers()[0].1.to_vec().unwrap(), [1.0, 2.0]);
    assert!(m.summary().contains("encoder"), "{}", m.summary());
}

/// A PyTorch network's state_dict (Conv2d, BatchNorm2d with `num_batches_tracked`,
/// ConvTranspose2d, Linear) loads by name and gives the output of PyTorch's equations
/// (`tests/fixtures/make_layers.py`), on the CPU backend and the GPU.
#[test]
fn pytorch_layer_weights_load_by_name_and_reproduce_outputs() {
    use wgrad::nn::{Activation, BatchNorm, Conv2d, ConvConfig, ConvTranspose2d, Flatten};
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layers.safetensors");
    let mut devices = vec![wgrad::cpu()];
    devices.extend(common::gpu());
    for dev in &devices {
        let mut rng = Rng::new(0);
        let down = ConvConfig {
            stride: [2, 2],
            padding: [1, 1],
            ..ConvConfig::default()
        };
        let up = ConvConfig {
            output_padding: [1, 1],
            ..down
        };
        let model = Sequential::new()
            .add(Conv2d::new(dev, 3, 4, [3, 3], &mut rng, down).unwrap())
            .add(BatchNorm::new_2d(dev, 4, Default::default()).unwrap())
            .add(Activation::Relu)
            .add(ConvTranspose2d::new(dev, 4, 2, [3, 3], &mut rng, up).unwrap())
            .add(Flatten)
            .add(Dense::new(dev, 72, 5, &mut rng).unwrap());
        model.set_training(false);
        let report = io::load_state_dict(&path, &model, false).unwrap();
        assert_eq!(report.loaded.len(), 10, "{report:?}");
        assert!(
            report.missing.is_empty() && report.mismatched.is_empty(),
            "{report:?}"
        );
        // The input and output stored beside the weights are all the model lacks.
        assert_eq!(report.unexpected, ["input", "output"]);
        assert_eq!(
            model.named_counters()[0],
            ("1.num_batches_tracked".to_string(), 12)
        );
        let e = io::load(&path, &model, None).unwrap_err().to_string();
        assert!(e.contains("`input`") && e.contains("`output`"), "{e}");
        let file = std::fs::read(&path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&file).unwrap();
        let get = |name: &str| {
            let view = file.tensor(name).unwrap();
            let v: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (v, view.shape().to_vec())
        };
        let (x, shape) = get("input");
        let got = model.forward(&Tensor::from_slice(dev, &x, &shape).unwrap());
        let (want, shape) = get("output");
        assert_eq!(got.shape(), &shape[..]);
        for (g, w) in got.to_vec().unwrap().iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{g} vs {w} on {}",
                dev.name()
            );
        }
    }
}
