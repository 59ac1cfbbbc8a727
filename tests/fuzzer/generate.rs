//! Seeded random programs over the whole op set: elementwise chains with random constants and
//! broadcasting, reductions over random axes, matrix products and convolutions with
//! elementwise epilogues, pooling, layout ops, gathers and softmax losses. A large case puts
//! more than 65,536 elements on a reduced axis.

use wgrad::graph::{BinaryOp, UnaryOp};
use wgrad::nn::Rng;
use wgrad::{DType, Device, Tensor};

use super::program::{lazy_leaf, Leaf, Node, Program, Value};

mod scenarios;

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
}
