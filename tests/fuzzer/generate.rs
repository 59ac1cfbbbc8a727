//! Seeded random programs over the whole op set: elementwise chains with random constants and
//! broadcasting, reductions over random axes, matrix products and convolutions with
//! elementwise epilogues, pooling, layout ops, gathers and softmax losses. A large case puts
//! more than 65,536 elements on a reduced axis.

use wgrad::graph::{BinaryOp, Conv2dSpec, Pool2dSpec, UnaryOp};
use wgrad::nn::Rng;
use wgrad::{DType, Device, Tensor};

use super::program::{lazy_leaf, Leaf, Node, Program, Value};

/// Builds a program value by value, knowing each value's shape (from lazy tensors, nothing
/// computed), whether it is exact, and a rough bound on its magnitude.
struct Gen {
    rng: Rng,
    large: bool,
    program: Program,
    dev: Device,
    shadow: Vec<Tensor>,
    exact: Vec<bool>,
    bound: Vec<f32>,
}

/// Sizes that break kernels: 1, odd sizes, and sizes around multiples of 4 and of 16.
const DIMS: [usize; 14] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17, 33];

/// A random program from `seed`; `large` puts more than 65,536 elements on a reduced axis.
pub fn generate(seed: u64, large: bool) -> Program {
    let mut g = Gen {
        rng: Rng::new(seed),
        large,
        program: Program::default(),
        dev: wgrad::cpu(),
        shadow: Vec::new(),
        exact: Vec::new(),
        bound: Vec::new(),
    };
    let out = match g.rng.below(16) {
        0..=4 => g.chain(),
        5..=7 => g.matmul(),
        8..=10 => g.conv(),
        11..=12 => g.layout(),
        13..=14 => g.gather(),
        _ => g.softmax(),
    };
    let steps = g.rng.below(3);
    let mut out = out;
    for _ in 0..steps {
        out = g.step(out);
    }
    if g.dtype(out) == DType::U32 {
        g.node(Node::Cast(out, DType::F32));
    }
    g.program
}

impl Gen {
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.below(items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.uniform() < p
    }

    fn dim(&mut self) -> usize {
        self.pick(&DIMS)
    }

    fn big(&mut self) -> usize {
        65_537 + self.rng.below(80_000)
    }

    fn shape(&self, v: usize) -> Vec<usize> {
        self.shadow[v].shape().to_vec()
    }

    fn dtype(&self, v: usize) -> DType {
        self.shadow[v].dtype()
    }

    fn leaf(&mut self, leaf: Leaf) -> usize {
        let bound = match &leaf {
            Leaf::F32 { lo, hi, .. } => lo.abs().max(hi.abs()),
            _ => 1.0,
        };
        self.shadow.push(lazy_leaf(&self.dev, &leaf));
        let seed = self.rng.next_u64();
        self.program.values.push(Value::Leaf(leaf, seed));
        self.exact.push(true);
        self.bound.push(bound);
        self.shadow.len() - 1
    }

    /// An f32 input: distinct values (when exact values are wanted), or uniform ones.
    fn input(&mut self, shape: &[usize], distinct: bool) -> usize {
        let shape = shape.to_vec();
        if distinct {
            return self.leaf(Leaf::Distinct { shape });
        }
        let special = !self.large && self.chance(0.08);
        let (lo, hi) = self.pick(&[(-1.0, 1.0), (-1.0, 1.0), (0.5, 2.0), (-3.0, 3.0)]);
        self.leaf(Leaf::F32 {
            shape,
            lo,
            hi,
            special,
        })
    }

    fn node(&mut self, node: Node) -> usize {
        let t = node.apply(&self.shadow);
        let exact = node.exact(&self.exact);
        let b = |i: usize| self.bound[i];
        let count = |v: usize, axes: &[usize]| -> f32 {
            let s = self.shadow[v].shape();
            axes.iter().map(|&a| s[a]).product::<usize>() as f32
        };
        let bound = match &node {
            Node::Unary(u, a) => match u {
                UnaryOp::Exp => b(*a).exp(),
                UnaryOp::Sigmoid | UnaryOp::Tanh | UnaryOp::Erf | UnaryOp::Sign => 1.0,
                UnaryOp::IsNan | UnaryOp::IsInf | UnaryOp::IsFinite => 1.0,
                _ => b(*a),
            },
            Node::Binary(op, x, y) => match op {
                BinaryOp::Mul => b(*x) * b(*y),
                op if op.is_comparison() => 1.0,
                _ => b(*x) + b(*y),
            },
            Node::Scalar(op, x, c) => match op {
                BinaryOp::Mul => b(*x) * c.abs(),
                _ => b(*x) + c.abs(),
            },
            Node::SafeLog(a) => (b(*a) + 1.0).ln(),
            Node::SafeSqrt(a) => (b(*a) + 0.5).sqrt(),
            Node::SafeDiv(x, _) => 2.0 * b(*x),
            Node::SafePow(a, c) => (b(*a) + 0.5).powf(*c).max(2f32.powf(-*c)),
            Node::Where(_, x, y) => b(*x).max(b(*y)),
            Node::Sum(a, axes, _) => b(*a) * count(*a, axes),
            Node::MatMul(x, y, ta, _) => {
                let s = self.shadow[*x].shape();
                let k = if *ta { s[s.len() - 2] } else { s[s.len() - 1] };
                b(*x) * b(*y) * k as f32
            }
            Node::Conv2d(x, w, _) => {
                let ws = self.shadow[*w].shape();
                b(*x) * b(*w) * ws[1..].iter().product::<usize>() as f32
            }
            Node::Cast(a, _) => b(*a).max(4096.0),
            Node::OneHot(..) | Node::Softmax(..) => 1.0,
            Node::LogSoftmax(a, _) => 2.0 * b(*a) + 12.0,
            Node::Concat(xs, _) => xs.iter().map(|&x| b(x)).fold(0.0, f32::max),
            _ => b(node.inputs()[0]),
        };
        self.program.values.push(Value::Node(node));
        self.shadow.push(t);
        self.exact.push(exact);
        self.bound.push(bound);
        self.shadow.len() - 1
    }

    /// A shape that broadcasts to `shape`: some dimensions 1, some leading ones dropped.
    fn broadcastable(&mut self, shape: &[usize]) -> Vec<usize> {
        let drop = self.rng.below(shape.len() + 1).min(shape.len());
        let mut s: Vec<usize> = shape[drop..].to_vec();
        for d in s.iter_mut() {
            if self.chance(0.4) {
                *d = 1;
            }
        }
        s
    }

    /// Random distinct axes of a rank-`rank` value (at least one), in order.
    fn axes(&mut self, rank: usize) -> Vec<usize> {
        let mut axes: Vec<usize> = (0..rank).filter(|_| self.chance(0.5)).collect();
        if axes.is_empty() && rank > 0 {
            axes.push(self.rng.below(rank));
        }
        axes
    }

    /// One random elementwise, reduction or layout op on `x`.
    fn step(&mut self, x: usize) -> usize {
        let shape = self.shape(x);
        let rank = shape.len();
        match self.rng.below(10) {
            0..=2 => self.unary(x),
            3 => {
                let op = self.pick(&[BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Mul]);
                let c = self.pick(&[0.5, -2.0, 0.25, 3.0, -0.75, 1.5]);
                let c = c * (1.0 + self.rng.below(8) as f32 / 8.0);
                self.node(Node::Scalar(op, x, c))
            }
            4 | 5 => {
                let other = self.broadcastable(&shape);
                let distinct = self.exact[x] && self.chance(0.5);
                let y = self.input(&other, distinct);
                self.binary(x, y)
            }
            6 => match self.rng.below(3) {
                0 => self.node(Node::SafeLog(x)),
                1 => self.node(Node::SafeSqrt(x)),
                _ => {
                    let c = self.pick(&[2.0, 0.5, 3.0, -1.0]);
                    self.node(Node::SafePow(x, c))
                }
            },
            7 if rank > 0 => {
                let axes = self.axes(rank);
                let keep = self.chance(0.5);
                match self.rng.below(3) {
                    0 => self.node(Node::Mean(x, axes, keep)),
                    _ => self.node(Node::Sum(x, axes, keep)),
                }
            }
            8 if self.chance(0.3) => {
                let p = self.pick(&[0.1, 0.25, 0.5]);
                let seed = self.rng.next_u64();
                self.node(Node::Dropout(x, p, seed))
            }
            8 if rank >= 2 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                self.rng.shuffle(&mut perm);
                self.node(Node::Permute(x, perm))
            }
            9 if rank >= 2 => {
                let merged: Vec<usize> = std::iter::once(shape[0] * shape[1])
                    .chain(shape[2..].iter().copied())
                    .collect();
                self.node(Node::Reshape(x, merged))
            }
            _ => self.unary(x),
        }
    }

    fn unary(&mut self, x: usize) -> usize {
        use UnaryOp::*;
        let mut ops = vec![Neg, Abs, Relu, Sigmoid, Tanh, Erf, Gelu, LeakyRelu(0.1)];
        if self.bound[x] <= 20.0 {
            ops.push(Exp);
        }
        if self.exact[x] {
            ops.extend([Sign, IsNan, IsFinite, IsInf]);
        }
        let mut u = self.pick(&ops);
        if let LeakyRelu(_) = u {
            u = LeakyRelu(self.pick(&[0.01, 0.1, 0.2, 0.3]));
        }
        self.node(Node::Unary(u, x))
    }

    /// `x op y` for broadcast-compatible values; comparisons and extremes only between
    /// exact values (a comparison then selects between them).
    fn binary(&mut self, x: usize, y: usize) -> usize {
        if self.exact[x] && self.exact[y] && self.chance(0.4) {
            let cmp = self.pick(&[
                BinaryOp::Gt,
                BinaryOp::Lt,
                BinaryOp::Ge,
                BinaryOp::Le,
                BinaryOp::Eq,
                BinaryOp::Ne,
                BinaryOp::Maximum,
                BinaryOp::Minimum,
            ]);
            let c = self.node(Node::Binary(cmp, x, y));
            if cmp.is_comparison() && self.chance(0.7) {
                return self.node(Node::Where(c, x, y));
            }
            return c;
        }
        match self.rng.below(5) {
            0 => self.node(Node::SafeDiv(x, y)),
            k => {
                let op = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Add][k - 1];
                self.node(Node::Binary(op, x, y))
            }
        }
    }

    /// Elementwise chains and reductions over random axes.
    fn chain(&mut self) -> usize {
        let shape: Vec<usize> = if self.large {
            let rank = 1 + self.rng.below(3);
            let big_axis = self.rng.below(rank);
            (0..rank)
                .map(|d| {
                    if d == big_axis {
                        self.big()
                    } else {
                        self.pick(&[1, 2, 3])
                    }
                })
                .collect()
        } else {
            let rank = 1 + self.rng.below(4);
            (0..rank).map(|_| self.dim()).collect()
        };
        let exact_path = self.chance(0.4);
        let x = self.input(&shape, exact_path);
        let mut cur = x;
        for _ in 0..1 + self.rng.below(3) {
            cur = if exact_path {
                self.exact_step(cur)
            } else {
                self.step_elementwise(cur)
            };
        }
        let rank = self.shape(cur).len();
        let mut axes = self.axes(rank);
        if self.large {
            // Every large case reduces its long axis.
            let long = (0..rank).max_by_key(|&d| self.shape(cur)[d]).unwrap_or(0);
            if !axes.contains(&long) {
                axes.push(long);
                axes.sort_unstable();
            }
        }
        let keep = self.chance(0.5);
        let reduced = match (self.exact[cur], self.rng.below(4)) {
            (true, 0) => self.node(Node::Max(cur, axes, keep)),
            (true, 1) => {
                let axis = axes[self.rng.below(axes.len())];
                self.node(Node::Argmax(cur, axis, keep))
            }
            (_, 2) => self.node(Node::Mean(cur, axes, keep)),
            _ => self.node(Node::Sum(cur, axes, keep)),
        };
        if self.dtype(reduced) == DType::U32 {
            return self.node(Node::Cast(reduced, DType::F32));
        }
        reduced
    }

    /// An elementwise op on `x` (with a broadcast input, or not).
    fn step_elementwise(&mut self, x: usize) -> usize {
        if self.chance(0.5) {
            return self.unary(x);
        }
        let shape = self.shape(x);
        let other = self.broadcastable(&shape);
        let y = self.input(&other, false);
        self.binary(x, y)
    }

    /// An op that keeps `x` exact: sign flips, relu, extremes with an exact input.
    fn exact_step(&mut self, x: usize) -> usize {
        use UnaryOp::*;
        match self.rng.below(4) {
            0 => {
                let u = self.pick(&[Neg, Abs, Relu]);
                self.node(Node::Unary(u, x))
            }
            _ => {
                let shape = self.shape(x);
                let other = self.broadcastable(&shape);
                let y = self.input(&other, true);
                let op = self.pick(&[BinaryOp::Maximum, BinaryOp::Minimum]);
                self.node(Node::Binary(op, x, y))
            }
        }
    }

    /// A matrix product, possibly batched, broadcast or transposed, with an epilogue.
    fn matmul(&mut self) -> usize {
        let (m, k, n) = if self.large {
            (1 + self.rng.below(5), self.big(), self.pick(&[1, 3, 4, 8]))
        } else {
            match self.rng.below(3) {
                0 => (self.dim(), self.dim(), self.dim()),
                // Multiples of 4: the vec4 kernels; past 64 rows several uniform windows.
                1 => (4 * self.dim(), 4 * self.dim(), 4 * self.dim()),
                _ => (
                    1 + self.rng.below(80),
                    4 * (1 + self.rng.below(40)),
                    4 * self.dim(),
                ),
            }
        };
        let batch: Vec<usize> = if self.large {
            vec![]
        } else {
            (0..self.rng.below(3))
                .map(|_| self.pick(&[1, 2, 3]))
                .collect()
        };
        let (ta, tb) = (self.chance(0.25), self.chance(0.25));
        let mut sa = if self.chance(0.3) {
            vec![]
        } else {
            batch.clone()
        };
        let mut sb = if self.chance(0.3) && !sa.is_empty() {
            vec![]
        } else {
            batch.clone()
        };
        sa.extend(if ta { [k, m] } else { [m, k] });
        sb.extend(if tb { [n, k] } else { [k, n] });
        let a = self.input(&sa, false);
        let b = self.input(&sb, false);
        let p = self.node(Node::MatMul(a, b, ta, tb));
        self.epilogue(p, 1)
    }

    /// 0 to 3 elementwise ops after a product: a bias along one axis, an activation, a scalar.
    fn epilogue(&mut self, p: usize, channel_axis: usize) -> usize {
        let mut cur = p;
        for _ in 0..self.rng.below(4) {
            let shape = self.shape(cur);
            cur = match self.rng.below(4) {
                0 => {
                    // A bias varying along the channel axis from the right (or the last).
                    let rank = shape.len();
                    let axis = rank.saturating_sub(channel_axis).min(rank - 1);
                    let bias: Vec<usize> = (axis..rank)
                        .map(|d| if d == axis { shape[d] } else { 1 })
                        .collect();
                    let b = self.input(&bias, false);
                    self.node(Node::Binary(BinaryOp::Add, cur, b))
                }
                1 => {
                    let c = self.pick(&[0.5, 0.25, 2.0, -3.0, 1.25]);
                    let op = self.pick(&[BinaryOp::Mul, BinaryOp::Add]);
                    self.node(Node::Scalar(op, cur, c))
                }
                _ => self.unary(cur),
            };
        }
        cur
    }

    /// A convolution (groups, strides, padding, dilation) with an epilogue, then maybe
    /// pooling and a reduction.
    fn conv(&mut self) -> usize {
        let groups = if self.large { 1 } else { self.pick(&[1, 1, 2]) };
        let (n, cg, og, hw, k) = if self.large {
            match self.rng.below(3) {
                // Weight and bias gradients over n·oh·ow > 65,536 terms.
                0 | 1 => (
                    96 + self.rng.below(33),
                    1 + self.rng.below(2),
                    2 + self.rng.below(5),
                    28,
                    3,
                ),
                // Direct kernels over 600-odd input channels.
                _ => (
                    1 + self.rng.below(2),
                    600 + self.rng.below(100),
                    self.pick(&[3, 8]),
                    6,
                    3,
                ),
            }
        } else {
            let k = self.pick(&[1, 2, 3]);
            (
                1 + self.rng.below(3),
                1 + self.rng.below(4),
                1 + self.rng.below(6),
                k + 2 + self.rng.below(9),
                k,
            )
        };
        let spec = if self.large {
            Conv2dSpec::default()
        } else {
            Conv2dSpec {
                stride: [1 + self.rng.below(2), 1 + self.rng.below(2)],
                padding: [self.rng.below(2), self.rng.below(2)],
                dilation: if k > 1 && self.chance(0.2) {
                    [2, 1]
                } else {
                    [1, 1]
                },
                groups,
            }
        };
        let width = hw + self.rng.below(2);
        let x = self.input(&[n, cg * groups, hw, width], false);
        let transposed = !self.large && self.chance(0.25);
        let y = if transposed {
            // Weights [c_in, c_out / groups, kh, kw]; output padding below the stride.
            let w = self.input(&[cg * groups, og, k, k], false);
            let pad = [
                self.rng.below(spec.stride[0].max(spec.dilation[0])),
                self.rng.below(spec.stride[1].max(spec.dilation[1])),
            ];
            let pad = [
                pad[0].min(spec.stride[0] - 1),
                pad[1].min(spec.stride[1] - 1),
            ];
            self.node(Node::ConvTranspose2d(x, w, spec, pad))
        } else {
            let w = self.input(&[og * groups, cg, k, k], false);
            self.node(Node::Conv2d(x, w, spec))
        };
        let mut cur = self.epilogue(y, 3);
        let [h, wd] = [self.shape(cur)[2], self.shape(cur)[3]];
        if !self.large && h >= 2 && wd >= 2 && self.chance(0.5) {
            let spec = match self.rng.below(3) {
                0 => Pool2dSpec::square(2),
                1 => Pool2dSpec {
                    kernel: [2, 2],
                    stride: [1, 1],
                    padding: [0, 0],
                    ceil_mode: false,
                    count_include_pad: true,
                },
                _ => Pool2dSpec {
                    kernel: [3, 3],
                    stride: [1, 2],
                    padding: [1, 1],
                    ceil_mode: false,
                    count_include_pad: self.chance(0.5),
                },
            };
            if self.exact[cur] && self.chance(0.7) || !self.exact[cur] && self.chance(0.3) {
                // Max pooling needs exact values: pool a relu of the input itself.
                if !self.exact[cur] {
                    cur = self.node(Node::Unary(UnaryOp::Relu, x));
                }
                cur = self.node(Node::MaxPool(cur, spec));
            } else {
                cur = self.node(Node::AvgPool(cur, spec));
            }
        }
        if self.chance(0.5) {
            let axes = self.axes(4);
            let keep = self.chance(0.5);
            cur = self.node(Node::Sum(cur, axes, keep));
        }
        cur
    }

    /// Layout ops: permutes, slices, pads, concatenations, broadcasts and reshapes.
    fn layout(&mut self) -> usize {
        let rank = 2 + self.rng.below(3);
        let shape: Vec<usize> = (0..rank).map(|_| self.dim()).collect();
        let distinct = self.chance(0.5);
        let x = self.input(&shape, distinct);
        let mut cur = x;
        for _ in 0..1 + self.rng.below(4) {
            let shape = self.shape(cur);
            let rank = shape.len();
            cur = match self.rng.below(6) {
                0 => {
                    let mut perm: Vec<usize> = (0..rank).collect();
                    self.rng.shuffle(&mut perm);
                    self.node(Node::Permute(cur, perm))
                }
                1 => {
                    let ranges = shape
                        .iter()
                        .map(|&d| {
                            let a = self.rng.below(d);
                            (a, a + 1 + self.rng.below(d - a))
                        })
                        .collect();
                    self.node(Node::Slice(cur, ranges))
                }
                2 => {
                    let before = (0..rank).map(|_| self.rng.below(3)).collect();
                    let after = (0..rank).map(|_| self.rng.below(3)).collect();
                    self.node(Node::Pad(cur, before, after))
                }
                3 => {
                    let axis = self.rng.below(rank);
                    let mut other = shape.clone();
                    other[axis] = self.dim();
                    let y = self.input(&other, self.exact[cur]);
                    let (a, b) = if self.chance(0.5) { (cur, y) } else { (y, cur) };
                    self.node(Node::Concat(vec![a, b], axis))
                }
                4 if rank < 5 => {
                    // A size-1 axis in front, broadcast to 2 or 3.
                    let mut one = vec![1];
                    one.extend(&shape);
                    let r = self.node(Node::Reshape(cur, one));
                    let mut wide = vec![self.pick(&[2, 3])];
                    wide.extend(&shape);
                    self.node(Node::Expand(r, wide))
                }
                _ => {
                    let flat = vec![shape.iter().product()];
                    self.node(Node::Reshape(cur, flat))
                }
            };
        }
        let shape = self.shape(cur);
        let other = self.broadcastable(&shape);
        let y = self.input(&other, self.exact[cur]);
        let z = self.binary(cur, y);
        let rank = self.shape(z).len();
        if rank == 0 {
            return z;
        }
        let axes = self.axes(rank);
        self.node(Node::Sum(z, axes, false))
    }

    /// Rows of a table picked by indices (now and then one past the table, which every
    /// backend must refuse), and one-hot labels.
    fn gather(&mut self) -> usize {
        let rows = 1 + self.rng.below(12);
        let mut table_shape = vec![rows];
        table_shape.extend((0..self.rng.below(3)).map(|_| self.dim()));
        let idx_shape: Vec<usize> = (0..1 + self.rng.below(2)).map(|_| self.dim()).collect();
        let bad = self
            .chance(0.08)
            .then(|| self.pick(&[rows as u32, rows as u32 + 7, u32::MAX]));
        let exact = self.chance(0.5);
        let table = self.input(&table_shape, exact);
        let idx = self.leaf(Leaf::Index {
            shape: idx_shape,
            bound: rows as u32,
            bad,
        });
        let g = self.node(Node::Gather(table, idx));
        let g = self.step_elementwise(g);
        let rank = self.shape(g).len();
        let axes = self.axes(rank);
        self.node(Node::Sum(g, axes, false))
    }

    /// Softmax and log-softmax along an axis, and a cross-entropy against one-hot labels.
    fn softmax(&mut self) -> usize {
        let (b, c) = if self.large {
            (1 + self.rng.below(2), self.big())
        } else {
            (self.dim(), self.dim())
        };
        let logits = self.input(&[b, c], false);
        if self.chance(0.5) {
            let axis = self.rng.below(2);
            let s = match self.rng.below(2) {
                0 => self.node(Node::Softmax(logits, axis)),
                _ => self.node(Node::LogSoftmax(logits, axis)),
            };
            return self.step_elementwise(s);
        }
        let bad = self.chance(0.05).then_some(c as u32 + 1);
        let labels = self.leaf(Leaf::Index {
            shape: vec![b],
            bound: c as u32,
            bad,
        });
        let logp = self.node(Node::LogSoftmax(logits, 1));
        let onehot = self.node(Node::OneHot(labels, c));
        let picked = self.node(Node::Binary(BinaryOp::Mul, logp, onehot));
        let per_row = self.node(Node::Sum(picked, vec![1], false));
        self.node(Node::Mean(per_row, vec![0], false))
    }
}
