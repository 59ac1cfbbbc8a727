//! One plain function per primitive. Inputs and outputs are 32-bit words: `f32` bits or `u32`.

use crate::conv;
use wgrad_graph::op::{reduced_shape, BinaryOp, DType, Op, ReduceOp, UnaryOp};
use wgrad_graph::shape::{broadcast_strides, contiguous_strides, numel};

/// One input operand: its buffer's words and its shape.
pub struct In<'a> {
    /// The whole buffer, which may be longer than the operand.
    pub data: &'a [u32],
    /// The operand's shape (row-major, contiguous).
    pub shape: &'a [usize],
}

impl In<'_> {
    fn f32(&self) -> &[f32] {
        bytemuck::cast_slice(self.data)
    }
}

/// Computes `op` on `x` into the first `numel(out_shape)` words of `out`.
pub fn run(op: &Op, x: &[In], out_shape: &[usize], out: &mut [u32]) {
    let n = numel(out_shape);
    let out = &mut out[..n];
    match op {
        Op::Full { value, dtype, .. } => {
            let bits = match dtype {
                DType::F32 => value.to_bits(),
                DType::U32 => *value as u32,
            };
            out.fill(bits);
        }
        Op::RandUniform { seed, .. } => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = uniform(*seed, i as u32).to_bits();
            }
        }
        Op::Unary(u) => {
            let a = x[0].f32();
            let o: &mut [f32] = bytemuck::cast_slice_mut(out);
            for (o, &v) in o.iter_mut().zip(a) {
                *o = unary(*u, v);
            }
        }
        Op::Binary(b) => {
            let (a, c) = (x[0].f32(), x[1].f32());
            let sa = broadcast_strides(x[0].shape, out_shape);
            let sc = broadcast_strides(x[1].shape, out_shape);
            let o: &mut [f32] = bytemuck::cast_slice_mut(out);
            for (i, o) in o.iter_mut().enumerate() {
                *o = binary(
                    *b,
                    a[offset(i, out_shape, &sa)],
                    c[offset(i, out_shape, &sc)],
                );
            }
        }
        Op::Where => {
            let strides: Vec<_> = x
                .iter()
                .map(|t| broadcast_strides(t.shape, out_shape))
                .collect();
            let o: &mut [f32] = bytemuck::cast_slice_mut(out);
            for (i, o) in o.iter_mut().enumerate() {
                let at = |k: usize| x[k].f32()[offset(i, out_shape, &strides[k])];
                *o = if at(0) != 0.0 { at(1) } else { at(2) };
            }
        }
        Op::Reduce { op, axes, .. } => {
            let o: &mut [f32] = bytemuck::cast_slice_mut(out);
            reduce(x[0].f32(), x[0].shape, axes, |vals| match op {
                ReduceOp::Sum => vals.map(f64::from).sum::<f64>() as f32,
                ReduceOp::Max => vals.fold(f32::NEG_INFINITY, |m, v| extreme(m, v, true)),
            })
            .into_iter()
            .zip(o.iter_mut())
            .for_each(|(v, o)| *o = v);
        }
        Op::Argmax { axis, .. } => {
            let r = reduce(x[0].f32(), x[0].shape, &[*axis], |vals| {
                // The first maximum; the first NaN if there is one (PyTorch's rule).
                let mut best = (0usize, f32::NEG_INFINITY);
                for (i, v) in vals.enumerate() {
                    if v.is_nan() {
                        best = (i, v);
                        break;
                    }
                    if v > best.1 {
                        best = (i, v);
                    }
                }
                best.0 as f32
            });
            for (o, v) in out.iter_mut().zip(r) {
                *o = v as u32;
            }
        }
        Op::MatMul { ta, tb } => matmul(
            (&x[0], *ta),
            (&x[1], *tb),
            out_shape,
            bytemuck::cast_slice_mut(out),
        ),
        Op::Reshape { .. } => out.copy_from_slice(&x[0].data[..n]),
        Op::Permute { perm } => {
            let own = contiguous_strides(x[0].shape);
            let src: Vec<usize> = perm.iter().map(|&p| own[p]).collect();
            copy_strided(
                x[0].data,
                0,
                &src,
                out,
                0,
                &contiguous_strides(out_shape),
                out_shape,
            );
        }
        Op::Expand { .. } => {
            let src = broadcast_strides(x[0].shape, out_shape);
            copy_strided(
                x[0].data,
                0,
                &src,
                out,
                0,
                &contiguous_strides(out_shape),
                out_shape,
            );
        }
        Op::Slice { ranges } => {
            let own = contiguous_strides(x[0].shape);
            let start: usize = ranges.iter().zip(&own).map(|(r, s)| r.0 * s).sum();
            copy_strided(
                x[0].data,
                start,
                &own,
                out,
                0,
                &contiguous_strides(out_shape),
                out_shape,
            );
        }
        Op::Pad { before, .. } => {
            out.fill(0);
            let dst = contiguous_strides(out_shape);
            let start: usize = before.iter().zip(&dst).map(|(b, s)| b * s).sum();
            let src = contiguous_strides(x[0].shape);
            copy_strided(x[0].data, 0, &src, out, start, &dst, x[0].shape);
        }
        Op::Concat { axis } => {
            let dst = contiguous_strides(out_shape);
            let mut at = 0;
            for t in x {
                let src = contiguous_strides(t.shape);
                copy_strided(t.data, 0, &src, out, at * dst[*axis], &dst, t.shape);
                at += t.shape[*axis];
            }
        }
        Op::Gather => {
            let rows = x[0].shape[0];
            let row_len: usize = x[0].shape[1..].iter().product();
            for (i, &v) in x[1].data[..numel(x[1].shape)].iter().enumerate() {
                // The backend has checked every index against the table.
                let dst = &mut out[i * row_len..(i + 1) * row_len];
                let v = v as usize;
                debug_assert!(v < rows);
                dst.copy_from_slice(&x[0].data[v * row_len..(v + 1) * row_len]);
            }
        }
        Op::ScatterAdd { rows } => {
            let row_len = n / rows.max(&1);
            let (src, mut sums) = (x[0].f32(), vec![0f64; n]);
            // The backend has checked every index against the rows.
            for (i, &v) in x[1].data[..numel(x[1].shape)].iter().enumerate() {
                let dst = &mut sums[v as usize * row_len..][..row_len];
                for (d, &s) in dst.iter_mut().zip(&src[i * row_len..][..row_len]) {
                    *d += s as f64;
                }
            }
            for (o, s) in out.iter_mut().zip(sums) {
                *o = (s as f32).to_bits();
            }
        }
        Op::OneHot { classes } => {
            out.fill(0);
            for (i, &label) in x[0].data[..numel(x[0].shape)].iter().enumerate() {
                if (label as usize) < *classes {
                    out[i * classes + label as usize] = 1.0f32.to_bits();
                }
            }
        }
        Op::Conv2d(spec) => {
            let d = conv_dims(x[0].shape, out_shape, x[1].shape);
            conv::conv2d(
                spec,
                &d,
                x[0].f32(),
                x[1].f32(),
                bytemuck::cast_slice_mut(out),
            );
        }
        Op::Conv2dGradInput { spec, .. } => {
            let d = conv_dims(out_shape, x[0].shape, x[1].shape);
            conv::conv2d_grad_input(
                spec,
                &d,
                x[0].f32(),
                x[1].f32(),
                bytemuck::cast_slice_mut(out),
            );
        }
        Op::Conv2dGradWeight { spec, .. } => {
            let d = conv_dims(x[0].shape, x[1].shape, out_shape);
            conv::conv2d_grad_weight(
                spec,
                &d,
                x[0].f32(),
                x[1].f32(),
                bytemuck::cast_slice_mut(out),
            );
        }
        Op::MaxPool2d(spec) => {
            let (planes, hw, o) = pool_dims(x[0].shape, out_shape);
            conv::max_pool2d(
                spec,
                planes,
                hw,
                o,
                x[0].f32(),
                bytemuck::cast_slice_mut(out),
            );
        }
        Op::MaxPool2dGrad(spec) => {
            let (planes, hw, o) = pool_dims(x[0].shape, x[1].shape);
            conv::max_pool2d_grad(
                spec,
                planes,
                hw,
                o,
                x[0].f32(),
                x[1].f32(),
                bytemuck::cast_slice_mut(out),
            );
        }
        Op::AvgPool2d(spec) => {
            let (planes, hw, o) = pool_dims(x[0].shape, out_shape);
            conv::avg_pool2d(
                spec,
                planes,
                hw,
                o,
                x[0].f32(),
                bytemuck::cast_slice_mut(out),
            );
        }
        Op::AvgPool2dGrad { spec, .. } => {
            let (planes, hw, o) = pool_dims(out_shape, x[0].shape);
            conv::avg_pool2d_grad(
                spec,
                planes,
                hw,
                o,
                x[0].f32(),
                bytemuck::cast_slice_mut(out),
            );
        }
        Op::Cast { to } => {
            for (o, &v) in out.iter_mut().zip(x[0].data) {
                *o = match to {
                    DType::F32 => (v as f32).to_bits(),
                    // Rust's `as` saturates: negatives and NaN become 0.
                    DType::U32 => f32::from_bits(v) as u32,
                };
            }
        }
    }
}

/// Convolution sizes from the input `[n, c, h, w]`, output `[n, o, oh, ow]` and weight shapes.
fn conv_dims(x: &[usize], y: &[usize], w: &[usize]) -> conv::ConvDims {
    conv::ConvDims {
        n: x[0],
        c: x[1],
        h: x[2],
        w: x[3],
        o: y[1],
        oh: y[2],
        ow: y[3],
        k: [w[2], w[3]],
    }
}

/// (planes = n·c, input [h, w], output [oh, ow]) of a pooling.
fn pool_dims(x: &[usize], y: &[usize]) -> (usize, [usize; 2], [usize; 2]) {
    (x[0] * x[1], [x[2], x[3]], [y[2], y[3]])
}

/// Offset of output element `i` in an input read with `strides` (0 on broadcast dimensions).
fn offset(mut i: usize, shape: &[usize], strides: &[usize]) -> usize {
    let mut off = 0;
    for d in (0..shape.len()).rev() {
        off += (i % shape[d]) * strides[d];
        i /= shape[d];
    }
    off
}

fn copy_strided(
    src: &[u32],
    src_start: usize,
    src_strides: &[usize],
    dst: &mut [u32],
    dst_start: usize,
    dst_strides: &[usize],
    shape: &[usize],
) {
    for i in 0..numel(shape) {
        dst[dst_start + offset(i, shape, dst_strides)] =
            src[src_start + offset(i, shape, src_strides)];
    }
}

/// Applies `f` to the values of each reduction group, in output order.
fn reduce(
    a: &[f32],
    shape: &[usize],
    axes: &[usize],
    f: impl Fn(&mut dyn Iterator<Item = f32>) -> f32,
) -> Vec<f32> {
    let strides = contiguous_strides(shape);
    let kept_shape = reduced_shape(shape, axes, true);
    let red_shape: Vec<usize> = (0..shape.len())
        .map(|d| if axes.contains(&d) { shape[d] } else { 1 })
        .collect();
    (0..numel(&kept_shape))
        .map(|o| {
            let base = offset(o, &kept_shape, &strides);
            let mut vals =
                (0..numel(&red_shape)).map(|r| a[base + offset(r, &red_shape, &strides)]);
            f(&mut vals)
        })
        .collect()
}

/// `op(a) · op(b)`; a transposed operand is read through swapped strides.
fn matmul((a, ta): (&In, bool), (b, tb): (&In, bool), out_shape: &[usize], out: &mut [f32]) {
    let r = out_shape.len();
    let (m, n) = (out_shape[r - 2], out_shape[r - 1]);
    let k = if ta {
        a.shape[a.shape.len() - 2]
    } else {
        a.shape[a.shape.len() - 1]
    };
    // Element (i, p) of op(a) at i·a_row + p·a_col; (p, j) of op(b) at p·b_row + j·b_col.
    let (a_row, a_col) = if ta { (1, m) } else { (k, 1) };
    let (b_row, b_col) = if tb { (1, k) } else { (n, 1) };
    let batch_shape = &out_shape[..r - 2];
    let sa = broadcast_strides(&a.shape[..a.shape.len() - 2], batch_shape);
    let sb = broadcast_strides(&b.shape[..b.shape.len() - 2], batch_shape);
    let (av, bv) = (a.f32(), b.f32());
    let mut row = vec![0f64; n];
    // A transposed b is copied row-major once per matrix, so the inner loop runs along
    // contiguous memory either way (the sums are the same, in the same order).
    let mut b_rows = Vec::new();
    for batch in 0..numel(batch_shape) {
        let ao = offset(batch, batch_shape, &sa) * m * k;
        let bo = offset(batch, batch_shape, &sb) * k * n;
        let (bm, bo) = if b_col == 1 {
            (bv, bo)
        } else {
            b_rows.clear();
            b_rows.extend((0..k * n).map(|i| bv[bo + (i / n) * b_row + (i % n) * b_col]));
            (&b_rows[..], 0)
        };
        for i in 0..m {
            row.fill(0.0);
            for p in 0..k {
                let aip = av[ao + i * a_row + p * a_col] as f64;
                let at = bo + p * n;
                for (acc, &bpj) in row.iter_mut().zip(&bm[at..at + n]) {
                    *acc += aip * bpj as f64;
                }
            }
            let dst = &mut out[(batch * m + i) * n..(batch * m + i + 1) * n];
            for (d, &v) in dst.iter_mut().zip(&row) {
                *d = v as f32;
            }
        }
    }
}

fn unary(op: UnaryOp, x: f32) -> f32 {
    let xd = x as f64;
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                // 0 stays 0 and NaN stays NaN.
                x
            }
        }
        // NaN stays NaN (f32::max would return 0).
        UnaryOp::Relu => {
            if x.is_nan() {
                x
            } else {
                x.max(0.0)
            }
        }
        UnaryOp::Sigmoid => (1.0 / (1.0 + (-xd).exp())) as f32,
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Erf => erf(xd) as f32,
        UnaryOp::Gelu => (0.5 * xd * (1.0 + erf(xd / std::f64::consts::SQRT_2))) as f32,
        UnaryOp::LeakyRelu(slope) => {
            if x > 0.0 {
                x
            } else {
                slope * x
            }
        }
        UnaryOp::IsNan => flag(x.is_nan()),
        UnaryOp::IsInf => flag(x.is_infinite()),
        UnaryOp::IsFinite => flag(x.is_finite()),
    }
}

/// 1.0 for true, 0.0 for false.
fn flag(c: bool) -> f32 {
    if c {
        1.0
    } else {
        0.0
    }
}

/// The larger (or smaller) of two values, NaN when either is NaN (PyTorch's `maximum`).
fn extreme(a: f32, b: f32, larger: bool) -> f32 {
    match (a.is_nan() || b.is_nan(), larger) {
        (true, _) => f32::NAN,
        (false, true) => a.max(b),
        (false, false) => a.min(b),
    }
}

fn binary(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Maximum => extreme(a, b, true),
        BinaryOp::Minimum => extreme(a, b, false),
        BinaryOp::Eq => flag(a == b),
        BinaryOp::Ne => flag(a != b),
        BinaryOp::Lt => flag(a < b),
        BinaryOp::Le => flag(a <= b),
        BinaryOp::Gt => flag(a > b),
        BinaryOp::Ge => flag(a >= b),
    }
}

/// The error function by its Maclaurin series; past |x| = 5 it is ±1 to f64's precision
/// needs here (erfc(5) ≈ 1.5e-12).
fn erf(x: f64) -> f64 {
    if x.abs() >= 5.0 {
        return x.signum();
    }
    let (x2, mut term, mut sum) = (x * x, x, x);
    for n in 1..200 {
        term *= -x2 / n as f64;
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// Counter-based uniform sample in [0, 1): the same bits as the GPU's `rand_uniform`.
pub fn uniform(seed: u64, i: u32) -> f32 {
    let key = hash32((seed as u32) ^ hash32((seed >> 32) as u32 ^ 0x68bc_21eb));
    let r = hash32(hash32(i ^ key).wrapping_add(key));
    (r >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A 32-bit integer mixing function (bijective), also in `shaders/random.wgsl`.
fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // erf(0.5), erf(1), erf(2) from tables
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-12);
        assert!((erf(1.0) - 0.842_700_792_949_714_9).abs() < 1e-12);
        assert!((erf(-2.0) + 0.995_322_265_018_952_7).abs() < 1e-12);
    }

    #[test]
    fn uniform_is_in_range_and_spread() {
        let v: Vec<f32> = (0..10_000).map(|i| uniform(42, i)).collect();
        assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert_ne!(uniform(1, 0), uniform(2, 0));
    }
}
