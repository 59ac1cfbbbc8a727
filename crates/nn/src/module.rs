//! The `Module` trait and `Sequential`.

use wgrad_graph::{Error, Result, Tensor};

/// A layer or a network: a function of a tensor with named trainable parameters.
pub trait Module {
    /// Applies the module to a batch.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// Trainable parameters with names relative to this module (e.g. `weight`, `0.bias`).
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Non-trainable state saved with the model (e.g. batch-norm running statistics).
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Replaces the buffer called `name` (as listed by `named_buffers`); false if unknown.
    fn set_buffer(&self, _name: &str, _value: Tensor) -> bool {
        false
    }

    /// Integer state saved with the model (e.g. how many masks a dropout layer has drawn).
    fn named_counters(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// Restores a counter listed by `named_counters`; false if unknown.
    fn set_counter(&self, _name: &str, _value: u64) -> bool {
        false
    }

    /// Stops training every parameter: they get no gradient, so optimizers and the trainer
    /// leave them as they are (transfer learning, a frozen encoder).
    fn freeze(&self) {
        for (_, p) in self.named_parameters() {
            p.set_requires_grad(false);
        }
    }

    /// Makes every parameter trainable again.
    fn unfreeze(&self) {
        for (_, p) in self.named_parameters() {
            p.set_requires_grad(true);
        }
    }

    /// Trainable parameters in a fixed order.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Switches between training (dropout active) and evaluation behaviour.
    fn set_training(&self, _training: bool) {}

    /// Whether the module behaves as in training (for modules whose behaviour differs:
    /// dropout, batch norm, and containers holding one); false for the others.
    fn is_training(&self) -> bool {
        false
    }

    /// A short description, e.g. `Dense(784 -> 128)`.
    fn describe(&self) -> String;

    /// The output shape for an input shape, or a message naming what does not fit. Lets data
    /// be checked against a model before any work is queued. The default keeps the shape.
    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        Ok(input.to_vec())
    }
}

/// Checks that input of `shape` fits `model`, as an [`Error::Data`] naming the layer and both
/// shapes when it does not. Returns the output shape.
pub fn check_input(model: &dyn Module, shape: &[usize]) -> Result<Vec<usize>> {
    model.output_shape(shape).map_err(|e| {
        Error::Data(format!(
            "input of shape {shape:?} does not fit the model: {e}"
        ))
    })
}

/// Modules applied one after another.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer (builder style). Named like Keras' `model.add`, which is what users
    /// of sequential models look for, rather than after `std::ops::Add`.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Module + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Module + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// The layers in order.
    pub fn layers(&self) -> &[Box<dyn Module>] {
        &self.layers
    }

    /// Layer `i`, as PyTorch's `model[i]`; None past the end.
    pub fn get(&self, i: usize) -> Option<&dyn Module> {
        self.layers.get(i).map(|l| &**l)
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True without layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Replaces layer `i` (e.g. a new head for another task) and returns the old one; an
    /// [`Error::Data`] past the end.
    pub fn replace(&mut self, i: usize, layer: impl Module + 'static) -> Result<Box<dyn Module>> {
        let len = self.layers.len();
        let slot = self
            .layers
            .get_mut(i)
            .ok_or_else(|| Error::Data(format!("Sequential::replace: layer {i} of {len}")))?;
        Ok(std::mem::replace(slot, Box::new(layer)))
    }

    /// Removes layer `i` and returns it; an [`Error::Data`] past the end.
    pub fn remove(&mut self, i: usize) -> Result<Box<dyn Module>> {
        if i >= self.layers.len() {
            return Err(Error::Data(format!(
                "Sequential::remove: layer {i} of {}",
                self.layers.len()
            )));
        }
        Ok(self.layers.remove(i))
    }

    /// Keeps only the layers in `range` (e.g. `0..3`, a trained network's feature extractor)
    /// and returns the others; an [`Error::Data`] when the range is past the end.
    pub fn truncate_to(&mut self, range: std::ops::Range<usize>) -> Result<Vec<Box<dyn Module>>> {
        if range.start > range.end || range.end > self.layers.len() {
            return Err(Error::Data(format!(
                "Sequential::truncate_to: layers {range:?} of {}",
                self.layers.len()
            )));
        }
        let mut rest: Vec<Box<dyn Module>> = self.layers.drain(range.end..).collect();
        let head: Vec<Box<dyn Module>> = self.layers.drain(..range.start).collect();
        rest.splice(0..0, head);
        Ok(rest)
    }

    /// Training mode: dropout active.
    pub fn train(&self) {
        self.set_training(true);
    }

    /// Evaluation mode: dropout is the identity.
    pub fn eval(&self) {
        self.set_training(false);
    }

    /// The layer a dotted name starts with (`3.weight` → layer 3, `weight`).
    fn child<'n>(&self, name: &'n str) -> Option<(&dyn Module, &'n str)> {
        let (index, rest) = name.split_once('.')?;
        let layer = self.layers.get(index.parse::<usize>().ok()?)?;
        Some((layer.as_ref(), rest))
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.numel()).sum()
    }

    /// One line per layer with its parameter count (and how many are frozen), then the
    /// totals of trainable and frozen parameters.
    pub fn summary(&self) -> String {
        let count = |ps: &[Tensor], frozen: bool| -> usize {
            ps.iter()
                .filter(|p| p.requires_grad() != frozen)
                .map(|p| p.numel())
                .sum()
        };
        let mut s = String::new();
        for (i, l) in self.layers.iter().enumerate() {
            let ps = l.parameters();
            let (n, f) = (count(&ps, false) + count(&ps, true), count(&ps, true));
            let frozen = if f > 0 {
                format!(" ({f} frozen)")
            } else {
                String::new()
            };
            s.push_str(&format!(
                "{i:>3}  {:<32} {n:>10} params{frozen}\n",
                l.describe()
            ));
        }
        let ps = self.parameters();
        s.push_str(&format!(
            "     total {:>36} params: {} trainable, {} frozen",
            self.num_parameters(),
            count(&ps, false),
            count(&ps, true)
        ));
        s
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.layers.iter().fold(x.clone(), |h, l| l.forward(&h))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                l.named_parameters()
                    .into_iter()
                    .map(move |(n, t)| (format!("{i}.{n}"), t))
            })
            .collect()
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                l.named_buffers()
                    .into_iter()
                    .map(move |(n, t)| (format!("{i}.{n}"), t))
            })
            .collect()
    }

    fn set_buffer(&self, name: &str, value: Tensor) -> bool {
        match self.child(name) {
            Some((layer, rest)) => layer.set_buffer(rest, value),
            None => false,
        }
    }

    fn named_counters(&self) -> Vec<(String, u64)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                l.named_counters()
                    .into_iter()
                    .map(move |(n, v)| (format!("{i}.{n}"), v))
            })
            .collect()
    }

    fn set_counter(&self, name: &str, value: u64) -> bool {
        match self.child(name) {
            Some((layer, rest)) => layer.set_counter(rest, value),
            None => false,
        }
    }

    fn set_training(&self, training: bool) {
        for l in &self.layers {
            l.set_training(training);
        }
    }

    fn is_training(&self) -> bool {
        self.layers.iter().any(|l| l.is_training())
    }

    fn describe(&self) -> String {
        format!("Sequential({} layers)", self.layers.len())
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        let mut shape = input.to_vec();
        for (i, l) in self.layers.iter().enumerate() {
            shape = l
                .output_shape(&shape)
                .map_err(|e| format!("layer {i} {}: {e}", l.describe()))?;
        }
        Ok(shape)
    }
}
