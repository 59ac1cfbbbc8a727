//! Optimizers with PyTorch's update rules and defaults. A step builds every parameter's new
//! value (and new optimizer state) as lazy tensors, computes them in one batch (one submission
//! on a GPU) and swaps the new values into the parameters in place.

use std::collections::HashMap;

use wgrad_graph::{no_grad, realize_all, BackendFuture, Error, Grads, Result, Tensor};

/// Updates parameters from their gradients.
pub trait Optimizer {
    /// The parameters this optimizer updates.
    fn params(&self) -> &[Tensor];

    /// New values of the parameters (`None` = unchanged), updating the lazy state tensors.
    /// Called under [`no_grad`].
    fn build(&mut self, grads: &[Option<Tensor>]) -> Vec<Option<Tensor>>;

    /// State tensors that must be computed together with the update (momentum buffers…).
    fn state(&self) -> Vec<Tensor>;

    /// The current learning rate.
    fn learning_rate(&self) -> f32;

    /// Changes the learning rate for later steps (schedules use this).
    fn set_learning_rate(&mut self, lr: f32);

    /// Short name stored in checkpoints (`sgd`, `adam`, `rmsprop`).
    fn kind(&self) -> &'static str;

    /// Named state tensors for checkpoints (e.g. `m.0`, `v.0`, `steps`).
    fn state_dict(&self) -> Vec<(String, Tensor)>;

    /// Restores state saved by `state_dict`; entries not present start fresh. The caller has
    /// checked that each tensor's shape matches its parameter.
    fn load_state_dict(&mut self, state: &HashMap<String, Tensor>);

    /// One update from `grads`; parameters without a gradient are left alone.
    fn step(&mut self, grads: &Grads) -> Result<()> {
        self.step_with(grads, &[])
    }

    /// Like [`Optimizer::step_with`] (which submits the update and never waits for it), then
    /// completes when the device has run it: a training loop in a browser awaits this or a
    /// read (`Tensor::item_async`) so that the page's event loop keeps turning.
    fn step_async<'a>(
        &'a mut self,
        grads: &'a Grads,
        also: &'a [&'a Tensor],
    ) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            self.step_with(grads, also)?;
            match self.params().first() {
                Some(p) => p.device().backend().finish_async().await,
                None => Ok(()),
            }
        })
    }

    /// One update, computing `also` (e.g. the loss) in the same batch. A learning rate
    /// that is negative, NaN or infinite is an error, with nothing changed.
    fn step_with(&mut self, grads: &Grads, also: &[&Tensor]) -> Result<()> {
        let lr = self.learning_rate();
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::Data(format!(
                "{}: the learning rate is {lr}; it must be a finite number of at least 0",
                self.kind()
            )));
        }
        let g: Vec<Option<Tensor>> = self
            .params()
            .iter()
            .map(|p| grads.get(p).cloned())
            .collect();
        let new = no_grad(|| self.build(&g));
        let state = self.state();
        let mut all: Vec<&Tensor> = new.iter().flatten().collect();
        all.extend(state.iter());
        all.extend(also.iter().copied());
        realize_all(&all)?;
        for (p, v) in self.params().iter().zip(&new) {
            if let Some(v) = v {
                p.assign(v)?;
            }
        }
        Ok(())
    }
}

/// `prefix.i` for every parameter that has state.
fn named(prefix: &str, slots: &[Option<Tensor>]) -> Vec<(String, Tensor)> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.as_ref().map(|t| (format!("{prefix}.{i}"), t.clone())))
        .collect()
}

fn restore(prefix: &str, slots: &mut [Option<Tensor>], state: &HashMap<String, Tensor>) {
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = state.get(&format!("{prefix}.{i}")).cloned();
    }
}

fn scalar(like: &Tensor, v: f32) -> Tensor {
    like.scalar_like(v)
}

/// Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay
/// (PyTorch's `torch.optim.SGD`).
pub struct Sgd {
    params: Vec<Tensor>,
    /// Hyper-parameters; may be changed between steps.
    pub config: SgdConfig,
    buffers: Vec<Option<Tensor>>,
}

/// Hyper-parameters of [`Sgd`], PyTorch's defaults except `lr`, which defaults to 1e-3.
#[derive(Clone, Copy, Debug)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 = none).
    pub momentum: f32,
    /// Dampening of the momentum's gradient term.
    pub dampening: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

impl Sgd {
    /// Plain gradient descent with learning rate `lr`.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Sgd {
        Self::with_config(
            params,
            SgdConfig {
                lr,
                ..Default::default()
            },
        )
    }

    /// SGD with the given hyper-parameters.
    #[track_caller]
    pub fn with_config(params: Vec<Tensor>, config: SgdConfig) -> Sgd {
        assert!(
            !config.nesterov || (config.momentum > 0.0 && config.dampening == 0.0),
            "Sgd: Nesterov momentum needs momentum > 0 and zero dampening"
        );
        let buffers = vec![None; params.len()];
        Sgd {
            params,
            config,
            buffers,
        }
    }
}

impl Optimizer for Sgd {
    fn params(&self) -> &[Tensor] {
        &self.params
    }

    fn build(&mut self, grads: &[Option<Tensor>]) -> Vec<Option<Tensor>> {
        let c = self.config;
        let mut out = Vec::with_capacity(grads.len());
        for (i, (p, g)) in self.params.iter().zip(grads).enumerate() {
            let Some(g) = g else {
                out.push(None);
                continue;
            };
            let p = p.detach();
            let mut d = g.clone();
            if c.weight_decay != 0.0 {
                d = d + &p * c.weight_decay;
            }
            if c.momentum != 0.0 {
                // buf = μ·buf + (1 - τ)·d, starting from buf = d
                let buf = match &self.buffers[i] {
                    Some(b) => b * c.momentum + &d * (1.0 - c.dampening),
                    None => d.clone(),
                };
                d = if c.nesterov {
                    d + &buf * c.momentum
                } else {
                    buf.clone()
                };
                self.buffers[i] = Some(buf);
            }
            out.push(Some(p - d * c.lr));
        }
        out
    }

    fn state(&self) -> Vec<Tensor> {
        self.buffers.iter().flatten().cloned().collect()
    }

    fn kind(&self) -> &'static str {
        "sgd"
    }

    fn state_dict(&self) -> Vec<(String, Tensor)> {
        named("momentum", &self.buffers)
    }

    fn load_state_dict(&mut self, state: &HashMap<String, Tensor>) {
        restore("momentum", &mut self.buffers, state);
    }

    fn learning_rate(&self) -> f32 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.config.lr = lr;
    }
}

/// Adam and AdamW (PyTorch's `torch.optim.Adam` / `AdamW`).
pub struct Adam {
    params: Vec<Tensor>,
    /// Hyper-parameters; may be changed between steps.
    pub config: AdamConfig,
    m: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    steps: Vec<u32>,
}

/// Hyper-parameters of [`Adam`] / AdamW.
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the running mean of gradients.
    pub beta1: f32,
    /// Decay of the running mean of squared gradients.
    pub beta2: f32,
    /// Added to the denominator for stability.
    pub eps: f32,
    /// Weight decay: an L2 term in the gradient (Adam), or decoupled (AdamW).
    pub weight_decay: f32,
    /// Decoupled weight decay (AdamW) instead of an L2 term added to the gradient (Adam).
    pub decoupled: bool,
}

impl Default for AdamConfig {
    /// Adam's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

impl AdamConfig {
    /// AdamW's defaults: as Adam, with decoupled weight decay 1e-2.
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 1e-2,
            decoupled: true,
            ..Default::default()
        }
    }
}

impl Adam {
    /// Adam with learning rate `lr` and the other defaults.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Adam {
        Self::with_config(
            params,
            AdamConfig {
                lr,
                ..Default::default()
            },
        )
    }

    /// AdamW with learning rate `lr` and weight decay 1e-2.
    pub fn adamw(params: Vec<Tensor>, lr: f32) -> Adam {
        Self::with_config(
            params,
            AdamConfig {
                lr,
                ..AdamConfig::adamw()
            },
        )
    }

    /// Adam or AdamW with the given hyper-parameters.
    pub fn with_config(params: Vec<Tensor>, config: AdamConfig) -> Adam {
        let n = params.len();
        Adam {
            params,
            config,
            m: vec![None; n],
            v: vec![None; n],
            steps: vec![0; n],
        }
    }
}

impl Optimizer for Adam {
    fn params(&self) -> &[Tensor] {
        &self.params
    }

    fn build(&mut self, grads: &[Option<Tensor>]) -> Vec<Option<Tensor>> {
        let c = self.config;
        let mut out = Vec::with_capacity(grads.len());
        for (i, (p, g)) in self.params.iter().zip(grads).enumerate() {
            let Some(g) = g else {
                out.push(None);
                continue;
            };
            self.steps[i] += 1;
            let t = self.steps[i] as i32;
            let mut p = p.detach();
            let mut g = g.clone();
            if c.weight_decay != 0.0 {
                if c.decoupled {
                    p = &p * (1.0 - c.lr * c.weight_decay);
                } else {
                    g = g + &p * c.weight_decay;
                }
            }
            // m = β1·m + (1-β1)·g,  v = β2·v + (1-β2)·g²
            let m = match &self.m[i] {
                Some(m) => m * c.beta1 + &g * (1.0 - c.beta1),
                None => &g * (1.0 - c.beta1),
            };
            let g2 = &g * &g;
            let v = match &self.v[i] {
                Some(v) => v * c.beta2 + g2 * (1.0 - c.beta2),
                None => g2 * (1.0 - c.beta2),
            };
            // p -= lr/(1-β1^t) · m / (√v / √(1-β2^t) + ε)
            let bc1 = 1.0 - c.beta1.powi(t);
            let bc2 = 1.0 - c.beta2.powi(t);
            let denom = (v.sqrt() * (1.0 / bc2.sqrt())).add(&scalar(&v, c.eps));
            out.push(Some(p - (&m / denom) * (c.lr / bc1)));
            self.m[i] = Some(m);
            self.v[i] = Some(v);
        }
        out
    }

    fn state(&self) -> Vec<Tensor> {
        self.m.iter().chain(&self.v).flatten().cloned().collect()
    }

    fn kind(&self) -> &'static str {
        "adam"
    }

    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = named("m", &self.m);
        out.extend(named("v", &self.v));
        if let Some(p) = self.params.first() {
            let steps: Vec<f32> = self.steps.iter().map(|&s| s as f32).collect();
            let n = steps.len();
            // Step counts are exact in f32 up to 2^24.
            if let Ok(t) = Tensor::from_slice(p.device(), &steps, &[n]) {
                out.push(("steps".to_string(), t));
            }
        }
        out
    }

    fn load_state_dict(&mut self, state: &HashMap<String, Tensor>) {
        restore("m", &mut self.m, state);
        restore("v", &mut self.v, state);
        let steps = state.get("steps").and_then(|t| t.to_vec().ok());
        for (i, s) in self.steps.iter_mut().enumerate() {
            *s = steps
                .as_ref()
                .and_then(|v| v.get(i))
                .map_or(0, |&x| x as u32);
        }
    }

    fn learning_rate(&self) -> f32 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.config.lr = lr;
    }
}

/// RMSprop (PyTorch's `torch.optim.RMSprop`), optionally centred and with momentum.
pub struct RmsProp {
    params: Vec<Tensor>,
    /// Hyper-parameters; may be changed between steps.
    pub config: RmsPropConfig,
    square_avg: Vec<Option<Tensor>>,
    grad_avg: Vec<Option<Tensor>>,
    momentum: Vec<Option<Tensor>>,
}

/// Hyper-parameters of [`RmsProp`].
#[derive(Clone, Copy, Debug)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the running mean of squared gradients.
    pub alpha: f32,
    /// Added to the denominator for stability.
    pub eps: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Momentum factor (0 = none).
    pub momentum: f32,
    /// Normalise by the variance of the gradient instead of its second moment.
    pub centered: bool,
}

impl Default for RmsPropConfig {
    /// PyTorch's defaults: lr 1e-2, alpha 0.99, eps 1e-8.
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

impl RmsProp {
    /// RMSprop with learning rate `lr` and the other defaults.
    pub fn new(params: Vec<Tensor>, lr: f32) -> RmsProp {
        Self::with_config(
            params,
            RmsPropConfig {
                lr,
                ..Default::default()
            },
        )
    }

    /// RMSprop with the given hyper-parameters.
    pub fn with_config(params: Vec<Tensor>, config: RmsPropConfig) -> RmsProp {
        let n = params.len();
        RmsProp {
            params,
            config,
            square_avg: vec![None; n],
            grad_avg: vec![None; n],
            momentum: vec![None; n],
        }
    }
}

impl Optimizer for RmsProp {
    fn params(&self) -> &[Tensor] {
        &self.params
    }

    fn build(&mut self, grads: &[Option<Tensor>]) -> Vec<Option<Tensor>> {
        let c = self.config;
        let mut out = Vec::with_capacity(grads.len());
        for (i, (p, g)) in self.params.iter().zip(grads).enumerate() {
            let Some(g) = g else {
                out.push(None);
                continue;
            };
            let p = p.detach();
            let mut g = g.clone();
            if c.weight_decay != 0.0 {
                g = g + &p * c.weight_decay;
            }
            // v = α·v + (1-α)·g²
            let g2 = &g * &g;
            let v = match &self.square_avg[i] {
                Some(v) => v * c.alpha + g2 * (1.0 - c.alpha),
                None => g2 * (1.0 - c.alpha),
            };
            let mut avg = v.clone();
            if c.centered {
                let ga = match &self.grad_avg[i] {
                    Some(a) => a * c.alpha + &g * (1.0 - c.alpha),
                    None => &g * (1.0 - c.alpha),
                };
                avg = avg - &ga * &ga;
                self.grad_avg[i] = Some(ga);
            }
            let denom = avg.sqrt().add(&scalar(&v, c.eps));
            let new = if c.momentum > 0.0 {
                // buf = μ·buf + g/denom, p -= lr·buf
                let step = &g / denom;
                let buf = match &self.momentum[i] {
                    Some(b) => b * c.momentum + step,
                    None => step,
                };
                let new = p - &buf * c.lr;
                self.momentum[i] = Some(buf);
                new
            } else {
                p - (g / denom) * c.lr
            };
            out.push(Some(new));
            self.square_avg[i] = Some(v);
        }
        out
    }

    fn state(&self) -> Vec<Tensor> {
        self.square_avg
            .iter()
            .chain(&self.grad_avg)
            .chain(&self.momentum)
            .flatten()
            .cloned()
            .collect()
    }

    fn kind(&self) -> &'static str {
        "rmsprop"
    }

    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = named("square_avg", &self.square_avg);
        out.extend(named("grad_avg", &self.grad_avg));
        out.extend(named("momentum", &self.momentum));
        out
    }

    fn load_state_dict(&mut self, state: &HashMap<String, Tensor>) {
        restore("square_avg", &mut self.square_avg, state);
        restore("grad_avg", &mut self.grad_avg, state);
        restore("momentum", &mut self.momentum, state);
    }

    fn learning_rate(&self) -> f32 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.config.lr = lr;
    }
}

/// Scales the gradients of `params` together so that their total 2-norm is at most
/// `max_norm`, as PyTorch's `clip_grad_norm_`: each becomes `g · min(1, max_norm / (norm +
/// 1e-6))`. Returns the total norm before clipping. Everything stays lazy, so the clipping
/// rides along with the optimizer step's submission. Parameters without a gradient are
/// skipped. Panics when `params` is empty.
#[track_caller]
pub fn clip_grad_norm(grads: &mut Grads, params: &[Tensor], max_norm: f32) -> Tensor {
    let device = match params.first() {
        Some(p) => p.device().clone(),
        None => panic!("clip_grad_norm: no parameters"),
    };
    let with: Vec<&Tensor> = params.iter().filter(|p| grads.get(p).is_some()).collect();
    no_grad(|| {
        let mut total = Tensor::zeros(&device, &[]);
        for p in &with {
            let g = grads.wrt(p);
            total = total + (g * g).sum_all();
        }
        let norm = total.sqrt();
        let scale = (norm.add_scalar(1e-6).scalar_like(max_norm) / norm.add_scalar(1e-6))
            .minimum(&norm.scalar_like(1.0));
        for p in &with {
            let clipped = grads.wrt(p) * &scale;
            grads.replace(p, clipped);
        }
        norm
    })
}

/// Clamps every gradient of `params` to `[-clip, clip]`, as PyTorch's `clip_grad_value_`.
pub fn clip_grad_value(grads: &mut Grads, params: &[Tensor], clip: f32) {
    no_grad(|| {
        for p in params {
            if let Some(g) = grads.get(p) {
                let clamped = g
                    .minimum(&g.scalar_like(clip))
                    .maximum(&g.scalar_like(-clip));
                grads.replace(p, clamped);
            }
        }
    })
}
