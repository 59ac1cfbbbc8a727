//! Tensor methods that record primitive ops, and operator overloading.

use crate::op::{BinaryOp, Conv2dSpec, DType, Op, Pool2dSpec, ReduceOp, UnaryOp};
use crate::shape::normalize_axis;
use crate::tensor::Tensor;

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Tensor {
            Tensor::from_op(Op::Unary(UnaryOp::$op), &[self])
        }
    )*};
}

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {$(
        $(#[$doc])*
        #[track_caller]
        pub fn $name(&self, other: &Tensor) -> Tensor {
            Tensor::from_op(Op::Binary(BinaryOp::$op), &[self, other])
        }
    )*};
}

impl Tensor {
    unary_methods! {
        /// Elementwise `-x`.
        neg => Neg;
        /// Elementwise `e^x`.
        exp => Exp;
        /// Natural logarithm.
        log => Log;
        /// Elementwise square root.
        sqrt => Sqrt;
        /// Elementwise `|x|`.
        abs => Abs;
        /// -1, 0 or 1; its gradient is zero.
        sign => Sign;
        /// Elementwise `max(x, 0)`.
        relu => Relu;
        /// Elementwise `1 / (1 + e^-x)`.
        sigmoid => Sigmoid;
        /// Elementwise hyperbolic tangent.
        tanh => Tanh;
        /// Elementwise Gauss error function.
        erf => Erf;
        /// GELU, exact form `x·Φ(x) = x/2·(1 + erf(x/√2))`.
        gelu => Gelu;
        /// 1.0 where NaN, else 0.0 (like `torch.isnan`, as f32; not differentiable).
        isnan => IsNan;
        /// 1.0 where +∞ or -∞, else 0.0 (like `torch.isinf`; not differentiable).
        isinf => IsInf;
        /// 1.0 where neither NaN nor infinite, else 0.0 (like `torch.isfinite`).
        isfinite => IsFinite;
    }

    binary_methods! {
        /// `self + other` elementwise, with broadcasting.
        add => Add;
        /// `self - other` elementwise, with broadcasting.
        sub => Sub;
        /// `self * other` elementwise, with broadcasting.
        mul => Mul;
        /// `self / other` elementwise, with broadcasting.
        div => Div;
        /// `self ^ other` elementwise.
        pow => Pow;
        /// Larger of `self` and `other` elementwise, with broadcasting.
        maximum => Maximum;
        /// Smaller of `self` and `other` elementwise, with broadcasting.
        minimum => Minimum;
        /// 1.0 where equal, else 0.0 (not differentiable).
        eq => Eq;
        /// 1.0 where not equal, else 0.0 (not differentiable).
        ne => Ne;
        /// 1.0 where `self < other`, else 0.0 (not differentiable).
        lt => Lt;
        /// 1.0 where `self <= other`, else 0.0 (not differentiable).
        le => Le;
        /// 1.0 where `self > other`, else 0.0 (not differentiable).
        gt => Gt;
        /// 1.0 where `self >= other`, else 0.0 (not differentiable).
        ge => Ge;
    }

    /// `x` where positive, `slope·x` elsewhere.
    pub fn leaky_relu(&self, slope: f32) -> Tensor {
        Tensor::from_op(Op::Unary(UnaryOp::LeakyRelu(slope)), &[self])
    }

    /// A 0-dimensional constant on this tensor's device.
    pub fn scalar_like(&self, value: f32) -> Tensor {
        Tensor::scalar(self.device(), value)
    }

    /// A tensor of this one's shape filled with `value`.
    pub fn full_like(&self, value: f32) -> Tensor {
        Tensor::full(self.device(), self.shape(), value)
    }

    /// Zeros of this tensor's shape.
    pub fn zeros_like(&self) -> Tensor {
        self.full_like(0.0)
    }

    /// Ones of this tensor's shape.
    pub fn ones_like(&self) -> Tensor {
        self.full_like(1.0)
    }

    /// Adds `v` to every element.
    pub fn add_scalar(&self, v: f32) -> Tensor {
        self.add(&self.scalar_like(v))
    }

    /// Multiplies every element by `v`.
    pub fn mul_scalar(&self, v: f32) -> Tensor {
        self.mul(&self.scalar_like(v))
    }

    /// Raises every element to the power `v`.
    pub fn pow_scalar(&self, v: f32) -> Tensor {
        self.pow(&self.scalar_like(v))
    }

    /// `cond != 0 ? a : b` elementwise, with broadcasting (like `torch.where`).
    #[track_caller]
    pub fn select(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
        Tensor::from_op(Op::Where, &[cond, a, b])
    }

    #[track_caller]
    fn axes(&self, axes: &[isize], what: &str) -> Vec<usize> {
        let mut out: Vec<usize> = axes
            .iter()
            .map(|&a| {
                normalize_axis(a, self.rank()).unwrap_or_else(|| {
                    panic!(
                        "{what}: axis {a} is out of range for shape {:?}",
                        self.shape()
                    )
                })
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Sum over `axes` (negative axes count from the end).
    #[track_caller]
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Tensor {
        let axes = self.axes(axes, "sum");
        Tensor::from_op(
            Op::Reduce {
                op: ReduceOp::Sum,
                axes,
                keepdim,
            },
            &[self],
        )
    }

    /// Sum of every element, as a 0-dimensional tensor.
    pub fn sum_all(&self) -> Tensor {
        let axes = (0..self.rank()).collect();
        Tensor::from_op(
            Op::Reduce {
                op: ReduceOp::Sum,
                axes,
                keepdim: false,
            },
            &[self],
        )
    }

    /// Maximum over `axes`; its gradient is shared equally among tied maxima.
    #[track_caller]
    pub fn max(&self, axes: &[isize], keepdim: bool) -> Tensor {
        let axes = self.axes(axes, "max");
        Tensor::from_op(
            Op::Reduce {
                op: ReduceOp::Max,
                axes,
                keepdim,
            },
            &[self],
        )
    }

    /// Minimum over `axes` (as `-max(-x)`): NaN propagates, and the gradient is shared
    /// equally among tied minima.
    #[track_caller]
    pub fn min(&self, axes: &[isize], keepdim: bool) -> Tensor {
        self.neg().max(axes, keepdim).neg()
    }

    /// Mean over `axes` (negative axes count from the end).
    #[track_caller]
    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Tensor {
        let norm = self.axes(axes, "mean");
        let count: usize = norm.iter().map(|&a| self.shape()[a]).product();
        self.sum(axes, keepdim).mul_scalar(1.0 / count as f32)
    }

    /// Mean of every element, as a 0-dimensional tensor.
    pub fn mean_all(&self) -> Tensor {
        self.sum_all().mul_scalar(1.0 / self.numel() as f32)
    }

    /// Index of the largest value along `axis` (first one on ties), as `u32`.
    #[track_caller]
    pub fn argmax(&self, axis: isize, keepdim: bool) -> Tensor {
        let axis = self.axes(&[axis], "argmax")[0];
        Tensor::from_op(Op::Argmax { axis, keepdim }, &[self])
    }

    /// Matrix product over the last two dimensions, batch dimensions broadcast.
    #[track_caller]
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        self.matmul_t(other, false, false)
    }

    /// `op(self) · op(other)`, where `op` swaps the last two axes of an operand whose flag is
    /// set. Same result as `self.t().matmul(&other)` and the like, but the transposed operand
    /// is read in place instead of copied first.
    #[track_caller]
    pub fn matmul_t(&self, other: &Tensor, transpose_self: bool, transpose_other: bool) -> Tensor {
        let op = Op::MatMul {
            ta: transpose_self,
            tb: transpose_other,
        };
        Tensor::from_op(op, &[self, other])
    }

    /// The same elements in row-major order with a new shape of the same size.
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        if self.shape() == shape {
            return self.clone();
        }
        Tensor::from_op(
            Op::Reshape {
                shape: shape.to_vec(),
            },
            &[self],
        )
    }

    /// Keeps the first `axis` dimensions and flattens the rest into one.
    #[track_caller]
    pub fn flatten_from(&self, axis: usize) -> Tensor {
        assert!(
            axis <= self.rank(),
            "flatten_from: axis {axis} beyond shape {:?}",
            self.shape()
        );
        let mut shape = self.shape()[..axis].to_vec();
        shape.push(self.shape()[axis..].iter().product());
        self.reshape(&shape)
    }

    /// Inserts a dimension of size 1 at `axis`.
    #[track_caller]
    pub fn unsqueeze(&self, axis: usize) -> Tensor {
        assert!(
            axis <= self.rank(),
            "unsqueeze: axis {axis} beyond shape {:?}",
            self.shape()
        );
        let mut shape = self.shape().to_vec();
        shape.insert(axis, 1);
        self.reshape(&shape)
    }

    /// Reorders axes: output axis `d` is this tensor's axis `perm[d]`.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Tensor {
        Tensor::from_op(
            Op::Permute {
                perm: perm.to_vec(),
            },
            &[self],
        )
    }

    /// Swaps two axes.
    #[track_caller]
    pub fn transpose(&self, a: isize, b: isize) -> Tensor {
        let ax = self.axes(&[a], "transpose")[0];
        let bx = self.axes(&[b], "transpose")[0];
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(ax, bx);
        self.permute(&perm)
    }

    /// Transpose of the last two dimensions.
    #[track_caller]
    pub fn t(&self) -> Tensor {
        assert!(
            self.rank() >= 2,
            "t: needs at least 2 dimensions, got {:?}",
            self.shape()
        );
        self.transpose(-2, -1)
    }

    /// Broadcasts to `shape` (NumPy rules).
    #[track_caller]
    pub fn expand(&self, shape: &[usize]) -> Tensor {
        if self.shape() == shape {
            return self.clone();
        }
        Tensor::from_op(
            Op::Expand {
                shape: shape.to_vec(),
            },
            &[self],
        )
    }

    /// `ranges[d] = (start, end)` for every dimension.
    #[track_caller]
    pub fn slice(&self, ranges: &[(usize, usize)]) -> Tensor {
        Tensor::from_op(
            Op::Slice {
                ranges: ranges.to_vec(),
            },
            &[self],
        )
    }

    /// `len` elements of `axis` starting at `start`.
    #[track_caller]
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Tensor {
        let axis = self.axes(&[axis], "narrow")[0];
        let mut ranges: Vec<(usize, usize)> = self.shape().iter().map(|&d| (0, d)).collect();
        ranges[axis] = (start, start + len);
        self.slice(&ranges)
    }

    /// Zero padding around every dimension.
    #[track_caller]
    pub fn pad(&self, before: &[usize], after: &[usize]) -> Tensor {
        Tensor::from_op(
            Op::Pad {
                before: before.to_vec(),
                after: after.to_vec(),
            },
            &[self],
        )
    }

    /// Joins tensors along `axis`.
    #[track_caller]
    pub fn concat(tensors: &[&Tensor], axis: isize) -> Tensor {
        assert!(!tensors.is_empty(), "concat: needs at least one tensor");
        let axis = tensors[0].axes(&[axis], "concat")[0];
        Tensor::from_op(Op::Concat { axis }, tensors)
    }

    /// Rows of this table picked by `u32` indices: `[v, ...]` with `idx` `[...]` gives
    /// `[idx..., ...]` (an embedding lookup).
    #[track_caller]
    pub fn gather(&self, idx: &Tensor) -> Tensor {
        Tensor::from_op(Op::Gather, &[self, idx])
    }

    /// Rows of this tensor added into a table of `rows` zero rows at `u32` indices: `[idx...,
    /// ...]` with `idx` `[...]` gives `[rows, ...]`, row `v` the sum (in index order, so the
    /// same bits every run) of the rows whose index is `v`. PyTorch's `index_add` into zeros;
    /// the gradient of [`Tensor::gather`].
    #[track_caller]
    pub fn scatter_add(&self, idx: &Tensor, rows: usize) -> Tensor {
        Tensor::from_op(Op::ScatterAdd { rows }, &[self, idx])
    }

    /// `u32` labels to one-hot `f32` rows.
    #[track_caller]
    pub fn one_hot(&self, classes: usize) -> Tensor {
        Tensor::from_op(Op::OneHot { classes }, &[self])
    }

    /// 2-D convolution (cross-correlation, like PyTorch's `conv2d`) of `[n, c, h, w]` with
    /// weights `[o, c/groups, kh, kw]`. Add a bias with `+ b.reshape(&[1, o, 1, 1])`.
    #[track_caller]
    pub fn conv2d(&self, weight: &Tensor, spec: Conv2dSpec) -> Tensor {
        Tensor::from_op(Op::Conv2d(spec), &[self, weight])
    }

    /// Transposed 2-D convolution (PyTorch's `conv_transpose2d`) of `[n, c_in, h, w]` with
    /// weights `[c_in, c_out/groups, kh, kw]`; `output_padding` adds rows/columns at the
    /// bottom/right and must be smaller than the stride.
    #[track_caller]
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        spec: Conv2dSpec,
        output_padding: [usize; 2],
    ) -> Tensor {
        assert!(
            self.rank() == 4 && weight.rank() == 4,
            "conv_transpose2d: expects input [n, c, h, w] and weight [c_in, c_out/groups, kh, kw], got {:?} and {:?}",
            self.shape(),
            weight.shape()
        );
        let mut input_hw = [0; 2];
        for d in 0..2 {
            assert!(
                output_padding[d] < spec.stride[d],
                "conv_transpose2d: output_padding {output_padding:?} must be smaller than the stride {:?}",
                spec.stride
            );
            let full = (self.shape()[2 + d].max(1) - 1) * spec.stride[d]
                + spec.dilation[d] * (weight.shape()[2 + d] - 1)
                + output_padding[d]
                + 1;
            assert!(
                full > 2 * spec.padding[d],
                "conv_transpose2d: padding {:?} leaves no output for input {:?}",
                spec.padding,
                self.shape()
            );
            input_hw[d] = full - 2 * spec.padding[d];
        }
        Tensor::from_op(Op::Conv2dGradInput { spec, input_hw }, &[self, weight])
    }

    /// Max pooling over `[n, c, h, w]`.
    #[track_caller]
    pub fn max_pool2d(&self, spec: Pool2dSpec) -> Tensor {
        Tensor::from_op(Op::MaxPool2d(spec), &[self])
    }

    /// Average pooling over `[n, c, h, w]`.
    #[track_caller]
    pub fn avg_pool2d(&self, spec: Pool2dSpec) -> Tensor {
        Tensor::from_op(Op::AvgPool2d(spec), &[self])
    }

    /// Converts to `dtype` (`f32` → `u32` truncates; negatives become 0).
    pub fn cast(&self, dtype: DType) -> Tensor {
        if self.dtype() == dtype {
            return self.clone();
        }
        Tensor::from_op(Op::Cast { to: dtype }, &[self])
    }
}

macro_rules! overload {
    ($tr:ident, $method:ident, $call:ident) => {
        overload!(@pair $tr, $method, $call, &Tensor, &Tensor, |r: &Tensor| r.clone());
        overload!(@pair $tr, $method, $call, &Tensor, Tensor, |r: Tensor| r);
        overload!(@pair $tr, $method, $call, Tensor, &Tensor, |r: &Tensor| r.clone());
        overload!(@pair $tr, $method, $call, Tensor, Tensor, |r: Tensor| r);
        impl std::ops::$tr<f32> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f32) -> Tensor {
                Tensor::$call(self, &self.scalar_like(rhs))
            }
        }
        impl std::ops::$tr<f32> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f32) -> Tensor {
                Tensor::$call(&self, &self.scalar_like(rhs))
            }
        }
    };
    (@pair $tr:ident, $method:ident, $call:ident, $lhs:ty, $rhs:ty, $own:expr) => {
        impl std::ops::$tr<$rhs> for $lhs {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: $rhs) -> Tensor {
                let rhs: Tensor = ($own)(rhs);
                Tensor::$call(&self, &rhs)
            }
        }
    };
}

overload!(Add, add, add);
overload!(Sub, sub, sub);
overload!(Mul, mul, mul);
overload!(Div, div, div);

impl std::ops::Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl std::ops::Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
