//! Realisation: every pending node that the requested tensors need goes into one batch, in
//! topological order, with intermediate buffers handed back to the backend's pool right after
//! their last use, then one flush (one queue submission on a GPU).

use std::collections::HashMap;
use std::rc::Rc;

use crate::backend::{Arg, Buffer, Fused, FusedRead, FusedValue};
use crate::error::Result;
use crate::op::{DType, Op};
use crate::tensor::Tensor;

pub(crate) fn realize(roots: &[&Tensor]) -> Result<()> {
    if let Some(first) = roots.first() {
        if roots.iter().any(|r| !r.device().same(first.device())) {
            // One batch per device.
            for r in roots {
                realize(&[r])?;
            }
            return Ok(());
        }
    }
    let deferred = roots
        .first()
        .map(|r| r.device().take_deferred())
        .unwrap_or_default();
    let mut all: Vec<&Tensor> = roots.to_vec();
    all.extend(deferred.iter());
    let roots = &all[..];
    let order = topo_pending(roots);
    if order.is_empty() {
        return Ok(());
    }
    let device = order[0].device().clone();
    let index: HashMap<u64, usize> = order.iter().enumerate().map(|(i, t)| (t.id(), i)).collect();

    // Uses of each pending node by other pending nodes of this batch.
    let mut uses = vec![0usize; order.len()];
    for t in &order {
        for input in t.0.inputs.borrow().iter() {
            if let Some(&j) = index.get(&input.id()) {
                uses[j] += 1;
            }
        }
    }
    // A node outlives the batch if anything outside it still holds the node: a user handle, a
    // pending graph not in this batch, a node kept for backward. `order` holds one reference.
    let keep: Vec<bool> = order
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Rc::strong_count(&t.0) > 1 + uses[i] || roots.iter().any(|r| r.id() == t.id())
        })
        .collect();

    let backend = device.backend();
    let groups = match backend.fusion_inputs() {
        0 => vec![Vec::new(); order.len()],
        max_inputs => plan_fusion(&order, &index, &uses, &keep, max_inputs),
    };
    let inlined: Vec<bool> = {
        let mut v = vec![false; order.len()];
        for members in &groups {
            for &m in members.iter().take(members.len().saturating_sub(1)) {
                v[m] = true;
            }
        }
        v
    };

    let mut buffers: Vec<Option<Rc<Buffer>>> = vec![None; order.len()];
    let mut remaining = uses.clone();
    for (i, t) in order.iter().enumerate() {
        if inlined[i] {
            continue;
        }
        let buffer_of = |x: &Tensor| -> Rc<Buffer> {
            match index.get(&x.id()) {
                Some(&j) => buffers[j]
                    .clone()
                    .expect("input computed earlier in the batch"),
                None => {
                    x.0.buffer
                        .borrow()
                        .clone()
                        .expect("input outside the batch is realized")
                }
            }
        };
        let out = Buffer::alloc(&device, t.numel() * 4)?;
        let out_arg = Arg {
            buffer: out.id,
            shape: t.shape(),
            dtype: t.dtype(),
        };
        // The nodes whose inputs this launch consumes: the group, or the node alone.
        let members: Vec<usize> = if groups[i].is_empty() {
            vec![i]
        } else {
            groups[i].clone()
        };
        if groups[i].is_empty() {
            let op = t.0.op.as_ref().expect("pending nodes have an op");
            let inputs = t.0.inputs.borrow();
            let in_bufs: Vec<Rc<Buffer>> = inputs.iter().map(buffer_of).collect();
            let args: Vec<Arg> = inputs
                .iter()
                .zip(&in_bufs)
                .map(|(x, b)| Arg {
                    buffer: b.id,
                    shape: x.shape(),
                    dtype: x.dtype(),
                })
                .collect();
            backend.exec(op, &args, &out_arg)?;
        } else {
            let (fused, leaves) = build_fused(&order, &members);
            let in_bufs: Vec<Rc<Buffer>> = leaves.iter().map(buffer_of).collect();
            let args: Vec<Arg> = leaves
                .iter()
                .zip(&in_bufs)
                .map(|(x, b)| Arg {
                    buffer: b.id,
                    shape: x.shape(),
                    dtype: x.dtype(),
                })
                .collect();
            backend.exec_fused(&fused, &args, &out_arg)?;
        }
        buffers[i] = Some(out);
        for &m in &members {
            for x in order[m].0.inputs.borrow().iter() {
                if let Some(&j) = index.get(&x.id()) {
                    remaining[j] -= 1;
                    if remaining[j] == 0 && !keep[j] {
                        buffers[j] = None;
                    }
                }
            }
        }
    }
    backend.flush()?;

    for (i, t) in order.iter().enumerate() {
        if keep[i] {
            *t.0.buffer.borrow_mut() = buffers[i].take();
            // Inputs stay reachable only while a backward pass may still walk through them.
            if !t.requires_grad() {
                t.0.inputs.borrow_mut().clear();
            }
        }
    }
    Ok(())
}

/// Longest chain fused into one kernel.
const MAX_FUSED_OPS: usize = 16;

/// An elementwise node whose inputs a fused kernel can index (see [`FusedRead`]).
fn fusable(t: &Tensor) -> bool {
    matches!(t.op(), Some(Op::Unary(_) | Op::Binary(_) | Op::Where))
        && t.dtype() == DType::F32
        && t.0
            .inputs
            .borrow()
            .iter()
            .all(|x| FusedRead::of(x.shape(), t.shape()).is_some())
}

/// For each node that roots a fused group, the group's members in topological order (the
/// root last); empty for nodes that run alone. A node joins its consumer's group when that is
/// its only use and nothing outside the batch holds it.
fn plan_fusion(
    order: &[Tensor],
    index: &HashMap<u64, usize>,
    uses: &[usize],
    keep: &[bool],
    max_inputs: usize,
) -> Vec<Vec<usize>> {
    let mut groups = vec![Vec::new(); order.len()];
    let mut taken = vec![false; order.len()];
    for r in (0..order.len()).rev() {
        if taken[r] || !fusable(&order[r]) {
            continue;
        }
        let shape = order[r].shape();
        let mut members = vec![r];
        let mut leaves: Vec<u64> = Vec::new();
        let add_leaves = |leaves: &mut Vec<u64>, t: &Tensor, members: &[usize]| {
            for x in t.0.inputs.borrow().iter() {
                let member = index.get(&x.id()).is_some_and(|j| members.contains(j));
                if !member && !leaves.contains(&x.id()) {
                    leaves.push(x.id());
                }
            }
        };
        add_leaves(&mut leaves, &order[r], &members);
        let mut stack = vec![r];
        while let Some(m) = stack.pop() {
            let inputs: Vec<Tensor> = order[m].0.inputs.borrow().clone();
            for x in inputs {
                let Some(&j) = index.get(&x.id()) else {
                    continue;
                };
                let joinable = uses[j] == 1 && !keep[j] && !taken[j] && !members.contains(&j);
                if !joinable
                    || !fusable(&order[j])
                    || order[j].shape() != shape
                    || members.len() >= MAX_FUSED_OPS
                {
                    continue;
                }
                // Inlining j swaps it, as a leaf, for its own inputs.
                let mut grown: Vec<u64> =
                    leaves.iter().copied().filter(|&id| id != x.id()).collect();
                members.push(j);
                add_leaves(&mut grown, &order[j], &members);
                if grown.len() > max_inputs {
                    members.pop();
                    continue;
                }
                leaves = grown;
                stack.push(j);
            }
        }
        // A lone op is worth a generated kernel too when it broadcasts along one axis: the
        // generated index is a division by a constant, the generic kernel's a loop over axes.
        let axis_read = order[r].0.inputs.borrow().iter().any(|x| {
            matches!(
                FusedRead::of(x.shape(), shape),
                Some(FusedRead::Axis { .. })
            )
        });
        if members.len() > 1 || axis_read {
            members.sort_unstable();
            for &m in &members {
                taken[m] = true;
            }
            groups[r] = members;
        }
    }
    groups
}

/// The fused expression of a group and the tensors it reads, in input order.
fn build_fused(order: &[Tensor], members: &[usize]) -> (Fused, Vec<Tensor>) {
    let mut values = Vec::new();
    let mut leaves: Vec<Tensor> = Vec::new();
    let mut value_of: HashMap<u64, usize> = HashMap::new();
    for &m in members {
        let node = &order[m];
        let mut args = Vec::new();
        for x in node.0.inputs.borrow().iter() {
            let v = match value_of.get(&x.id()) {
                Some(&v) => v,
                None => {
                    leaves.push(x.clone());
                    values.push(FusedValue::Input {
                        index: leaves.len() - 1,
                        read: FusedRead::of(x.shape(), node.shape())
                            .expect("members only read inputs a fused kernel can index"),
                    });
                    value_of.insert(x.id(), values.len() - 1);
                    values.len() - 1
                }
            };
            args.push(v);
        }
        let op = node.op().expect("members have an op").clone();
        values.push(FusedValue::Op { op, args });
        value_of.insert(node.id(), values.len() - 1);
    }
    (Fused { values }, leaves)
}

/// Pending nodes reachable from `roots`, inputs before their users (iterative post-order DFS,
/// so deep graphs do not overflow the stack).
fn topo_pending(roots: &[&Tensor]) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<(Tensor, bool)> = roots.iter().map(|t| ((*t).clone(), false)).collect();
    stack.reverse();
    while let Some((t, expanded)) = stack.pop() {
        if t.is_realized() {
            continue;
        }
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        for x in t.0.inputs.borrow().iter().rev() {
            if !x.is_realized() && !seen.contains(&x.id()) {
                stack.push((x.clone(), false));
            }
        }
    }
    order
}
