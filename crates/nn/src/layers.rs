//! Basic layers: `Dense`, activations, `Flatten` and `Dropout`.

use std::cell::Cell;

use wgrad_graph::{Device, Result, Tensor};

use crate::init::Init;
use crate::module::Module;
use crate::rng::Rng;

/// Fully connected layer `y = x·Wᵀ + b`, with `W` of shape `[outputs, inputs]` as PyTorch's
/// `nn.Linear` stores it, so that its weights load by name from PyTorch files.
pub struct Dense {
    /// Weights `[outputs, inputs]`.
    pub weight: Tensor,
    /// Bias `[outputs]`, if enabled.
    pub bias: Option<Tensor>,
    inputs: usize,
    outputs: usize,
}

/// Options of a [`Dense`] layer.
#[derive(Clone, Copy, Debug)]
pub struct DenseConfig {
    /// How the weights are drawn.
    pub init: Init,
    /// Whether the layer adds a learnable bias.
    pub bias: bool,
}

impl Default for DenseConfig {
    fn default() -> Self {
        DenseConfig {
            init: Init::GlorotUniform,
            bias: true,
        }
    }
}

impl Dense {
    /// A layer with Glorot-uniform weights and a zero bias.
    pub fn new(device: &Device, inputs: usize, outputs: usize, rng: &mut Rng) -> Result<Dense> {
        Self::with_config(device, inputs, outputs, rng, DenseConfig::default())
    }

    /// A layer with the given initialisation and bias setting.
    pub fn with_config(
        device: &Device,
        inputs: usize,
        outputs: usize,
        rng: &mut Rng,
        config: DenseConfig,
    ) -> Result<Dense> {
        // Drawn in the order of an `[inputs, outputs]` matrix (as before the layout became
        // PyTorch's), so that a seed gives the same network as it always did.
        let w = config.init.sample(rng, inputs, outputs, inputs * outputs);
        let w: Vec<f32> = (0..inputs * outputs)
            .map(|k| w[(k % inputs) * outputs + k / inputs])
            .collect();
        let weight = Tensor::param(device, &w, &[outputs, inputs])?;
        let bias = if config.bias {
            Some(Tensor::param(device, &vec![0.0; outputs], &[outputs])?)
        } else {
            None
        };
        Ok(Dense {
            weight,
            bias,
            inputs,
            outputs,
        })
    }
}

impl Module for Dense {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        assert!(
            x.rank() >= 1 && x.shape()[x.rank() - 1] == self.inputs,
            "{}: expects inputs [..., {}], got {:?}",
            self.describe(),
            self.inputs,
            x.shape()
        );
        let y = x.matmul_t(&self.weight, false, true);
        match &self.bias {
            Some(b) => y + b,
            None => y,
        }
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            p.push(("bias".to_string(), b.clone()));
        }
        p
    }

    fn legacy_transposed(&self) -> Vec<String> {
        vec!["weight".into()]
    }

    fn describe(&self) -> String {
        format!("Dense({} -> {})", self.inputs, self.outputs)
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        match input.split_last() {
            Some((&last, rest)) if last == self.inputs => Ok([rest, &[self.outputs]].concat()),
            _ => Err(format!(
                "expects input [..., {}], got {input:?}",
                self.inputs
            )),
        }
    }
}

/// An elementwise activation as a layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// GELU, exact form.
    Gelu,
    /// `x` if positive, else the given slope times `x`.
    LeakyRelu(f32),
    /// Softmax over the last axis.
    Softmax,
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Activation::Relu => x.relu(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => x.gelu(),
            Activation::LeakyRelu(s) => x.leaky_relu(*s),
            Activation::Softmax => x.softmax(-1),
        }
    }

    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// Flattens every dimension after the batch dimension.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Tensor {
        if x.rank() <= 1 {
            return x.clone();
        }
        x.flatten_from(1)
    }

    fn describe(&self) -> String {
        "Flatten".into()
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        Ok(match input {
            [] | [_] => input.to_vec(),
            [n, rest @ ..] => vec![*n, rest.iter().product()],
        })
    }
}

/// Splits axis `dim` into `sizes` (PyTorch's `nn.Unflatten`), e.g. a decoder's `[n, 784]`
/// into images `[n, 1, 28, 28]` with `Unflatten::new(1, &[1, 28, 28])`.
#[derive(Clone, Debug)]
pub struct Unflatten {
    dim: usize,
    sizes: Vec<usize>,
}

impl Unflatten {
    /// Splits axis `dim` into `sizes`.
    pub fn new(dim: usize, sizes: &[usize]) -> Unflatten {
        Unflatten {
            dim,
            sizes: sizes.to_vec(),
        }
    }
}

impl Module for Unflatten {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        match self.output_shape(x.shape()) {
            Ok(shape) => x.reshape(&shape),
            Err(e) => panic!("{e}"),
        }
    }

    fn describe(&self) -> String {
        format!("Unflatten({}, {:?})", self.dim, self.sizes)
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        let product: usize = self.sizes.iter().product();
        match input.get(self.dim) {
            Some(&n) if n == product => {
                let mut out = input[..self.dim].to_vec();
                out.extend(&self.sizes);
                out.extend(&input[self.dim + 1..]);
                Ok(out)
            }
            _ => Err(format!(
                "Unflatten: axis {} of {input:?} does not split into {:?}",
                self.dim, self.sizes
            )),
        }
    }
}

/// Zeroes each element with probability `p` during training and scales the rest by
/// `1/(1-p)`; the identity in evaluation mode. Masks are drawn on the device from the seed and
/// the number of calls so far, which is saved with the model so a resumed run draws the same
/// masks.
pub struct Dropout {
    p: f32,
    seed: u64,
    calls: Cell<u64>,
    training: Cell<bool>,
}

impl Dropout {
    /// Drops with probability `p`; masks are drawn from `seed` and the number of calls.
    #[track_caller]
    pub fn new(p: f32, seed: u64) -> Dropout {
        assert!(
            (0.0..1.0).contains(&p),
            "Dropout: p must be in [0, 1), got {p}"
        );
        Dropout {
            p,
            seed,
            calls: Cell::new(0),
            training: Cell::new(true),
        }
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Tensor {
        if !self.training.get() || self.p == 0.0 {
            return x.clone();
        }
        let calls = self.calls.get();
        self.calls.set(calls + 1);
        let seed = self.seed ^ calls.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let keep = Tensor::rand(x.device(), x.shape(), seed).ge(&x.scalar_like(self.p));
        x * keep.mul_scalar(1.0 / (1.0 - self.p))
    }

    fn set_training(&self, training: bool) {
        self.training.set(training);
    }

    fn is_training(&self) -> bool {
        self.training.get()
    }

    fn named_counters(&self) -> Vec<(String, u64)> {
        vec![("calls".to_string(), self.calls.get())]
    }

    fn set_counter(&self, name: &str, value: u64) -> bool {
        if name != "calls" {
            return false;
        }
        self.calls.set(value);
        true
    }

    fn describe(&self) -> String {
        format!("Dropout({})", self.p)
    }
}
