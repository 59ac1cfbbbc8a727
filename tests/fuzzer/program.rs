//! A fuzz case as data: leaves and op nodes over wgrad's op set. A program builds on any
//! device, prints as the Rust code that builds it, and is what the shrinker edits.

use std::fmt::Write;

use wgrad::graph::{BinaryOp, Conv2dSpec, Op, Pool2dSpec, UnaryOp};
use wgrad::nn::Rng;
use wgrad::{DType, Device, Result, Tensor};

/// An input of a program.
#[derive(Clone, Debug, PartialEq)]
pub enum Leaf {
    /// f32 values drawn uniformly in `[lo, hi)`; with `special`, about one in 50 is NaN, +∞
    /// or -∞.
    F32 {
        shape: Vec<usize>,
        lo: f32,
        hi: f32,
        special: bool,
    },
    /// Distinct f32 values in `[-1, 1]` in random order: max and argmax have no ties.
    Distinct { shape: Vec<usize> },
    /// u32 indices below `bound`; with `bad`, one of them is `bad` instead.
    Index {
        shape: Vec<usize>,
        bound: u32,
        bad: Option<u32>,
    },
}

/// A leaf's values.
pub enum Data {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

impl Leaf {
    pub fn shape(&self) -> &[usize] {
        match self {
            Leaf::F32 { shape, .. } | Leaf::Distinct { shape } | Leaf::Index { shape, .. } => shape,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Leaf::Index { .. } => DType::U32,
            _ => DType::F32,
        }
    }

    /// The leaf's values, drawn from `seed`.
    pub fn data(&self, seed: u64) -> Data {
        let mut rng = Rng::new(seed);
        let n: usize = self.shape().iter().product();
        match self {
            Leaf::F32 {
                lo, hi, special, ..
            } => Data::F32(
                (0..n)
                    .map(|_| {
                        let v = rng.range(*lo, *hi);
                        match (*special, rng.below(150)) {
                            (true, 0) => f32::NAN,
                            (true, 1) => f32::INFINITY,
                            (true, 2) => f32::NEG_INFINITY,
                            _ => v,
                        }
                    })
                    .collect(),
            ),
            Leaf::Distinct { .. } => {
                let mut v: Vec<f32> = (0..n)
                    .map(|i| -1.0 + 2.0 * (i as f32 + 0.5) / n.max(1) as f32)
                    .collect();
                rng.shuffle(&mut v);
                Data::F32(v)
            }
            Leaf::Index { bound, bad, .. } => {
                let mut v: Vec<u32> = (0..n).map(|_| rng.below(*bound as usize) as u32).collect();
                if let (Some(bad), Some(at)) = (bad, (n > 0).then(|| rng.below(n))) {
                    v[at] = *bad;
                }
                Data::U32(v)
            }
        }
    }

    fn rust(&self) -> String {
        match self {
            Leaf::F32 {
                shape,
                lo,
                hi,
                special,
            } => {
                let special = if *special { ", with NaN and ±inf" } else { "" };
                format!("input({shape:?}, uniform({lo}, {hi}){special})")
            }
            Leaf::Distinct { shape } => format!("input({shape:?}, distinct(-1, 1))"),
            Leaf::Index { shape, bound, bad } => match bad {
                Some(b) => format!("indices({shape:?}, below({bound}), one of them {b})"),
                None => format!("indices({shape:?}, below({bound}))"),
            },
        }
    }
}

/// An op applied to earlier values (by index: the leaves first, then the nodes).
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Unary(UnaryOp, usize),
    Binary(BinaryOp, usize, usize),
    /// `x op c`, the constant passed as a scalar.
    Scalar(BinaryOp, usize, f32),
    /// `log(|x| + 1)`, `sqrt(|x| + 0.5)`, `a / (|b| + 0.5)`, `(|x| + 0.5)^c`: the domain-bound
    /// functions on inputs that keep them finite.
    SafeLog(usize),
    SafeSqrt(usize),
    SafeDiv(usize, usize),
    SafePow(usize, f32),
    Where(usize, usize, usize),
    Sum(usize, Vec<usize>, bool),
    Mean(usize, Vec<usize>, bool),
    Max(usize, Vec<usize>, bool),
    Argmax(usize, usize, bool),
    Cast(usize, DType),
    MatMul(usize, usize, bool, bool),
    Conv2d(usize, usize, Conv2dSpec),
    /// A transposed convolution with its output padding.
    ConvTranspose2d(usize, usize, Conv2dSpec, [usize; 2]),
    /// Inverted dropout: `x · (u >= p) / (1 - p)` with `u` uniform from `seed`.
    Dropout(usize, f32, u64),
    MaxPool(usize, Pool2dSpec),
    AvgPool(usize, Pool2dSpec),
    Reshape(usize, Vec<usize>),
    Permute(usize, Vec<usize>),
    Expand(usize, Vec<usize>),
    Slice(usize, Vec<(usize, usize)>),
    Pad(usize, Vec<usize>, Vec<usize>),
    Concat(Vec<usize>, usize),
    Gather(usize, usize),
    OneHot(usize, usize),
    Softmax(usize, usize),
    LogSoftmax(usize, usize),
}

impl Node {
    /// The values it reads.
    pub fn inputs(&self) -> Vec<usize> {
        use Node::*;
        match self {
            Unary(_, a) | Scalar(_, a, _) | SafeLog(a) | SafeSqrt(a) | SafePow(a, _) => vec![*a],
            Dropout(a, ..) => vec![*a],
            Sum(a, ..) | Mean(a, ..) | Max(a, ..) | Argmax(a, ..) | Cast(a, _) => vec![*a],
            MaxPool(a, _) | AvgPool(a, _) | Reshape(a, _) | Permute(a, _) | Expand(a, _) => {
                vec![*a]
            }
            Slice(a, _) | Pad(a, ..) | OneHot(a, _) | Softmax(a, _) | LogSoftmax(a, _) => vec![*a],
            Binary(_, a, b) | SafeDiv(a, b) | MatMul(a, b, ..) | Conv2d(a, b, _) | Gather(a, b) => {
                vec![*a, *b]
            }
            ConvTranspose2d(a, b, ..) => vec![*a, *b],
            Where(c, a, b) => vec![*c, *a, *b],
            Concat(xs, _) => xs.clone(),
        }
    }

    /// The same node reading `f(i)` where it read `i`.
    pub fn map_inputs(&self, f: impl Fn(usize) -> usize) -> Node {
        use Node::*;
        let mut n = self.clone();
        match &mut n {
            Unary(_, a) | Scalar(_, a, _) | SafeLog(a) | SafeSqrt(a) | SafePow(a, _) => *a = f(*a),
            Dropout(a, ..) => *a = f(*a),
            Sum(a, ..) | Mean(a, ..) | Max(a, ..) | Argmax(a, ..) | Cast(a, _) => *a = f(*a),
            MaxPool(a, _) | AvgPool(a, _) | Reshape(a, _) | Permute(a, _) | Expand(a, _) => {
                *a = f(*a)
            }
            Slice(a, _) | Pad(a, ..) | OneHot(a, _) | Softmax(a, _) | LogSoftmax(a, _) => {
                *a = f(*a)
            }
            Binary(_, a, b) | SafeDiv(a, b) | MatMul(a, b, ..) | Conv2d(a, b, _) | Gather(a, b) => {
                *a = f(*a);
                *b = f(*b);
            }
            ConvTranspose2d(a, b, ..) => {
                *a = f(*a);
                *b = f(*b);
            }
            Where(c, a, b) => {
                *c = f(*c);
                *a = f(*a);
                *b = f(*b);
            }
            Concat(xs, _) => xs.iter_mut().for_each(|x| *x = f(*x)),
        }
        n
    }

    /// The node's tensor from its inputs' `v`.
    pub fn apply(&self, v: &[Tensor]) -> Tensor {
        use Node::*;
        match self {
            Unary(u, a) => Tensor::from_op(Op::Unary(*u), &[&v[*a]]),
            Binary(b, x, y) => Tensor::from_op(Op::Binary(*b), &[&v[*x], &v[*y]]),
            Scalar(b, x, c) => Tensor::from_op(Op::Binary(*b), &[&v[*x], &v[*x].scalar_like(*c)]),
            SafeLog(a) => v[*a].abs().add_scalar(1.0).log(),
            SafeSqrt(a) => v[*a].abs().add_scalar(0.5).sqrt(),
            SafeDiv(a, b) => &v[*a] / &v[*b].abs().add_scalar(0.5),
            SafePow(a, c) => v[*a].abs().add_scalar(0.5).pow_scalar(*c),
            Where(c, a, b) => Tensor::select(&v[*c], &v[*a], &v[*b]),
            Sum(a, axes, keep) => v[*a].sum(&signed(axes), *keep),
            Mean(a, axes, keep) => v[*a].mean(&signed(axes), *keep),
            Max(a, axes, keep) => v[*a].max(&signed(axes), *keep),
            Argmax(a, axis, keep) => v[*a].argmax(*axis as isize, *keep),
            Cast(a, to) => v[*a].cast(*to),
            MatMul(a, b, ta, tb) => v[*a].matmul_t(&v[*b], *ta, *tb),
            Conv2d(x, w, spec) => v[*x].conv2d(&v[*w], *spec),
            ConvTranspose2d(x, w, spec, pad) => v[*x].conv_transpose2d(&v[*w], *spec, *pad),
            Dropout(x, p, seed) => {
                let keep =
                    Tensor::rand(v[*x].device(), v[*x].shape(), *seed).ge(&v[*x].scalar_like(*p));
                &v[*x] * &keep * (1.0 / (1.0 - p))
            }
            MaxPool(a, spec) => v[*a].max_pool2d(*spec),
            AvgPool(a, spec) => v[*a].avg_pool2d(*spec),
            Reshape(a, shape) => v[*a].reshape(shape),
            Permute(a, perm) => v[*a].permute(perm),
            Expand(a, shape) => v[*a].expand(shape),
            Slice(a, ranges) => v[*a].slice(ranges),
            Pad(a, before, after) => v[*a].pad(before, after),
            Concat(xs, axis) => {
                let refs: Vec<&Tensor> = xs.iter().map(|&x| &v[x]).collect();
                Tensor::concat(&refs, *axis as isize)
            }
            Gather(table, idx) => v[*table].gather(&v[*idx]),
            OneHot(labels, classes) => v[*labels].one_hot(*classes),
            Softmax(a, axis) => v[*a].softmax(*axis as isize),
            LogSoftmax(a, axis) => v[*a].log_softmax(*axis as isize),
        }
    }

    /// Whether the value is computed bit for bit alike on every backend from inputs that are:
    /// layout ops, selections, sign flips and comparisons. Ops whose gradient depends on
    /// which input is largest (max, argmax, max pooling, comparisons) only take such inputs,
    /// so that rounding never decides a tie.
    pub fn exact(&self, exact: &[bool]) -> bool {
        use Node::*;
        use UnaryOp as U;
        let all = |xs: &[usize]| xs.iter().all(|&x| exact[x]);
        match self {
            Unary(U::Neg | U::Abs | U::Relu | U::Sign | U::IsNan | U::IsInf | U::IsFinite, a) => {
                exact[*a]
            }
            Binary(b, x, y) if b.is_comparison() => all(&[*x, *y]),
            Binary(BinaryOp::Maximum | BinaryOp::Minimum, x, y) => all(&[*x, *y]),
            Where(..) | Concat(..) => all(&self.inputs()),
            Max(a, ..) | MaxPool(a, _) | Reshape(a, _) | Permute(a, _) | Expand(a, _) => exact[*a],
            Slice(a, _) | Pad(a, ..) | Gather(a, _) => exact[*a],
            Cast(..) | OneHot(..) | Argmax(..) => true,
            _ => false,
        }
    }

    /// The inputs that must be exact (see [`Node::exact`]): those of ops whose result or
    /// gradient turns on which value is larger, and a selection's condition.
    pub fn exact_inputs(&self) -> Vec<usize> {
        use Node::*;
        match self {
            Binary(b, x, y)
                if b.is_comparison() || matches!(b, BinaryOp::Maximum | BinaryOp::Minimum) =>
            {
                vec![*x, *y]
            }
            Unary(UnaryOp::Sign, a) | Max(a, ..) | Argmax(a, ..) | MaxPool(a, _) => vec![*a],
            Where(c, ..) => vec![*c],
            _ => vec![],
        }
    }

    fn rust(&self) -> String {
        use Node::*;
        let v = |i: &usize| format!("v{i}");
        match self {
            Unary(u, a) => format!("{}.{}()", v(a), Op::Unary(*u).name()),
            Binary(b, x, y) => format!("{}.{}(&{})", v(x), Op::Binary(*b).name(), v(y)),
            Scalar(b, x, c) => format!(
                "{}.{}(&{}.scalar_like({c:?}))",
                v(x),
                Op::Binary(*b).name(),
                v(x)
            ),
            SafeLog(a) => format!("{}.abs().add_scalar(1.0).log()", v(a)),
            SafeSqrt(a) => format!("{}.abs().add_scalar(0.5).sqrt()", v(a)),
            SafeDiv(a, b) => format!("&{} / &{}.abs().add_scalar(0.5)", v(a), v(b)),
            SafePow(a, c) => format!("{}.abs().add_scalar(0.5).pow_scalar({c:?})", v(a)),
            Where(c, a, b) => format!("Tensor::select(&{}, &{}, &{})", v(c), v(a), v(b)),
            Sum(a, axes, keep) => format!("{}.sum(&{axes:?}, {keep})", v(a)),
            Mean(a, axes, keep) => format!("{}.mean(&{axes:?}, {keep})", v(a)),
            Max(a, axes, keep) => format!("{}.max(&{axes:?}, {keep})", v(a)),
            Argmax(a, axis, keep) => format!("{}.argmax({axis}, {keep})", v(a)),
            Cast(a, to) => format!("{}.cast(DType::{to:?})", v(a)),
            MatMul(a, b, ta, tb) => format!("{}.matmul_t(&{}, {ta}, {tb})", v(a), v(b)),
            Conv2d(x, w, s) => format!("{}.conv2d(&{}, {s:?})", v(x), v(w)),
            ConvTranspose2d(x, w, s, pad) => {
                format!("{}.conv_transpose2d(&{}, {s:?}, {pad:?})", v(x), v(w))
            }
            Dropout(x, p, seed) => format!(
                "&{x} * &Tensor::rand(&dev, {x}.shape(), {seed}).ge(&{x}.scalar_like({p:?})) * {}",
                1.0 / (1.0 - p),
                x = v(x)
            ),
            MaxPool(a, s) => format!("{}.max_pool2d({s:?})", v(a)),
            AvgPool(a, s) => format!("{}.avg_pool2d({s:?})", v(a)),
            Reshape(a, shape) => format!("{}.reshape(&{shape:?})", v(a)),
            Permute(a, perm) => format!("{}.permute(&{perm:?})", v(a)),
            Expand(a, shape) => format!("{}.expand(&{shape:?})", v(a)),
            Slice(a, ranges) => format!("{}.slice(&{ranges:?})", v(a)),
            Pad(a, before, after) => format!("{}.pad(&{before:?}, &{after:?})", v(a)),
            Concat(xs, axis) => {
                let refs: Vec<String> = xs.iter().map(|x| format!("&{}", v(x))).collect();
                format!("Tensor::concat(&[{}], {axis})", refs.join(", "))
            }
            Gather(t, i) => format!("{}.gather(&{})", v(t), v(i)),
            OneHot(l, classes) => format!("{}.one_hot({classes})", v(l)),
            Softmax(a, axis) => format!("{}.softmax({axis})", v(a)),
            LogSoftmax(a, axis) => format!("{}.log_softmax({axis})", v(a)),
        }
    }
}

fn signed(axes: &[usize]) -> Vec<isize> {
    axes.iter().map(|&a| a as isize).collect()
}

/// A value of a program: an input with the seed its data is drawn from, or an op on earlier
/// values.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Leaf(Leaf, u64),
    Node(Node),
}

/// Values in order, each reading only earlier ones; the last is the output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Program {
    pub values: Vec<Value>,
}

impl Program {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Every value on `dev`: the leaves uploaded (f32 ones trainable), the nodes built.
    pub fn build(&self, dev: &Device) -> Result<Vec<Tensor>> {
        let mut v = Vec::with_capacity(self.len());
        for value in &self.values {
            let t = match value {
                Value::Leaf(leaf, seed) => match leaf.data(*seed) {
                    Data::F32(x) => Tensor::param(dev, &x, leaf.shape())?,
                    Data::U32(x) => Tensor::from_u32(dev, &x, leaf.shape())?,
                },
                Value::Node(node) => node.apply(&v),
            };
            v.push(t);
        }
        Ok(v)
    }

    /// Every value as a lazy tensor on `dev` (leaves of zeros): shapes and dtypes without
    /// computing or uploading anything.
    pub fn lazy(&self, dev: &Device) -> Vec<Tensor> {
        let mut v: Vec<Tensor> = Vec::with_capacity(self.len());
        for value in &self.values {
            let t = match value {
                Value::Leaf(leaf, _) => lazy_leaf(dev, leaf),
                Value::Node(node) => node.apply(&v),
            };
            v.push(t);
        }
        v
    }

    /// Whether each value is exact (see [`Node::exact`]); leaves are.
    pub fn exact(&self) -> Vec<bool> {
        let mut exact = Vec::with_capacity(self.len());
        for value in &self.values {
            let e = match value {
                Value::Leaf(..) => true,
                Value::Node(node) => node.exact(&exact),
            };
            exact.push(e);
        }
        exact
    }

    /// Whether every node that needs exact inputs has them.
    pub fn well_posed(&self) -> bool {
        let exact = self.exact();
        self.values.iter().all(|v| match v {
            Value::Node(n) => n.exact_inputs().iter().all(|&i| exact[i]),
            Value::Leaf(..) => true,
        })
    }

    /// The program reduced to what its output needs, values renumbered.
    pub fn pruned(&self) -> Program {
        let n = self.len();
        let mut live = vec![false; n];
        live[n - 1] = true;
        for i in (0..n).rev() {
            if let (true, Value::Node(node)) = (live[i], &self.values[i]) {
                for x in node.inputs() {
                    live[x] = true;
                }
            }
        }
        let mut index = vec![usize::MAX; n];
        let mut out = Program::default();
        for (i, value) in self.values.iter().enumerate() {
            if live[i] {
                index[i] = out.values.len();
                out.values.push(match value {
                    Value::Node(node) => Value::Node(node.map_inputs(|x| index[x])),
                    leaf => leaf.clone(),
                });
            }
        }
        out
    }

    /// The same program with other constants (scalars, slopes, dropout rates): run after the
    /// program on one device, it finds kernels cached with the first constants.
    pub fn with_other_constants(&self) -> Program {
        let values = self
            .values
            .iter()
            .map(|v| match v {
                Value::Node(Node::Scalar(op, x, c)) => Value::Node(Node::Scalar(
                    *op,
                    *x,
                    if *c == 0.0 { 0.5 } else { -1.5 * c },
                )),
                Value::Node(Node::Unary(UnaryOp::LeakyRelu(s), x)) => {
                    Value::Node(Node::Unary(UnaryOp::LeakyRelu(0.5 - s), *x))
                }
                Value::Node(Node::Dropout(x, p, seed)) => {
                    Value::Node(Node::Dropout(*x, 0.6 - p, seed.wrapping_add(1)))
                }
                v => v.clone(),
            })
            .collect();
        Program { values }
    }

    /// The Rust that builds the program with wgrad's API, one value per line.
    pub fn rust(&self) -> String {
        let mut s = String::new();
        for (i, value) in self.values.iter().enumerate() {
            let code = match value {
                Value::Leaf(leaf, _) => leaf.rust(),
                Value::Node(node) => node.rust(),
            };
            let _ = writeln!(s, "let v{i} = {code};");
        }
        s
    }
}

/// A leaf's shape and dtype as a lazy tensor of zeros.
pub fn lazy_leaf(dev: &Device, leaf: &Leaf) -> Tensor {
    let zeros = Tensor::zeros(dev, leaf.shape());
    match leaf.dtype() {
        DType::U32 => zeros.cast(DType::U32),
        DType::F32 => zeros,
    }
}
