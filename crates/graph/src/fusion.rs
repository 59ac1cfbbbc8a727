//! Fusion planning: which nodes of a batch run inside another node's kernel. Chains of
//! elementwise ops become one generated kernel, storing every value that outlives the batch;
//! a matmul or convolution takes the elementwise group after it as its epilogue. Plans are
//! kept per device under the batch's structure, so a repeated step is planned once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::backend::{Capabilities, Fused, FusedRead, FusedValue};
use crate::op::{DType, Op};
use crate::plan::{Group, Plan, Plans};
use crate::tensor::Tensor;

/// The fusion plan of the batch `order` (inputs before users; `index` maps node ids to
/// positions, `uses` counts uses inside the batch, `keep` marks nodes that outlive it): for
/// each node, the group it roots. Found among the device's recent plans when a batch of the
/// same structure was planned before.
pub(crate) fn plan(
    (caps, plans): (&Capabilities, &RefCell<Plans>),
    order: &[Tensor],
    index: &HashMap<u64, usize>,
    uses: &[usize],
    keep: &[bool],
) -> Plan {
    if caps.fused_inputs == 0 {
        return Rc::new(vec![None; order.len()]);
    }
    let structure = structure(order, index, keep);
    if let Some(plan) = plans.borrow().find(&structure) {
        return plan;
    }
    // The inputs of a one-output kernel, or inputs and outputs together.
    let limits = Limits {
        ops: caps.fused_ops,
        constants: caps.fused_constants,
    };
    let mut groups = plan_fusion(order, index, uses, keep, (caps.fused_inputs + 1, limits));
    if caps.epilogue_buffers > 0 {
        let max = (caps.epilogue_buffers, limits);
        plan_epilogues(order, index, uses, keep, &mut groups, max);
    }
    let plan = Rc::new(groups);
    plans.borrow_mut().insert(structure, plan.clone());
    plan
}

/// The most ops and constants one fused kernel may take (see [`Capabilities`]).
#[derive(Clone, Copy)]
struct Limits {
    ops: usize,
    constants: usize,
}

/// Everything of a batch that its fusion plan depends on, as numbers: per node (in order) the
/// kind of op (elementwise, a product that takes an epilogue, other), its dtype and shape, whether it outlives the
/// batch, and its inputs: nodes of the batch by position, other tensors by the order they are
/// first read in (a tensor read twice is one kernel input), with their shapes and whether
/// they are constants. Two batches of equal structure get the same plan, so it is made once.
fn structure(order: &[Tensor], index: &HashMap<u64, usize>, keep: &[bool]) -> Vec<u64> {
    let mut s = Vec::with_capacity(order.len() * 8);
    let mut outside: HashMap<u64, u64> = HashMap::new();
    for (i, t) in order.iter().enumerate() {
        let kind = match t.op() {
            Some(Op::Unary(_) | Op::Binary(_) | Op::Where) => 1,
            _ if is_product(t) => 2,
            _ => 3,
        };
        let inputs = t.0.inputs.borrow();
        let dtype = (t.dtype() == DType::F32) as u64;
        s.push(kind | dtype << 2 | (keep[i] as u64) << 3 | (inputs.len() as u64) << 4);
        s.push(t.shape().len() as u64);
        s.extend(t.shape().iter().map(|&d| d as u64));
        for x in inputs.iter() {
            match index.get(&x.id()) {
                Some(&j) => s.push(j as u64),
                None => {
                    let next = outside.len() as u64;
                    let first = *outside.entry(x.id()).or_insert(next);
                    s.push(1 << 63 | first << 1 | is_constant(x) as u64);
                    s.push(x.shape().len() as u64);
                    s.extend(x.shape().iter().map(|&d| d as u64));
                }
            }
        }
    }
    s
}

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

/// A node whose kernel can apply an epilogue as it stores: a matmul, a convolution.
fn is_product(t: &Tensor) -> bool {
    matches!(t.op(), Some(Op::MatMul { .. } | Op::Conv2d(_)))
}

/// A one-element constant that fused kernels take from their parameters.
fn is_constant(t: &Tensor) -> bool {
    t.0.constant.get().is_some() && t.is_realized()
}

/// The buffers a group reads (ids, in first-use order) and the constants it reads; the
/// matmul `product` it takes as its input is computed in the kernel, not read.
fn leaves_of(order: &[Tensor], members: &[usize], product: Option<usize>) -> (Vec<u64>, Vec<u64>) {
    let ids: Vec<u64> = members
        .iter()
        .chain(&product)
        .map(|&m| order[m].id())
        .collect();
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

/// Whether a group with these members (after `product`, if any) and `outputs` stored values
/// fits one kernel.
fn fits(
    order: &[Tensor],
    members: &[usize],
    product: Option<usize>,
    outputs: usize,
    (max_buffers, limits): (usize, Limits),
) -> bool {
    let (buffers, constants) = leaves_of(order, members, product);
    members.len() <= limits.ops
        && buffers.len() + outputs <= max_buffers
        && constants.len() <= limits.constants
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
    bounds: (usize, Limits),
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
                if !fits(order, &members, None, 1, bounds) {
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
                product: None,
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
            let absorbed = groups[j].clone().unwrap_or_else(|| Group::single(j));
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
            if !fits(order, &members, None, outputs.len(), bounds) {
                tried.push(j);
                continue;
            }
            groups[j] = None;
            for &m in &absorbed.members {
                taken[m] = true;
            }
            group = Group {
                members,
                outputs,
                product: None,
            };
        }
        groups[b] = Some(group);
    }
    groups
}

/// Hands each product (matmul, convolution) whose one use is an elementwise node of its shape
/// (a group's member, or a node alone) that group as its epilogue: the product is then never
/// stored, and a layer's bias and activation run in the product's kernel. A group takes one
/// product.
fn plan_epilogues(
    order: &[Tensor],
    index: &HashMap<u64, usize>,
    uses: &[usize],
    keep: &[bool],
    groups: &mut [Option<Group>],
    bounds: (usize, Limits),
) {
    let none = usize::MAX;
    // The consumer of each node (the last one, which is the only one for nodes used once),
    // and the root of the group each node belongs to.
    let mut user = vec![none; order.len()];
    for (c, t) in order.iter().enumerate() {
        for x in t.0.inputs.borrow().iter() {
            if let Some(&j) = index.get(&x.id()) {
                user[j] = c;
            }
        }
    }
    let mut root = vec![none; order.len()];
    for (r, group) in groups.iter().enumerate() {
        for &m in group.iter().flat_map(|g| &g.members) {
            root[m] = r;
        }
    }
    for (i, t) in order.iter().enumerate() {
        let product = is_product(t) && t.dtype() == DType::F32;
        if !product || uses[i] != 1 || keep[i] {
            continue;
        }
        let c = user[i];
        if !fusable(&order[c]) || order[c].shape() != t.shape() {
            continue;
        }
        let r = if root[c] == none { c } else { root[c] };
        let group = groups[r].clone().unwrap_or_else(|| Group::single(c));
        if group.product.is_none()
            && fits(order, &group.members, Some(i), group.outputs.len(), bounds)
        {
            root[c] = r;
            groups[r] = Some(Group {
                product: Some(i),
                ..group
            });
        }
    }
}

/// The fused expression of a group and the tensors it reads, in input order.
pub(crate) fn build_fused(order: &[Tensor], group: &Group) -> (Fused, Vec<Tensor>) {
    let mut values = Vec::new();
    let mut constants = Vec::new();
    let mut leaves: Vec<Tensor> = Vec::new();
    let mut value_of: HashMap<u64, usize> = HashMap::new();
    if let Some(p) = group.product {
        values.push(FusedValue::Product);
        value_of.insert(order[p].id(), 0);
    }
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
