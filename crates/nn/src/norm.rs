//! Normalisation layers: batch normalisation (1-D and 2-D) and layer normalisation.

use std::cell::{Cell, RefCell};

use wgrad_graph::{no_grad, Device, Result, Tensor};

use crate::module::Module;

/// Options of the normalisation layers, with PyTorch's defaults.
#[derive(Clone, Copy, Debug)]
pub struct NormConfig {
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Weight of the newest batch in the running statistics.
    pub momentum: f32,
    /// Learnable scale and shift.
    pub affine: bool,
}

impl Default for NormConfig {
    fn default() -> Self {
        NormConfig {
            eps: 1e-5,
            momentum: 0.1,
            affine: true,
        }
    }
}

/// Batch normalisation over the channel axis 1. Training mode normalises with the batch's
/// mean and biased variance and updates running mean and unbiased running variance; evaluation
/// mode uses the running statistics.
pub struct BatchNorm {
    /// Scale `[channels]` (`γ`), if affine.
    pub weight: Option<Tensor>,
    /// Shift `[channels]` (`β`), if affine.
    pub bias: Option<Tensor>,
    running_mean: RefCell<Tensor>,
    running_var: RefCell<Tensor>,
    config: NormConfig,
    channels: usize,
    /// Accepted input ranks: [2, 3] for 1-D, [4] for 2-D.
    ranks: &'static [usize],
    training: Cell<bool>,
    /// Training batches seen, as PyTorch's `num_batches_tracked` (saved with the model and
    /// read from PyTorch files; the running statistics use the momentum, not this count).
    batches: Cell<u64>,
}

/// Batch normalisation of `[n, c]` or `[n, c, l]` inputs.
pub type BatchNorm1d = BatchNorm;
/// Batch normalisation of `[n, c, h, w]` inputs.
pub type BatchNorm2d = BatchNorm;

impl BatchNorm {
    fn build(
        device: &Device,
        channels: usize,
        config: NormConfig,
        ranks: &'static [usize],
    ) -> Result<BatchNorm> {
        let (weight, bias) = affine_params(device, &[channels], config.affine)?;
        Ok(BatchNorm {
            weight,
            bias,
            running_mean: RefCell::new(Tensor::from_slice(
                device,
                &vec![0.0; channels],
                &[channels],
            )?),
            running_var: RefCell::new(Tensor::from_slice(
                device,
                &vec![1.0; channels],
                &[channels],
            )?),
            config,
            channels,
            ranks,
            training: Cell::new(true),
            batches: Cell::new(0),
        })
    }

    /// For `[n, c]` or `[n, c, l]` inputs.
    pub fn new_1d(device: &Device, channels: usize, config: NormConfig) -> Result<BatchNorm> {
        Self::build(device, channels, config, &[2, 3])
    }

    /// For `[n, c, h, w]` inputs.
    pub fn new_2d(device: &Device, channels: usize, config: NormConfig) -> Result<BatchNorm> {
        Self::build(device, channels, config, &[4])
    }

    /// The running mean `[channels]` used in evaluation mode.
    pub fn running_mean(&self) -> Tensor {
        self.running_mean.borrow().clone()
    }

    /// The running (unbiased) variance `[channels]` used in evaluation mode.
    pub fn running_var(&self) -> Tensor {
        self.running_var.borrow().clone()
    }
}

fn affine_params(
    device: &Device,
    shape: &[usize],
    on: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    if !on {
        return Ok((None, None));
    }
    let n: usize = shape.iter().product();
    Ok((
        Some(Tensor::param(device, &vec![1.0; n], shape)?),
        Some(Tensor::param(device, &vec![0.0; n], shape)?),
    ))
}

impl Module for BatchNorm {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        assert!(
            self.ranks.contains(&x.rank()) && x.shape()[1] == self.channels,
            "{}: expects input of rank {:?} with {} channels on axis 1, got {:?}",
            self.describe(),
            self.ranks,
            self.channels,
            x.shape()
        );
        // Statistics over every axis but the channels'.
        let axes: Vec<isize> = (0..x.rank() as isize).filter(|&a| a != 1).collect();
        let mut bshape = vec![1; x.rank()];
        bshape[1] = self.channels;
        let c = self.config;
        let (mean, var) = if self.training.get() {
            let count = x.numel() / self.channels;
            self.batches.set(self.batches.get() + 1);
            assert!(
                count > 1,
                "{}: training needs more than one value per channel, got input {:?}",
                self.describe(),
                x.shape()
            );
            let mean = x.mean(&axes, true);
            let centred = x - &mean;
            let var = (&centred * &centred).mean(&axes, true);
            no_grad(|| {
                // running = (1 - m)·running + m·batch, with the unbiased variance
                let unbias = count as f32 / (count - 1) as f32;
                let m = mean.reshape(&[self.channels]);
                let v = var.reshape(&[self.channels]);
                let rm = &*self.running_mean.borrow() * (1.0 - c.momentum) + m * c.momentum;
                let rv =
                    &*self.running_var.borrow() * (1.0 - c.momentum) + v * (c.momentum * unbias);
                x.device().realize_later(&rm);
                x.device().realize_later(&rv);
                *self.running_mean.borrow_mut() = rm;
                *self.running_var.borrow_mut() = rv;
            });
            (mean, var)
        } else {
            (
                self.running_mean.borrow().reshape(&bshape),
                self.running_var.borrow().reshape(&bshape),
            )
        };
        let y = (x - mean) / var.add_scalar(c.eps).sqrt();
        match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => y * w.reshape(&bshape) + b.reshape(&bshape),
            _ => y,
        }
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = Vec::new();
        p.extend(
            self.weight
                .iter()
                .map(|w| ("weight".to_string(), w.clone())),
        );
        p.extend(self.bias.iter().map(|b| ("bias".to_string(), b.clone())));
        p
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".to_string(), self.running_mean()),
            ("running_var".to_string(), self.running_var()),
        ]
    }

    fn set_buffer(&self, name: &str, value: Tensor) -> bool {
        match name {
            "running_mean" => *self.running_mean.borrow_mut() = value,
            "running_var" => *self.running_var.borrow_mut() = value,
            _ => return false,
        }
        true
    }

    fn named_counters(&self) -> Vec<(String, u64)> {
        vec![("num_batches_tracked".into(), self.batches.get())]
    }

    fn set_counter(&self, name: &str, value: u64) -> bool {
        let known = name == "num_batches_tracked";
        if known {
            self.batches.set(value);
        }
        known
    }

    fn set_training(&self, training: bool) {
        self.training.set(training);
    }

    fn is_training(&self) -> bool {
        self.training.get()
    }

    fn describe(&self) -> String {
        let kind = if self.ranks == [4] {
            "BatchNorm2d"
        } else {
            "BatchNorm1d"
        };
        format!("{kind}({})", self.channels)
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        if self.ranks.contains(&input.len()) && input[1] == self.channels {
            Ok(input.to_vec())
        } else {
            Err(format!(
                "expects input of rank {:?} with {} channels on axis 1, got {input:?}",
                self.ranks, self.channels
            ))
        }
    }
}

/// Layer normalisation over the trailing dimensions `normalized_shape`, with the biased
/// variance, like PyTorch's `LayerNorm`.
pub struct LayerNorm {
    /// Scale of the normalised shape (`γ`), if affine.
    pub weight: Option<Tensor>,
    /// Shift of the normalised shape (`β`), if affine.
    pub bias: Option<Tensor>,
    shape: Vec<usize>,
    eps: f32,
}

impl LayerNorm {
    /// Normalises over the trailing dimensions `normalized_shape`.
    pub fn new(
        device: &Device,
        normalized_shape: &[usize],
        config: NormConfig,
    ) -> Result<LayerNorm> {
        let (weight, bias) = affine_params(device, normalized_shape, config.affine)?;
        Ok(LayerNorm {
            weight,
            bias,
            shape: normalized_shape.to_vec(),
            eps: config.eps,
        })
    }
}

impl Module for LayerNorm {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let k = self.shape.len();
        assert!(
            x.rank() >= k && x.shape()[x.rank() - k..] == self.shape[..],
            "{}: input {:?} does not end in {:?}",
            self.describe(),
            x.shape(),
            self.shape
        );
        let axes: Vec<isize> = (x.rank() - k..x.rank()).map(|a| a as isize).collect();
        let mean = x.mean(&axes, true);
        let centred = x - mean;
        let var = (&centred * &centred).mean(&axes, true);
        let y = centred / var.add_scalar(self.eps).sqrt();
        match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => y * w + b,
            _ => y,
        }
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = Vec::new();
        p.extend(
            self.weight
                .iter()
                .map(|w| ("weight".to_string(), w.clone())),
        );
        p.extend(self.bias.iter().map(|b| ("bias".to_string(), b.clone())));
        p
    }

    fn describe(&self) -> String {
        format!("LayerNorm({:?})", self.shape)
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        let k = self.shape.len();
        if input.len() >= k && input[input.len() - k..] == self.shape[..] {
            Ok(input.to_vec())
        } else {
            Err(format!("input {input:?} does not end in {:?}", self.shape))
        }
    }
}
