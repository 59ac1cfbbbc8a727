//! Realisation: every pending node that the requested tensors need goes into one batch, in
//! topological order, with intermediate buffers handed back to the backend's pool right after
//! their last use, then one flush (one queue submission on a GPU).

use std::collections::HashMap;
use std::rc::Rc;

use crate::backend::{Arg, Buffer, Fused, FusedRead, FusedValue, MAX_FUSED_CONSTANTS};
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
        0 => vec![None; order.len()],
        // The inputs of a one-output kernel, or inputs and outputs together.
        max_inputs => plan_fusion(&order, &index, &uses, &keep, max_inputs + 1),
    };
    // Nodes computed inside another node's kernel.
    let inlined: Vec<bool> = {
        let mut v = vec![false; order.len()];
        for group in groups.iter().flatten() {
            for &m in &group.members[..group.members.len() - 1] {
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
        // The nodes whose inputs this launch consumes and those whose values it stores: the
        // group, or the node alone.
        let (members, outputs) = match &groups[i] {
            Some(g) => (g.members.clone(), g.outputs.clone()),
            None => (vec![i], vec![i]),
        };
        let outs: Vec<Rc<Buffer>> = outputs
            .iter()
            .map(|&o| Buffer::alloc(&device, order[o].numel() * 4))
            .collect::<Result<_>>()?;
        let out_args: Vec<Arg> = outputs
            .iter()
            .zip(&outs)
            .map(|(&o, b)| Arg {
                buffer: b.id,
                shape: order[o].shape(),
                dtype: order[o].dtype(),
            })
            .collect();
        if let Some(group) = &groups[i] {
            let (fused, leaves) = build_fused(&order, group);
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
            backend.exec_fused(&fused, &args, &out_args)?;
        } else {
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
            backend.exec(op, &args, &out_args[0])?;
        }
        for (&o, b) in outputs.iter().zip(outs) {
            buffers[o] = Some(b);
        }
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

/// Most ops fused into one kernel.
const MAX_FUSED_OPS: usize = 24;

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

/// A one-element constant that fused kernels take from their parameters.
fn is_constant(t: &Tensor) -> bool {
    t.0.constant.get().is_some() && t.is_realized()
}

/// The buffers a group reads (ids, in first-use order) and the constants it reads.
fn leaves_of(order: &[Tensor], members: &[usize]) -> (Vec<u64>, Vec<u64>) {
    let ids: Vec<u64> = members.iter().map(|&m| order[m].id()).collect();
    let (mut buffers, mut constants) = (Vec::new(), Vec::new());
    for &m in members {
        for x in order[m].0.inputs.borrow().iter() {
            let list = if is_constant(x) {
                &mut constants
            } else {
                &mut buffers
            };
            if !ids.contains(&x.id()) && !list.contains(&x.id()) {
                list.push(x.id());
            }
        }
    }
    (buffers, constants)
}

/// Whether a group with these members and `outputs` stored values fits one kernel.
fn fits(order: &[Tensor], members: &[usize], outputs: usize, max_buffers: usize) -> bool {
    let (buffers, constants) = leaves_of(order, members);
    members.len() <= MAX_FUSED_OPS
        && buffers.len() + outputs <= max_buffers
        && constants.len() <= MAX_FUSED_CONSTANTS
}

/// A fused kernel: its members in topological order (the root last), and the members whose
/// values it stores (the root last).
#[derive(Clone, Default)]
struct Group {
    members: Vec<usize>,
    outputs: Vec<usize>,
}

/// For each node that roots a fused group, the group; `None` for nodes that run alone or
/// inside another node's group. A node joins its consumer's group when that is its only use
/// and nothing outside the batch holds it. Then a group also absorbs the groups (or lone
/// elementwise nodes) of the same shape whose every use in the batch is inside it, storing
/// their values too when they outlive the batch: an optimizer's new moments and new
/// parameter become one kernel.
fn plan_fusion(
    order: &[Tensor],
    index: &HashMap<u64, usize>,
    uses: &[usize],
    keep: &[bool],
    max_buffers: usize,
) -> Vec<Option<Group>> {
    let mut groups: Vec<Option<Group>> = vec![None; order.len()];
    let mut taken = vec![false; order.len()];
    for r in (0..order.len()).rev() {
        if taken[r] || !fusable(&order[r]) {
            continue;
        }
        let shape = order[r].shape();
        let mut members = vec![r];
        let mut stack = vec![r];
        while let Some(m) = stack.pop() {
            let inputs: Vec<Tensor> = order[m].0.inputs.borrow().clone();
            for x in inputs {
                let Some(&j) = index.get(&x.id()) else {
                    continue;
                };
                let joinable = uses[j] == 1 && !keep[j] && !taken[j] && !members.contains(&j);
                if !joinable || !fusable(&order[j]) || order[j].shape() != shape {
                    continue;
                }
                members.push(j);
                if !fits(order, &members, 1, max_buffers) {
                    members.pop();
                    continue;
                }
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
            groups[r] = Some(Group {
                members,
                outputs: vec![r],
            });
        }
    }

    // Absorb producers whose every use in the batch is inside the group.
    for b in (0..order.len()).rev() {
        let Some(mut group) = groups[b].take() else {
            continue;
        };
        let mut tried: Vec<usize> = Vec::new();
        loop {
            let shape = order[b].shape();
            let candidate = group.members.iter().find_map(|&m| {
                order[m].0.inputs.borrow().iter().find_map(|x| {
                    let &j = index.get(&x.id())?;
                    let alone = groups[j].is_none() && !taken[j] && fusable(&order[j]);
                    let root = groups[j].is_some() || alone;
                    let refs: usize = group
                        .members
                        .iter()
                        .map(|&k| {
                            let inputs = order[k].0.inputs.borrow();
                            inputs.iter().filter(|y| y.id() == x.id()).count()
                        })
                        .sum();
                    let fresh = !group.members.contains(&j) && !tried.contains(&j);
                    (root && fresh && order[j].shape() == shape && refs == uses[j]).then_some(j)
                })
            });
            let Some(j) = candidate else { break };
            let absorbed = groups[j].clone().unwrap_or_else(|| Group {
                members: vec![j],
                outputs: vec![j],
            });
            let mut members = group.members.clone();
            members.extend(&absorbed.members);
            members.sort_unstable();
            let mut outputs: Vec<usize> = absorbed
                .outputs
                .iter()
                .copied()
                .filter(|&o| keep[o])
                .collect();
            outputs.extend(&group.outputs);
            if !fits(order, &members, outputs.len(), max_buffers) {
                tried.push(j);
                continue;
            }
            groups[j] = None;
            for &m in &absorbed.members {
                taken[m] = true;
            }
            group = Group { members, outputs };
        }
        groups[b] = Some(group);
    }
    groups
}

/// The fused expression of a group and the tensors it reads, in input order.
fn build_fused(order: &[Tensor], group: &Group) -> (Fused, Vec<Tensor>) {
    let mut values = Vec::new();
    let mut constants = Vec::new();
    let mut leaves: Vec<Tensor> = Vec::new();
    let mut value_of: HashMap<u64, usize> = HashMap::new();
    for &m in &group.members {
        let node = &order[m];
        let mut args = Vec::new();
        for x in node.0.inputs.borrow().iter() {
            let v = match value_of.get(&x.id()) {
                Some(&v) => v,
                None => {
                    if let Some(c) = x.0.constant.get().filter(|_| is_constant(x)) {
                        constants.push(c);
                        values.push(FusedValue::Const {
                            slot: constants.len() - 1,
                        });
                    } else {
                        leaves.push(x.clone());
                        values.push(FusedValue::Input {
                            index: leaves.len() - 1,
                            read: FusedRead::of(x.shape(), node.shape())
                                .expect("members only read inputs a fused kernel can index"),
                        });
                    }
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
    let outputs = group
        .outputs
        .iter()
        .map(|o| value_of[&order[*o].id()])
        .collect();
    (
        Fused {
            values,
            constants,
            outputs,
        },
        leaves,
    )
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
