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

    /// Names of 2-D parameters that wgrad files of format version 1 stored transposed (the
    /// weights of `Dense`, then `[in, out]`, now PyTorch's `[out, in]`), so that loading
    /// such a file transposes them. A container lists its children's with their prefixes.
    fn legacy_transposed(&self) -> Vec<String> {
        Vec::new()
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

/// Modules applied one after another. A layer's parameters are named after its index
/// (`0.weight`), or after the name it was added with (`encoder.0.weight` for a `Sequential`
/// added as `encoder`), as PyTorch names them.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
    /// One per layer: the name it was added with, or empty for its index.
    names: Vec<String>,
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
        self.push(layer);
        self
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Module + 'static) {
        self.layers.push(Box::new(layer));
        self.names.push(String::new());
    }

    /// Appends a layer whose parameters are named `{name}.…` rather than by its index, as
    /// in PyTorch's `nn.Sequential(OrderedDict(...))`: an autoencoder's `encoder` and
    /// `decoder`.
    ///
    /// # Panics
    /// If the name is empty, holds a dot, is a number, or is taken: these are mistakes in
    /// the program, not in data.
    #[track_caller]
    pub fn add_named(mut self, name: &str, layer: impl Module + 'static) -> Self {
        assert!(
            !name.is_empty() && !name.contains('.') && name.parse::<usize>().is_err(),
            "Sequential::add_named: `{name}` must be non-empty, without dots, and not a number"
        );
        assert!(
            !self.names.iter().any(|n| n == name),
            "Sequential::add_named: `{name}` is taken"
        );
        self.layers.push(Box::new(layer));
        self.names.push(name.to_string());
        self
    }

    /// The layer added as `name` (see [`Sequential::add_named`]), or layer `name` by index.
    pub fn get_named(&self, name: &str) -> Option<&dyn Module> {
        let i = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => name
                .parse::<usize>()
                .ok()
                .filter(|i| self.names[*i].is_empty())?,
        };
        self.get(i)
    }

    /// What layer `i`'s parameter names start with: its name, or its index.
    fn label(&self, i: usize) -> String {
        match &self.names[i] {
            n if n.is_empty() => i.to_string(),
            n => n.clone(),
        }
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
        self.names.remove(i);
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
        self.names.truncate(range.end);
        self.names.drain(..range.start);
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
        let (first, rest) = name.split_once('.')?;
        Some((self.get_named(first)?, rest))
    }

    /// Each layer's `(name, value)` pairs from `f`, prefixed with the layer's label.
    fn prefixed<T>(&self, f: impl Fn(&dyn Module) -> Vec<(String, T)>) -> Vec<(String, T)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let label = self.label(i);
            out.extend(
                f(l.as_ref())
                    .into_iter()
                    .map(|(n, v)| (format!("{label}.{n}"), v)),
            );
        }
        out
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
                "{:>3}  {:<32} {n:>10} params{frozen}\n",
                self.label(i),
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
        self.prefixed(|l| l.named_parameters())
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.prefixed(|l| l.named_buffers())
    }

    fn legacy_transposed(&self) -> Vec<String> {
        let names = self.prefixed(|l| l.legacy_transposed().into_iter().map(|n| (n, ())).collect());
        names.into_iter().map(|(n, ())| n).collect()
    }

    fn set_buffer(&self, name: &str, value: Tensor) -> bool {
        match self.child(name) {
            Some((layer, rest)) => layer.set_buffer(rest, value),
            None => false,
        }
    }

    fn named_counters(&self) -> Vec<(String, u64)> {
        self.prefixed(|l| l.named_counters())
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
