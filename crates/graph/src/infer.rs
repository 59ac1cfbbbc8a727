//! Output shapes and dtypes of the primitives: each op's shape rule, with a message naming
//! the op and the shapes when the inputs do not fit.

use crate::geometry::{check_conv, check_pool, nchw};
use crate::op::{reduced_shape, Arity, DType, Meta, Op, ReduceOp};
use crate::shape::{broadcast_shapes, checked_numel, numel, MAX_RANK};

impl Op {
    /// Output shape and dtype from the inputs', or a message saying what is wrong.
    pub fn infer(&self, inputs: &[Meta]) -> Result<Meta, String> {
        let name = self.name();
        let arity_ok = match self.signature().arity {
            Arity::Exactly(n) => inputs.len() == n,
            Arity::AtLeastOne => !inputs.is_empty(),
        };
        if !arity_ok {
            return Err(format!("{name}: wrong number of inputs ({})", inputs.len()));
        }
        let need_f32 = |i: usize| -> Result<(), String> {
            if inputs[i].1 == DType::F32 {
                Ok(())
            } else {
                Err(format!(
                    "{name}: input {i} must be f32, got {}",
                    inputs[i].1.name()
                ))
            }
        };
        let out = match self {
            Op::Full { shape, dtype, .. } => (shape.clone(), *dtype),
            Op::RandUniform { shape, .. } => (shape.clone(), DType::F32),
            Op::Unary(_) => {
                need_f32(0)?;
                inputs[0].clone()
            }
            Op::Binary(_) => {
                need_f32(0)?;
                need_f32(1)?;
                let s = broadcast_shapes(&inputs[0].0, &inputs[1].0).ok_or_else(|| {
                    format!(
                        "{name}: shapes {:?} and {:?} do not broadcast",
                        inputs[0].0, inputs[1].0
                    )
                })?;
                (s, DType::F32)
            }
            Op::Where => {
                (0..3).try_for_each(need_f32)?;
                let s = broadcast_shapes(&inputs[0].0, &inputs[1].0)
                    .and_then(|s| broadcast_shapes(&s, &inputs[2].0))
                    .ok_or_else(|| {
                        format!(
                            "where: shapes {:?}, {:?} and {:?} do not broadcast",
                            inputs[0].0, inputs[1].0, inputs[2].0
                        )
                    })?;
                (s, DType::F32)
            }
            Op::Reduce { op, axes, keepdim } => {
                need_f32(0)?;
                let s = &inputs[0].0;
                check_axes(name, axes, s.len())?;
                // PyTorch refuses the maximum of nothing too (a sum of nothing is 0).
                if *op == ReduceOp::Max && axes.iter().any(|&a| s[a] == 0) {
                    return Err(format!(
                        "max: reduced axes {axes:?} of shape {s:?} are empty"
                    ));
                }
                (reduced_shape(s, axes, *keepdim), DType::F32)
            }
            Op::Argmax { axis, keepdim } => {
                need_f32(0)?;
                let s = &inputs[0].0;
                check_axes(name, &[*axis], s.len())?;
                if s[*axis] == 0 {
                    return Err(format!("argmax: axis {axis} of shape {s:?} is empty"));
                }
                (reduced_shape(s, &[*axis], *keepdim), DType::U32)
            }
            Op::MatMul { ta, tb } => {
                need_f32(0)?;
                need_f32(1)?;
                let (a, b) = (&inputs[0].0, &inputs[1].0);
                if a.len() < 2 || b.len() < 2 {
                    return Err(format!(
                        "matmul: both inputs need at least 2 dimensions, got {a:?} and {b:?}"
                    ));
                }
                let (mut m, mut k) = (a[a.len() - 2], a[a.len() - 1]);
                let (mut k2, mut n) = (b[b.len() - 2], b[b.len() - 1]);
                if *ta {
                    (m, k) = (k, m);
                }
                if *tb {
                    (k2, n) = (n, k2);
                }
                if k != k2 {
                    return Err(format!(
                        "matmul: inner dimensions differ: {a:?} x {b:?} ({k} vs {k2})"
                    ));
                }
                let mut s =
                    broadcast_shapes(&a[..a.len() - 2], &b[..b.len() - 2]).ok_or_else(|| {
                        format!("matmul: batch dimensions of {a:?} and {b:?} do not broadcast")
                    })?;
                s.extend([m, n]);
                (s, DType::F32)
            }
            Op::Reshape { shape } => {
                if checked_numel(shape) != Some(numel(&inputs[0].0)) {
                    let count =
                        checked_numel(shape).map_or("too many".to_string(), |n| n.to_string());
                    return Err(format!(
                        "reshape: cannot view {:?} ({} elements) as {shape:?} ({count} elements)",
                        inputs[0].0,
                        numel(&inputs[0].0),
                    ));
                }
                (shape.clone(), inputs[0].1)
            }
            Op::Permute { perm } => {
                let s = &inputs[0].0;
                let mut seen = vec![false; s.len()];
                let valid = perm.len() == s.len()
                    && perm
                        .iter()
                        .all(|&p| p < s.len() && !std::mem::replace(&mut seen[p], true));
                if !valid {
                    return Err(format!(
                        "permute: {perm:?} is not a permutation of {s:?}'s axes"
                    ));
                }
                (perm.iter().map(|&p| s[p]).collect(), inputs[0].1)
            }
            Op::Expand { shape } => {
                let s = &inputs[0].0;
                if broadcast_shapes(s, shape).as_ref() != Some(shape) {
                    return Err(format!("expand: cannot broadcast {s:?} to {shape:?}"));
                }
                (shape.clone(), inputs[0].1)
            }
            Op::Slice { ranges } => {
                let s = &inputs[0].0;
                let ok = ranges.len() == s.len()
                    && ranges.iter().zip(s).all(|(&(a, b), &d)| a <= b && b <= d);
                if !ok {
                    return Err(format!("slice: ranges {ranges:?} do not fit shape {s:?}"));
                }
                (ranges.iter().map(|&(a, b)| b - a).collect(), inputs[0].1)
            }
            Op::Pad { before, after } => {
                let s = &inputs[0].0;
                if before.len() != s.len() || after.len() != s.len() {
                    return Err(format!(
                        "pad: padding {before:?}/{after:?} does not fit {s:?}"
                    ));
                }
                let shape = (0..s.len()).map(|d| before[d] + s[d] + after[d]).collect();
                (shape, inputs[0].1)
            }
            Op::Concat { axis } => {
                let first = &inputs[0];
                check_axes(name, &[*axis], first.0.len())?;
                let mut shape = first.0.clone();
                shape[*axis] = 0;
                for (s, dt) in inputs {
                    let same_rest = s.len() == first.0.len()
                        && (0..s.len()).all(|d| d == *axis || s[d] == first.0[d]);
                    if !same_rest || *dt != first.1 {
                        return Err(format!(
                            "concat: {:?} ({}) and {s:?} ({}) differ outside axis {axis}",
                            first.0,
                            first.1.name(),
                            dt.name()
                        ));
                    }
                    shape[*axis] += s[*axis];
                }
                (shape, first.1)
            }
            Op::Gather => {
                need_f32(0)?;
                let (table, idx) = (&inputs[0], &inputs[1]);
                if table.0.is_empty() || idx.1 != DType::U32 {
                    return Err(format!(
                        "gather: needs a table of rank >= 1 and u32 indices, got {:?} and {} indices",
                        table.0,
                        idx.1.name()
                    ));
                }
                let mut s = idx.0.clone();
                s.extend_from_slice(&table.0[1..]);
                (s, DType::F32)
            }
            Op::ScatterAdd { rows } => {
                need_f32(0)?;
                let (src, idx) = (&inputs[0], &inputs[1]);
                if idx.1 != DType::U32 || !src.0.starts_with(&idx.0) {
                    return Err(format!(
                        "scatter_add: needs u32 indices whose shape begins the rows' shape, got \
                         rows {:?} and {} indices {:?}",
                        src.0,
                        idx.1.name(),
                        idx.0
                    ));
                }
                let mut s = vec![*rows];
                s.extend_from_slice(&src.0[idx.0.len()..]);
                (s, DType::F32)
            }
            Op::OneHot { classes } => {
                if inputs[0].1 != DType::U32 {
                    return Err("one_hot: labels must be u32".into());
                }
                let mut s = inputs[0].0.clone();
                s.push(*classes);
                (s, DType::F32)
            }
            Op::Cast { to } => {
                if inputs[0].1 == *to {
                    return Err(format!("cast: input is already {}", to.name()));
                }
                (inputs[0].0.clone(), *to)
            }
            Op::Conv2d(spec) => {
                (0..2).try_for_each(need_f32)?;
                let (x, w) = (&inputs[0].0, &inputs[1].0);
                let (n, c, hw) = nchw(name, x)?;
                let (o, cg, k) = nchw(name, w)?;
                check_conv(name, spec, c, o, cg)?;
                let out = spec.output_size(hw, k).ok_or_else(|| {
                    format!("conv2d: kernel {k:?} (dilation {:?}) does not fit input {x:?} with padding {:?}", spec.dilation, spec.padding)
                })?;
                (vec![n, o, out[0], out[1]], DType::F32)
            }
            Op::Conv2dGradInput { spec, input_hw } => {
                (0..2).try_for_each(need_f32)?;
                let (g, w) = (&inputs[0].0, &inputs[1].0);
                let (n, o, ohw) = nchw(name, g)?;
                let (o2, cg, k) = nchw(name, w)?;
                if o != o2 {
                    return Err(format!(
                        "{name}: gradient {g:?} has {o} channels but weight {w:?} has {o2} outputs"
                    ));
                }
                let c = cg * spec.groups;
                check_conv(name, spec, c, o, cg)?;
                if spec.output_size(*input_hw, k) != Some(ohw) {
                    return Err(format!("{name}: input size {input_hw:?} does not produce output {ohw:?} with kernel {k:?} and {spec:?}"));
                }
                (vec![n, c, input_hw[0], input_hw[1]], DType::F32)
            }
            Op::Conv2dGradWeight { spec, kernel } => {
                (0..2).try_for_each(need_f32)?;
                let (x, g) = (&inputs[0].0, &inputs[1].0);
                let (n, c, hw) = nchw(name, x)?;
                let (n2, o, ohw) = nchw(name, g)?;
                if n != n2 || spec.groups == 0 || !c.is_multiple_of(spec.groups) {
                    return Err(format!(
                        "{name}: input {x:?} and gradient {g:?} do not fit groups {}",
                        spec.groups
                    ));
                }
                let cg = c / spec.groups;
                check_conv(name, spec, c, o, cg)?;
                if spec.output_size(hw, *kernel) != Some(ohw) {
                    return Err(format!(
                        "{name}: input {x:?} and kernel {kernel:?} do not produce gradient {g:?}"
                    ));
                }
                (vec![o, cg, kernel[0], kernel[1]], DType::F32)
            }
            Op::MaxPool2d(spec) | Op::AvgPool2d(spec) => {
                need_f32(0)?;
                let x = &inputs[0].0;
                let (n, c, hw) = nchw(name, x)?;
                check_pool(name, spec)?;
                let out = spec.output_size(hw).ok_or_else(|| {
                    format!(
                        "{name}: window {:?} does not fit input {x:?} with padding {:?}",
                        spec.kernel, spec.padding
                    )
                })?;
                (vec![n, c, out[0], out[1]], DType::F32)
            }
            Op::MaxPool2dGrad(spec) => {
                (0..2).try_for_each(need_f32)?;
                let (x, g) = (&inputs[0].0, &inputs[1].0);
                let (n, c, hw) = nchw(name, x)?;
                check_pool(name, spec)?;
                let out = spec.output_size(hw);
                if out.map(|o| vec![n, c, o[0], o[1]]).as_ref() != Some(g) {
                    return Err(format!(
                        "{name}: gradient {g:?} does not match pooling {x:?}"
                    ));
                }
                (x.clone(), DType::F32)
            }
            Op::AvgPool2dGrad { spec, input_hw } => {
                need_f32(0)?;
                let g = &inputs[0].0;
                let (n, c, ohw) = nchw(name, g)?;
                check_pool(name, spec)?;
                if spec.output_size(*input_hw) != Some(ohw) {
                    return Err(format!(
                        "{name}: input size {input_hw:?} does not pool to {g:?}"
                    ));
                }
                (vec![n, c, input_hw[0], input_hw[1]], DType::F32)
            }
        };
        if out.0.len() > MAX_RANK || inputs.iter().any(|i| i.0.len() > MAX_RANK) {
            return Err(format!(
                "{name}: tensors of rank above {MAX_RANK} are not supported"
            ));
        }
        if checked_numel(&out.0).is_none() {
            return Err(format!(
                "{name}: shape {:?} has more elements than fit in memory",
                out.0
            ));
        }
        Ok(out)
    }
}

fn check_axes(name: &str, axes: &[usize], rank: usize) -> Result<(), String> {
    let mut seen = vec![false; rank];
    for &a in axes {
        if a >= rank || std::mem::replace(&mut seen[a], true) {
            return Err(format!("{name}: axes {axes:?} are invalid for rank {rank}"));
        }
    }
    Ok(())
}
