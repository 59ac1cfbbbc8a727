//! Layers for sequences, with PyTorch's semantics, weight layouts, parameter names and
//! defaults, so that weights saved from PyTorch load by name: [`Embedding`], [`Rnn`],
//! [`Lstm`] and [`Gru`].
//!
//! A recurrent layer projects the inputs of all timesteps in one matrix product, then runs a
//! short fixed graph per timestep: one product with the hidden state, the gate slices and the
//! gate math (which the scheduler fuses into one kernel). Every step of a sequence, forward
//! and backward, is realised in one batch with the rest of the training step.

use std::cell::Cell;

use wgrad_graph::{DType, Device, Error, Result, Tensor};

use crate::layers::Dropout;
use crate::module::Module;
use crate::rng::Rng;

thread_local! {
    /// Timesteps run by every recurrent layer in this thread (see [`cell_steps`]).
    static CELL_STEPS: Cell<u64> = const { Cell::new(0) };
}

/// How many timesteps recurrent layers have added to graphs in this thread so far, counting
/// each layer and direction. With [`Device::stats`] around a training step it gives the
/// dispatches per timestep, which the [`crate::Trainer`] logs at debug level.
pub fn cell_steps() -> u64 {
    CELL_STEPS.with(Cell::get)
}

/// A lookup table of `num` vectors of `dim` values: `u32` ids `[...]` → `[..., dim]`.
/// Weights `[num, dim]` drawn from N(0, 1), as PyTorch's `nn.Embedding`.
pub struct Embedding {
    /// The table `[num, dim]`.
    pub weight: Tensor,
    padding_idx: Option<usize>,
    num: usize,
    dim: usize,
}

impl Embedding {
    /// A table of `num` vectors of `dim` values. With `padding_idx`, that row starts at zero
    /// and gets no gradient (PyTorch's `padding_idx`).
    pub fn new(
        device: &Device,
        num: usize,
        dim: usize,
        padding_idx: Option<usize>,
        rng: &mut Rng,
    ) -> Result<Embedding> {
        // Ids are compared with padding_idx as f32, exact below 2^24.
        if num > 1 << 24 && padding_idx.is_some() {
            return Err(Error::Data(format!(
                "Embedding: padding_idx needs at most 2^24 rows, got {num}"
            )));
        }
        if let Some(p) = padding_idx.filter(|&p| p >= num) {
            return Err(Error::Data(format!(
                "Embedding: padding_idx {p} is past the {num} rows"
            )));
        }
        let mut w: Vec<f32> = (0..num * dim).map(|_| rng.normal()).collect();
        if let Some(p) = padding_idx {
            w[p * dim..(p + 1) * dim].fill(0.0);
        }
        Ok(Embedding {
            weight: Tensor::param(device, &w, &[num, dim])?,
            padding_idx,
            num,
            dim,
        })
    }
}

impl Module for Embedding {
    fn forward(&self, ids: &Tensor) -> Tensor {
        let rows = self.weight.gather(ids);
        let Some(p) = self.padding_idx else {
            return rows;
        };
        // The padding row read from a detached table: its value, without a gradient.
        let fixed = self.weight.detach().gather(ids);
        let as_f32 = ids.cast(DType::F32);
        let at_pad = as_f32
            .eq(&as_f32.scalar_like(p as f32))
            .unsqueeze(ids.shape().len());
        Tensor::select(&at_pad, &fixed, &rows)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".into(), self.weight.clone())]
    }

    fn describe(&self) -> String {
        format!("Embedding({}, {})", self.num, self.dim)
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        let mut out = input.to_vec();
        out.push(self.dim);
        Ok(out)
    }
}

/// Options of a recurrent layer, PyTorch's defaults.
#[derive(Clone, Copy, Debug)]
pub struct RnnConfig {
    /// Stacked layers, each reading the previous one's output sequence.
    pub num_layers: usize,
    /// A second direction per layer, reading the sequence backwards; outputs are joined
    /// along the last axis.
    pub bidirectional: bool,
    /// Inputs and outputs `[batch, time, features]`; else `[time, batch, features]`.
    pub batch_first: bool,
    /// Dropout on the outputs of every layer but the last, while training.
    pub dropout: f32,
    /// Whether the layer has biases.
    pub bias: bool,
    /// Seed of the dropout masks.
    pub seed: u64,
}

impl Default for RnnConfig {
    fn default() -> Self {
        RnnConfig {
            num_layers: 1,
            bidirectional: false,
            batch_first: false,
            dropout: 0.0,
            bias: true,
            seed: 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Lstm,
    Gru,
    /// A plain recurrence, tanh or (with `true`) relu.
    Rnn(bool),
}

impl Kind {
    fn gates(self) -> usize {
        match self {
            Kind::Lstm => 4,
            Kind::Gru => 3,
            Kind::Rnn(_) => 1,
        }
    }
}

/// The weights of one layer in one direction, in PyTorch's layout.
struct Weights {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Option<Tensor>,
    b_hh: Option<Tensor>,
    suffix: String,
}

/// What [`Lstm`] and [`Gru`] share: the stacked, possibly bidirectional recurrence.
struct Recurrent {
    kind: Kind,
    cells: Vec<Weights>,
    input: usize,
    hidden: usize,
    config: RnnConfig,
    between: Option<Dropout>,
    training: Cell<bool>,
}

impl Recurrent {
    fn new(
        kind: Kind,
        device: &Device,
        (input, hidden): (usize, usize),
        config: RnnConfig,
        rng: &mut Rng,
    ) -> Result<Recurrent> {
        if config.num_layers == 0 || hidden == 0 || !(0.0..1.0).contains(&config.dropout) {
            return Err(Error::Data(format!(
                "{kind:?}: needs num_layers >= 1, hidden >= 1 and dropout in [0, 1), got {}, \
                 {hidden} and {}",
                config.num_layers, config.dropout
            )));
        }
        let dirs = 1 + config.bidirectional as usize;
        let g = kind.gates() * hidden;
        // PyTorch: every weight and bias from U(-1/√hidden, 1/√hidden).
        let k = 1.0 / (hidden as f32).sqrt();
        let mut draw = |shape: &[usize]| -> Result<Tensor> {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.range(-k, k)).collect();
            Tensor::param(device, &v, shape)
        };
        let mut cells = Vec::new();
        for layer in 0..config.num_layers {
            let fan_in = if layer == 0 { input } else { hidden * dirs };
            for d in 0..dirs {
                let suffix = format!("l{layer}{}", if d == 1 { "_reverse" } else { "" });
                let w_ih = draw(&[g, fan_in])?;
                let w_hh = draw(&[g, hidden])?;
                let (b_ih, b_hh) = if config.bias {
                    (Some(draw(&[g])?), Some(draw(&[g])?))
                } else {
                    (None, None)
                };
                cells.push(Weights {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    suffix,
                });
            }
        }
        // Seeded with a draw of `rng` too, so that layers built from one config drop
        // independently (drawn only when there is dropout, so other layers' weights are as
        // without it).
        let between = (config.dropout > 0.0 && config.num_layers > 1)
            .then(|| Dropout::new(config.dropout, config.seed ^ rng.next_u64()));
        Ok(Recurrent {
            kind,
            cells,
            input,
            hidden,
            config,
            between,
            training: Cell::new(true),
        })
    }

    fn dirs(&self) -> usize {
        1 + self.config.bidirectional as usize
    }

    /// The output sequence, and the final hidden (and, for an LSTM, cell) states
    /// `[layers · directions, batch, hidden]`, from optional initial states of that shape.
    #[track_caller]
    fn run(
        &self,
        x: &Tensor,
        lengths: Option<&Tensor>,
        (h0, c0): (Option<&Tensor>, Option<&Tensor>),
    ) -> (Tensor, Tensor, Option<Tensor>) {
        let s = x.shape();
        assert!(
            s.len() == 3 && s[2] == self.input,
            "{:?}: input must be [{}, {}, {}], got {s:?}",
            self.kind,
            if self.config.batch_first {
                "batch"
            } else {
                "time"
            },
            if self.config.batch_first {
                "time"
            } else {
                "batch"
            },
            self.input
        );
        let mut seq = if self.config.batch_first {
            x.clone()
        } else {
            x.permute(&[1, 0, 2])
        };
        let (batch, time) = (seq.shape()[0], seq.shape()[1]);
        let dirs = self.dirs();
        // Which steps of each sequence are tokens: [batch, time], 1.0 while t < length.
        let mask = lengths.map(|len| {
            assert_eq!(
                len.shape(),
                &[batch],
                "{:?}: lengths must be [batch]",
                self.kind
            );
            let steps: Vec<f32> = (0..time).map(|t| t as f32).collect();
            let steps = Tensor::from_slice(x.device(), &steps, &[1, time])
                .expect("a time axis fits in memory");
            steps.lt(&len.cast(DType::F32).reshape(&[batch, 1]))
        });
        let initial = |states: Option<&Tensor>, i: usize| {
            states.map(|t| t.narrow(0, i, 1).reshape(&[batch, self.hidden]))
        };
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        for layer in 0..self.config.num_layers {
            let mut outs = Vec::with_capacity(dirs);
            for d in 0..dirs {
                let i = layer * dirs + d;
                let start = (initial(h0, i), initial(c0, i));
                let how = (d == 1, mask.as_ref());
                let (out, h, c) = self.direction(&self.cells[i], &seq, start, how);
                outs.push(out);
                hs.push(h);
                cs.extend(c);
            }
            let refs: Vec<&Tensor> = outs.iter().collect();
            seq = if dirs == 1 {
                outs[0].clone()
            } else {
                Tensor::concat(&refs, 2)
            };
            if layer + 1 < self.config.num_layers {
                if let Some(drop) = &self.between {
                    seq = drop.forward(&seq);
                }
            }
        }
        let stack = |states: &[Tensor]| {
            let parts: Vec<Tensor> = states.iter().map(|t| t.unsqueeze(0)).collect();
            let refs: Vec<&Tensor> = parts.iter().collect();
            Tensor::concat(&refs, 0)
        };
        let output = if self.config.batch_first {
            seq
        } else {
            seq.permute(&[1, 0, 2])
        };
        let c_n = (!cs.is_empty()).then(|| stack(&cs));
        (output, stack(&hs), c_n)
    }

    /// One layer in one direction over `seq` `[batch, time, features]`: its outputs
    /// `[batch, time, hidden]` and final states. With a `mask` `[batch, time]`, padded steps
    /// leave the states as they are and output zeros, so each sequence's final states are
    /// those of its own last step (and, read backwards, its last real step starts from the
    /// initial state), as PyTorch's packed sequences give.
    fn direction(
        &self,
        w: &Weights,
        seq: &Tensor,
        (h0, c0): (Option<Tensor>, Option<Tensor>),
        (reverse, mask): (bool, Option<&Tensor>),
    ) -> (Tensor, Tensor, Option<Tensor>) {
        let (batch, time, features) = (seq.shape()[0], seq.shape()[1], seq.shape()[2]);
        let (hid, gates) = (self.hidden, self.kind.gates() * self.hidden);
        CELL_STEPS.with(|n| n.set(n.get() + time as u64));
        let dev = seq.device();
        // Every timestep's input projection in one product; an LSTM adds both biases here.
        let mut xp = seq
            .reshape(&[batch * time, features])
            .matmul_t(&w.w_ih, false, true);
        if let Some(b) = &w.b_ih {
            xp = xp + b;
        }
        if let (Kind::Lstm | Kind::Rnn(_), Some(b)) = (self.kind, &w.b_hh) {
            xp = xp + b;
        }
        let xp = xp.reshape(&[batch, time, gates]);
        let zeros = || Tensor::zeros(dev, &[batch, hid]);
        let mut h = h0.unwrap_or_else(zeros);
        let mut c = (self.kind == Kind::Lstm).then(|| c0.unwrap_or_else(zeros));
        let mut outs: Vec<Option<Tensor>> = vec![None; time];
        let steps: Vec<usize> = if reverse {
            (0..time).rev().collect()
        } else {
            (0..time).collect()
        };
        for t in steps {
            let xt = xp.narrow(1, t, 1).reshape(&[batch, gates]);
            let hp = h.matmul_t(&w.w_hh, false, true);
            let gate = |g: &Tensor, k: usize| g.narrow(1, k * hid, hid);
            let (h_new, c_new) = match self.kind {
                Kind::Lstm => {
                    let g = xt + hp;
                    let (i, f) = (gate(&g, 0).sigmoid(), gate(&g, 1).sigmoid());
                    let (cand, o) = (gate(&g, 2).tanh(), gate(&g, 3).sigmoid());
                    let c_new = f * c.as_ref().expect("an LSTM has a cell state") + i * cand;
                    (o * c_new.tanh(), Some(c_new))
                }
                Kind::Rnn(relu) => {
                    let g = xt + hp;
                    (if relu { g.relu() } else { g.tanh() }, None)
                }
                Kind::Gru => {
                    let hp = match &w.b_hh {
                        Some(b) => hp + b,
                        None => hp,
                    };
                    let r = (gate(&xt, 0) + gate(&hp, 0)).sigmoid();
                    let z = (gate(&xt, 1) + gate(&hp, 1)).sigmoid();
                    let n = (gate(&xt, 2) + r * gate(&hp, 2)).tanh();
                    // (1 - z)·n + z·h
                    (&n + z * (&h - &n), None)
                }
            };
            match mask.map(|m| m.narrow(1, t, 1)) {
                Some(m) => {
                    outs[t] = Some((&h_new * &m).unsqueeze(1));
                    h = Tensor::select(&m, &h_new, &h);
                    c = c_new.map(|cn| Tensor::select(&m, &cn, c.as_ref().expect("an LSTM")));
                }
                None => {
                    outs[t] = Some(h_new.unsqueeze(1));
                    h = h_new;
                    c = c_new;
                }
            }
        }
        let outs: Vec<Tensor> = outs
            .into_iter()
            .map(|o| o.expect("every step ran"))
            .collect();
        let refs: Vec<&Tensor> = outs.iter().collect();
        (Tensor::concat(&refs, 1), h, c)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for w in &self.cells {
            out.push((format!("weight_ih_{}", w.suffix), w.w_ih.clone()));
            out.push((format!("weight_hh_{}", w.suffix), w.w_hh.clone()));
            if let (Some(bi), Some(bh)) = (&w.b_ih, &w.b_hh) {
                out.push((format!("bias_ih_{}", w.suffix), bi.clone()));
                out.push((format!("bias_hh_{}", w.suffix), bh.clone()));
            }
        }
        out
    }

    fn set_training(&self, training: bool) {
        self.training.set(training);
        if let Some(d) = &self.between {
            d.set_training(training);
        }
    }

    fn describe(&self, name: &str) -> String {
        format!(
            "{name}({} -> {}, layers {}{})",
            self.input,
            self.hidden,
            self.config.num_layers,
            if self.config.bidirectional {
                ", bidirectional"
            } else {
                ""
            }
        )
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        if input.len() != 3 || input[2] != self.input {
            return Err(format!(
                "expects [.., .., {}] sequences, got {input:?}",
                self.input
            ));
        }
        Ok(vec![input[0], input[1], self.hidden * self.dirs()])
    }
}

/// Long short-term memory, as PyTorch's `nn.LSTM`: gates i, f, g, o in that order in
/// `weight_ih_l{k}` `[4·hidden, in]` and `weight_hh_l{k}` `[4·hidden, hidden]`;
/// `c' = f·c + i·g`, `h' = o·tanh(c')`.
pub struct Lstm(Recurrent);

impl Lstm {
    /// An LSTM from `input` features to `hidden` units.
    pub fn new(
        device: &Device,
        input: usize,
        hidden: usize,
        config: RnnConfig,
        rng: &mut Rng,
    ) -> Result<Lstm> {
        Recurrent::new(Kind::Lstm, device, (input, hidden), config, rng).map(Lstm)
    }

    /// The output sequence and the final states `(h_n, c_n)`, each
    /// `[layers · directions, batch, hidden]`, from initial states of that shape (zeros when
    /// `None`).
    #[track_caller]
    pub fn forward_with(
        &self,
        x: &Tensor,
        state: Option<(&Tensor, &Tensor)>,
    ) -> (Tensor, (Tensor, Tensor)) {
        self.forward_padded(x, None, state)
    }

    /// [`Lstm::forward_with`] for a batch of sequences padded at the end: `lengths` `[batch]`
    /// (`u32`) counts each sequence's real steps. Each final state is taken at its sequence's
    /// own last step, padded steps change nothing, and their outputs are zeros.
    #[track_caller]
    pub fn forward_padded(
        &self,
        x: &Tensor,
        lengths: Option<&Tensor>,
        state: Option<(&Tensor, &Tensor)>,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (h0, c0) = state.map_or((None, None), |(h, c)| (Some(h), Some(c)));
        let (out, h, c) = self.0.run(x, lengths, (h0, c0));
        (out, (h, c.expect("an LSTM has a cell state")))
    }
}

/// A plain recurrent layer, as PyTorch's `nn.RNN`: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`
/// (or relu), weights `weight_ih_l{k}` `[hidden, in]` and `weight_hh_l{k}` `[hidden, hidden]`.
pub struct Rnn(Recurrent);

impl Rnn {
    /// A tanh (or, with `relu`, relu) recurrence from `input` features to `hidden` units.
    pub fn new(
        device: &Device,
        input: usize,
        hidden: usize,
        relu: bool,
        config: RnnConfig,
        rng: &mut Rng,
    ) -> Result<Rnn> {
        Recurrent::new(Kind::Rnn(relu), device, (input, hidden), config, rng).map(Rnn)
    }

    /// The output sequence and the final hidden state, as [`Gru::forward_padded`].
    #[track_caller]
    pub fn forward_padded(
        &self,
        x: &Tensor,
        lengths: Option<&Tensor>,
        h0: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let (out, h, _) = self.0.run(x, lengths, (h0, None));
        (out, h)
    }
}

/// Gated recurrent unit, as PyTorch's `nn.GRU`: gates r, z, n in that order;
/// `n = tanh(W_in x + b_in + r·(W_hn h + b_hn))`, `h' = (1 − z)·n + z·h`.
pub struct Gru(Recurrent);

impl Gru {
    /// A GRU from `input` features to `hidden` units.
    pub fn new(
        device: &Device,
        input: usize,
        hidden: usize,
        config: RnnConfig,
        rng: &mut Rng,
    ) -> Result<Gru> {
        Recurrent::new(Kind::Gru, device, (input, hidden), config, rng).map(Gru)
    }

    /// The output sequence and the final hidden state `[layers · directions, batch, hidden]`,
    /// from an initial state of that shape (zeros when `None`).
    #[track_caller]
    pub fn forward_with(&self, x: &Tensor, h0: Option<&Tensor>) -> (Tensor, Tensor) {
        self.forward_padded(x, None, h0)
    }

    /// [`Gru::forward_with`] for sequences padded at the end, as [`Lstm::forward_padded`].
    #[track_caller]
    pub fn forward_padded(
        &self,
        x: &Tensor,
        lengths: Option<&Tensor>,
        h0: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let (out, h, _) = self.0.run(x, lengths, (h0, None));
        (out, h)
    }
}

macro_rules! recurrent_module {
    ($ty:ident) => {
        impl Module for $ty {
            fn forward(&self, x: &Tensor) -> Tensor {
                self.0.run(x, None, (None, None)).0
            }
            fn named_parameters(&self) -> Vec<(String, Tensor)> {
                self.0.named_parameters()
            }
            fn set_training(&self, training: bool) {
                self.0.set_training(training)
            }
            fn named_counters(&self) -> Vec<(String, u64)> {
                let drop = self.0.between.iter();
                drop.flat_map(|d| d.named_counters())
                    .map(|(n, v)| (format!("dropout.{n}"), v))
                    .collect()
            }
            fn set_counter(&self, name: &str, value: u64) -> bool {
                match (name.strip_prefix("dropout."), &self.0.between) {
                    (Some(n), Some(d)) => d.set_counter(n, value),
                    _ => false,
                }
            }
            fn is_training(&self) -> bool {
                self.0.training.get()
            }
            fn describe(&self) -> String {
                self.0.describe(stringify!($ty))
            }
            fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
                self.0.output_shape(input)
            }
        }
    };
}

recurrent_module!(Rnn);
recurrent_module!(Lstm);
recurrent_module!(Gru);
