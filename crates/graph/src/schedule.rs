//! Realisation: every pending node that the requested tensors need goes into one batch, in
//! topological order, with intermediate buffers handed back to the backend's pool right after
//! their last use, then one flush (one queue submission on a GPU).

use std::collections::HashMap;
use std::rc::Rc;

use crate::backend::{Arg, Buffer};
use crate::error::Result;
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

    let mut buffers: Vec<Option<Rc<Buffer>>> = vec![None; order.len()];
    let mut remaining = uses.clone();
    let backend = device.backend();
    for (i, t) in order.iter().enumerate() {
        let op = t.0.op.as_ref().expect("pending nodes have an op");
        let inputs = t.0.inputs.borrow();
        let in_bufs: Vec<Rc<Buffer>> = inputs
            .iter()
            .map(|x| match index.get(&x.id()) {
                Some(&j) => buffers[j]
                    .clone()
                    .expect("input computed earlier in the batch"),
                None => {
                    x.0.buffer
                        .borrow()
                        .clone()
                        .expect("input outside the batch is realized")
                }
            })
            .collect();
        let out = Buffer::alloc(&device, t.numel() * 4)?;
        let args: Vec<Arg> = inputs
            .iter()
            .zip(&in_bufs)
            .map(|(x, b)| Arg {
                buffer: b.id,
                shape: x.shape(),
                dtype: x.dtype(),
            })
            .collect();
        let out_arg = Arg {
            buffer: out.id,
            shape: t.shape(),
            dtype: t.dtype(),
        };
        backend.exec(op, &args, &out_arg)?;
        buffers[i] = Some(out);
        for x in inputs.iter() {
            if let Some(&j) = index.get(&x.id()) {
                remaining[j] -= 1;
                if remaining[j] == 0 && !keep[j] {
                    buffers[j] = None;
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
