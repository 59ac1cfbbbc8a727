//! Reverse-mode autodiff as a graph-to-graph pass: the backward rules build new lazy nodes from
//! graph ops and never call kernels. One exhaustive `match` holds every primitive's rule.

use std::collections::{HashMap, HashSet};
use std::f32::consts::PI;

use crate::op::{reduced_shape, BinaryOp, Op, ReduceOp, UnaryOp};
use crate::tensor::{no_grad, Tensor};

/// Gradients of a loss with respect to the trainable leaves it depends on.
pub struct Grads {
    map: HashMap<u64, Tensor>,
    /// Non-differentiable ops found between the loss and trainable tensors.
    blocked: Vec<&'static str>,
}

impl std::fmt::Debug for Grads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Grads({} tensors)", self.map.len())
    }
}

impl Grads {
    /// The gradient for `t`, or `None` when no differentiable path reaches it.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.map.get(&t.id())
    }

    /// The gradient for `t`; panics with the reason when there is none.
    #[track_caller]
    pub fn wrt(&self, t: &Tensor) -> &Tensor {
        if let Some(g) = self.map.get(&t.id()) {
            return g;
        }
        if !t.requires_grad() {
            panic!(
                "no gradient for {t:?}: it is not trainable (create it with Tensor::param or \
                 call set_requires_grad(true))"
            );
        }
        if self.blocked.is_empty() {
            panic!("no gradient for {t:?}: the loss does not depend on it");
        }
        panic!(
            "no gradient for {t:?}: every path from the loss to it goes through an op that is \
             not differentiable ({})",
            self.blocked.join(", ")
        );
    }

    /// Number of trainable tensors that received a gradient.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no trainable tensor received a gradient.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sets the gradient for `t`, which need not have had one (a gradient averaged over
    /// processes, where only another process's loss reached `t`).
    #[track_caller]
    pub fn set(&mut self, t: &Tensor, grad: Tensor) {
        assert_eq!(t.shape(), grad.shape(), "Grads::set: shapes differ");
        self.map.insert(t.id(), grad);
    }

    /// Replaces the gradient for `t` (which must have one), e.g. with a clipped one.
    #[track_caller]
    pub fn replace(&mut self, t: &Tensor, grad: Tensor) {
        let old = self.wrt(t);
        assert_eq!(
            old.shape(),
            grad.shape(),
            "Grads::replace: the shape must stay"
        );
        self.map.insert(t.id(), grad);
    }
}

impl Tensor {
    /// Gradients of this scalar with respect to every trainable leaf it depends on.
    #[track_caller]
    pub fn backward(&self) -> Grads {
        assert_eq!(
            self.numel(),
            1,
            "backward: the loss must have one element, got shape {:?}; use backward_with",
            self.shape()
        );
        self.backward_with(&self.ones_like())
    }

    /// Gradients given the gradient of some objective with respect to this tensor.
    #[track_caller]
    pub fn backward_with(&self, grad: &Tensor) -> Grads {
        assert_eq!(
            self.shape(),
            grad.shape(),
            "backward_with: gradient shape differs"
        );
        let blocked = blocking_ops(self);
        let mut map = HashMap::new();
        if !self.requires_grad() {
            if blocked.is_empty() {
                panic!(
                    "backward: the loss does not depend on any trainable tensor (create \
                     parameters with Tensor::param or set_requires_grad(true))"
                );
            }
            panic!(
                "backward: the loss reaches trainable tensors only through ops that are not \
                 differentiable ({})",
                blocked.join(", ")
            );
        }
        no_grad(|| {
            let order = topo_requiring_grad(self);
            let mut pending: HashMap<u64, Tensor> = HashMap::new();
            pending.insert(self.id(), grad.clone());
            for node in order.iter().rev() {
                let Some(g) = pending.remove(&node.id()) else {
                    continue;
                };
                if node.is_leaf() {
                    map.insert(node.id(), g);
                    continue;
                }
                let inputs = node.0.inputs.borrow().clone();
                let op = node.op().expect("non-leaf has an op");
                for (x, gx) in inputs.iter().zip(vjp(op, &inputs, node, &g)) {
                    let Some(gx) = gx else { continue };
                    if !x.requires_grad() {
                        continue;
                    }
                    // Summing back to a broadcast input's shape happens here, once.
                    let gx = sum_to(gx, x.shape());
                    let total = match pending.remove(&x.id()) {
                        Some(prev) => prev + gx,
                        None => gx,
                    };
                    pending.insert(x.id(), total);
                }
            }
        });
        Grads { map, blocked }
    }
}

/// The vector-Jacobian product of one primitive: the gradient for each input given the
/// gradient `g` of its output `y`, shaped like the output where the input was broadcast.
fn vjp(op: &Op, x: &[Tensor], y: &Tensor, g: &Tensor) -> Vec<Option<Tensor>> {
    let zero = || g.scalar_like(0.0);
    match op {
        Op::Full { .. } | Op::RandUniform { .. } => vec![],
        Op::Unary(u) => {
            let a = &x[0];
            let ga = match u {
                UnaryOp::Neg => -g,
                UnaryOp::Exp => g * y,
                // d/dx log x = 1/x
                UnaryOp::Log => g / a,
                // d/dx √x = 1/(2√x)
                UnaryOp::Sqrt => g * 0.5 / y,
                UnaryOp::Abs => g * a.sign(),
                UnaryOp::Sign => g.zeros_like(),
                // The mask from the output (y > 0 exactly when x > 0), so that backward does
                // not hold the input: the op feeding a relu can then fuse into it.
                UnaryOp::Relu => Tensor::select(&y.gt(&zero()), g, &zero()),
                // σ' = σ(1-σ)
                UnaryOp::Sigmoid => g * y * (y.neg().add_scalar(1.0)),
                // tanh' = 1 - tanh²
                UnaryOp::Tanh => g * (y * y).neg().add_scalar(1.0),
                // erf' = 2/√π · exp(-x²)
                UnaryOp::Erf => g * (a * a).neg().exp().mul_scalar(2.0 / PI.sqrt()),
                // gelu' = Φ(x) + x·φ(x), Φ(x) = (1 + erf(x/√2))/2, φ(x) = exp(-x²/2)/√(2π)
                UnaryOp::Gelu => {
                    let cdf = a
                        .mul_scalar(std::f32::consts::FRAC_1_SQRT_2)
                        .erf()
                        .add_scalar(1.0)
                        * 0.5;
                    let pdf = (a * a)
                        .mul_scalar(-0.5)
                        .exp()
                        .mul_scalar(1.0 / (2.0 * PI).sqrt());
                    g * (cdf + a * pdf)
                }
                UnaryOp::LeakyRelu(slope) => Tensor::select(&a.gt(&zero()), g, &(g * *slope)),
                UnaryOp::IsNan | UnaryOp::IsInf | UnaryOp::IsFinite => return vec![],
            };
            vec![Some(ga)]
        }
        Op::Binary(b) => {
            let (a, c) = (&x[0], &x[1]);
            match b {
                BinaryOp::Add => vec![Some(g.clone()), Some(g.clone())],
                BinaryOp::Sub => vec![Some(g.clone()), Some(-g)],
                BinaryOp::Mul => vec![Some(g * c), Some(g * a)],
                // d(a/c) = da/c - a·dc/c² = da/c - y·dc/c
                BinaryOp::Div => vec![Some(g / c), Some(-(g * y / c))],
                // d(a^c) = c·a^(c-1)·da + y·ln(a)·dc (the latter taken as 0 where a <= 0)
                BinaryOp::Pow => {
                    let ga = g * c * a.pow(&c.add_scalar(-1.0));
                    let gc = g * Tensor::select(&a.gt(&zero()), &(y * a.log()), &zero());
                    vec![Some(ga), Some(gc)]
                }
                // Ties share the gradient equally, like PyTorch.
                BinaryOp::Maximum | BinaryOp::Minimum => {
                    let wins = if *b == BinaryOp::Maximum {
                        a.gt(c)
                    } else {
                        a.lt(c)
                    };
                    let share = wins + a.eq(c) * 0.5;
                    let other = share.neg().add_scalar(1.0);
                    vec![Some(g * share), Some(g * other)]
                }
                BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge => vec![],
            }
        }
        Op::Where => {
            let cond = &x[0];
            vec![
                None,
                Some(Tensor::select(cond, g, &zero())),
                Some(Tensor::select(cond, &zero(), g)),
            ]
        }
        Op::Reduce { op, axes, .. } => {
            let a = &x[0];
            let kept = reduced_shape(a.shape(), axes, true);
            let gk = g.reshape(&kept);
            match op {
                ReduceOp::Sum => vec![Some(gk.expand(a.shape()))],
                // Shared equally among the elements equal to the maximum.
                ReduceOp::Max => {
                    let mask = a.eq(&y.reshape(&kept));
                    let iaxes: Vec<isize> = axes.iter().map(|&d| d as isize).collect();
                    let count = mask.sum(&iaxes, true);
                    vec![Some(gk * mask / count)]
                }
            }
        }
        Op::Argmax { .. } => vec![],
        // With A' = op(A), B' = op(B): dA' = G·B'ᵀ and dB' = A'ᵀ·G, transposed back where
        // the operand was read transposed; every transpose is a flag, never a copy (batch
        // broadcasting summed by the driver).
        Op::MatMul { ta, tb } => {
            let (a, b) = (&x[0], &x[1]);
            let da = if *ta {
                b.matmul_t(g, *tb, true)
            } else {
                g.matmul_t(b, false, !tb)
            };
            // B shared by every batch of an untransposed A (a layer's weight): its gradient
            // is one product over all the batch's rows, not a product per batch summed after.
            let shared = !ta && a.rank() > 2 && b.shape()[..b.rank() - 2].iter().all(|&d| d == 1);
            let db = if shared {
                let (k, n) = (a.shape()[a.rank() - 1], g.shape()[g.rank() - 1]);
                let rows = a.shape()[..a.rank() - 1].iter().product();
                let (a, g) = (a.reshape(&[rows, k]), g.reshape(&[rows, n]));
                let d = if *tb {
                    g.matmul_t(&a, true, false)
                } else {
                    a.matmul_t(&g, true, false)
                };
                d.reshape(b.shape())
            } else if *tb {
                g.matmul_t(a, true, *ta)
            } else {
                a.matmul_t(g, !ta, false)
            };
            vec![Some(da), Some(db)]
        }
        Op::Reshape { .. } => vec![Some(g.reshape(x[0].shape()))],
        Op::Permute { perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            vec![Some(g.permute(&inverse))]
        }
        Op::Expand { .. } => vec![Some(g.clone())],
        Op::Slice { ranges } => {
            let before: Vec<usize> = ranges.iter().map(|r| r.0).collect();
            let after: Vec<usize> = ranges
                .iter()
                .zip(x[0].shape())
                .map(|(r, &d)| d - r.1)
                .collect();
            vec![Some(g.pad(&before, &after))]
        }
        Op::Pad { before, .. } => {
            let ranges: Vec<(usize, usize)> = before
                .iter()
                .zip(x[0].shape())
                .map(|(&b, &d)| (b, b + d))
                .collect();
            vec![Some(g.slice(&ranges))]
        }
        Op::Concat { axis } => {
            let mut start = 0;
            x.iter()
                .map(|t| {
                    let len = t.shape()[*axis];
                    start += len;
                    Some(g.narrow(*axis as isize, start - len, len))
                })
                .collect()
        }
        // d table[v] = Σ over positions i with idx[i] = v of g[i]
        Op::Gather => vec![Some(g.scatter_add(&x[1], x[0].shape()[0])), None],
        // y[v] = Σ over positions i with idx[i] = v of src[i]:  d src[i] = g[idx[i]]
        Op::ScatterAdd { .. } => vec![Some(g.gather(&x[1])), None],
        Op::OneHot { .. } | Op::Cast { .. } => vec![],
        // y = conv(x, w):  dx = conv_grad_input(g, w),  dw = conv_grad_weight(x, g)
        Op::Conv2d(spec) => {
            let (a, w) = (&x[0], &x[1]);
            vec![
                Some(Tensor::from_op(
                    Op::Conv2dGradInput {
                        spec: *spec,
                        input_hw: hw(a),
                    },
                    &[g, w],
                )),
                Some(Tensor::from_op(
                    Op::Conv2dGradWeight {
                        spec: *spec,
                        kernel: hw(w),
                    },
                    &[a, g],
                )),
            ]
        }
        // y = conv_grad_input(h, w) is linear in h and in w:
        // dh = conv(G, w),  dw = conv_grad_weight(G, h)
        Op::Conv2dGradInput { spec, .. } => {
            let (h, w) = (&x[0], &x[1]);
            vec![
                Some(Tensor::from_op(Op::Conv2d(*spec), &[g, w])),
                Some(Tensor::from_op(
                    Op::Conv2dGradWeight {
                        spec: *spec,
                        kernel: hw(w),
                    },
                    &[g, h],
                )),
            ]
        }
        // y = conv_grad_weight(a, h):  da = conv_grad_input(h, G),  dh = conv(a, G)
        Op::Conv2dGradWeight { spec, .. } => {
            let (a, h) = (&x[0], &x[1]);
            vec![
                Some(Tensor::from_op(
                    Op::Conv2dGradInput {
                        spec: *spec,
                        input_hw: hw(a),
                    },
                    &[h, g],
                )),
                Some(Tensor::from_op(Op::Conv2d(*spec), &[a, g])),
            ]
        }
        Op::MaxPool2d(spec) => vec![Some(Tensor::from_op(Op::MaxPool2dGrad(*spec), &[&x[0], g]))],
        Op::MaxPool2dGrad(_) => vec![],
        Op::AvgPool2d(spec) => {
            vec![Some(Tensor::from_op(
                Op::AvgPool2dGrad {
                    spec: *spec,
                    input_hw: hw(&x[0]),
                },
                &[g],
            ))]
        }
        // Average pooling's gradient is linear; its adjoint is the pooling itself.
        Op::AvgPool2dGrad { spec, .. } => vec![Some(Tensor::from_op(Op::AvgPool2d(*spec), &[g]))],
    }
}

/// Height and width of an NCHW tensor (or of a conv weight's kernel).
fn hw(t: &Tensor) -> [usize; 2] {
    [t.shape()[2], t.shape()[3]]
}

/// Sums a gradient shaped like a broadcast result back to the input's `shape`.
fn sum_to(g: Tensor, shape: &[usize]) -> Tensor {
    if g.shape() == shape {
        return g;
    }
    let lead = g.rank() - shape.len();
    let mut axes: Vec<isize> = (0..lead as isize).collect();
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 && g.shape()[lead + d] != 1 {
            axes.push((lead + d) as isize);
        }
    }
    let summed = if axes.is_empty() {
        g
    } else {
        g.sum(&axes, false)
    };
    summed.reshape(shape)
}

/// Nodes that require a gradient, reachable from `root`, inputs first.
fn topo_requiring_grad(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        for x in t.0.inputs.borrow().iter() {
            if x.requires_grad() && !seen.contains(&x.id()) {
                stack.push((x.clone(), false));
            }
        }
    }
    order
}

/// Names of non-differentiable ops that have a trainable tensor upstream.
fn blocking_ops(root: &Tensor) -> Vec<&'static str> {
    let mut names = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root.clone()];
    while let Some(t) = stack.pop() {
        if !seen.insert(t.id()) {
            continue;
        }
        let inputs = t.0.inputs.borrow();
        if let Some(op) = t.op() {
            if !op.differentiable()
                && inputs.iter().any(|x| x.requires_grad())
                && !names.contains(&op.name())
            {
                names.push(op.name());
            }
        }
        stack.extend(inputs.iter().cloned());
    }
    names
}
