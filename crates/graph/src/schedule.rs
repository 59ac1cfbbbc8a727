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
        0 => Rc::new(vec![None; order.len()]),
        max_inputs => {
            let structure = structure(&order, &index, &keep);
            let cached = device.plans.borrow().find(&structure);
            cached.unwrap_or_else(|| {
                // The inputs of a one-output kernel, or inputs and outputs together.
                let mut groups = plan_fusion(&order, &index, &uses, &keep, max_inputs + 1);
                match backend.epilogue_buffers() {
                    0 => {}
                    max => plan_epilogues(&order, &index, &uses, &keep, &mut groups, max),
                }
                let groups = Rc::new(groups);
                device.plans.borrow_mut().insert(structure, groups.clone());
                groups
            })
        }
    };
    // Nodes computed inside another node's kernel.
    let inlined: Vec<bool> = {
        let mut v = vec![false; order.len()];
        for group in groups.iter().flatten() {
            for &m in group.inner() {
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
            Some(g) => (
                g.members.iter().chain(&g.product).copied().collect(),
                g.outputs.clone(),
            ),
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
            let args = args_of(&leaves, &in_bufs);
            match group.product {
                Some(p) => {
                    let product = &order[p];
                    let op = product.op().expect("pending nodes have an op");
                    let operands = product.0.inputs.borrow();
                    let operand_bufs: Vec<Rc<Buffer>> = operands.iter().map(buffer_of).collect();
                    let operand_args = args_of(&operands, &operand_bufs);
                    backend.exec_with_epilogue(op, &operand_args, &fused, &args, &out_args)?;
                }
                None => backend.exec_fused(&fused, &args, &out_args)?,
            }
        } else {
            let op = t.0.op.as_ref().expect("pending nodes have an op");
            let inputs = t.0.inputs.borrow();
            let in_bufs: Vec<Rc<Buffer>> = inputs.iter().map(buffer_of).collect();
            let args = args_of(&inputs, &in_bufs);
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

/// The launch operands of `tensors`, whose values are in `buffers`.
fn args_of<'a>(tensors: &'a [Tensor], buffers: &[Rc<Buffer>]) -> Vec<Arg<'a>> {
    tensors
        .iter()
        .zip(buffers)
        .map(|(x, b)| Arg {
            buffer: b.id,
            shape: x.shape(),
            dtype: x.dtype(),
        })
        .collect()
}

/// For each node of a batch, the group it roots (see [`plan_fusion`]).
type Plan = Rc<Vec<Option<Group>>>;

/// The fusion plans of recent batches, each under the structure it was made for: a training
/// loop realises the same graph every step, and finds its plan here instead of planning again.
#[derive(Default)]
pub(crate) struct Plans {
    /// (structure, groups), the most recently made last.
    recent: Vec<(Vec<u64>, Plan)>,
}

/// Plans kept: a training step, an evaluation batch, a last partial batch of each, and more.
const MAX_PLANS: usize = 8;

impl Plans {
    fn find(&self, structure: &[u64]) -> Option<Plan> {
        self.recent
            .iter()
            .find(|(s, _)| s == structure)
            .map(|(_, groups)| groups.clone())
    }

    fn insert(&mut self, structure: Vec<u64>, groups: Plan) {
        if self.recent.len() == MAX_PLANS {
            self.recent.remove(0);
        }
        self.recent.push((structure, groups));
    }
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
    max_buffers: usize,
) -> bool {
    let (buffers, constants) = leaves_of(order, members, product);
    members.len() <= MAX_FUSED_OPS
        && buffers.len() + outputs <= max_buffers
        && constants.len() <= MAX_FUSED_CONSTANTS
}

/// A fused kernel: its members in topological order (the root last), and the members whose
/// values it stores (the root last). With a `product`, the kernel is that matmul's, and the
/// members are its epilogue.
#[derive(Clone, Default)]
struct Group {
    members: Vec<usize>,
    outputs: Vec<usize>,
    product: Option<usize>,
}

impl Group {
    /// A group of one node, storing it.
    fn single(node: usize) -> Group {
        Group {
            members: vec![node],
            outputs: vec![node],
            product: None,
        }
    }

    /// The nodes computed inside the root's kernel, the root aside.
    fn inner(&self) -> impl Iterator<Item = &usize> {
        self.members[..self.members.len() - 1]
            .iter()
            .chain(&self.product)
    }
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
                if !fits(order, &members, None, 1, max_buffers) {
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
            if !fits(order, &members, None, outputs.len(), max_buffers) {
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
    max_buffers: usize,
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
            && fits(
                order,
                &group.members,
                Some(i),
                group.outputs.len(),
                max_buffers,
            )
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
fn build_fused(order: &[Tensor], group: &Group) -> (Fused, Vec<Tensor>) {
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

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use super::*;
    use crate::backend::{Backend, BufferId, Device};

    /// A backend that computes nothing and logs each launch: which kernels the scheduler asks
    /// for. Values are checked against the CPU backend in the GPU tests.
    struct Recorder {
        log: Rc<RefCell<Vec<String>>>,
        next: Cell<BufferId>,
        epilogues: usize,
    }

    impl Backend for Recorder {
        fn name(&self) -> String {
            "recorder".into()
        }
        fn is_gpu(&self) -> bool {
            false
        }
        fn alloc(&self, _bytes: usize) -> Result<BufferId> {
            self.next.set(self.next.get() + 1);
            Ok(self.next.get())
        }
        fn free(&self, _id: BufferId) {}
        fn write(&self, _id: BufferId, _data: &[u8]) -> Result<()> {
            Ok(())
        }
        fn read(&self, _id: BufferId, bytes: usize) -> Result<Vec<u8>> {
            Ok(vec![0; bytes])
        }
        fn exec(&self, op: &Op, _inputs: &[Arg<'_>], _out: &Arg<'_>) -> Result<()> {
            self.log.borrow_mut().push(op.name().to_string());
            Ok(())
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
        fn fusion_inputs(&self) -> usize {
            6
        }
        fn exec_fused(&self, fused: &Fused, inputs: &[Arg<'_>], outs: &[Arg<'_>]) -> Result<()> {
            let log = format!(
                "fused ({} ops, {} inputs, {} outputs)",
                ops(fused),
                inputs.len(),
                outs.len()
            );
            self.log.borrow_mut().push(log);
            Ok(())
        }
        fn epilogue_buffers(&self) -> usize {
            self.epilogues
        }
        fn exec_with_epilogue(
            &self,
            op: &Op,
            operands: &[Arg<'_>],
            fused: &Fused,
            inputs: &[Arg<'_>],
            outs: &[Arg<'_>],
        ) -> Result<()> {
            assert_eq!(fused.values[0], FusedValue::Product);
            assert_eq!(operands.len(), 2);
            let log = format!(
                "{} + epilogue ({} ops, {} inputs, {} outputs)",
                op.name(),
                ops(fused),
                inputs.len(),
                outs.len()
            );
            self.log.borrow_mut().push(log);
            Ok(())
        }
    }

    fn ops(fused: &Fused) -> usize {
        let is_op = |v: &&FusedValue| matches!(v, FusedValue::Op { .. });
        fused.values.iter().filter(is_op).count()
    }

    /// A recording device and inputs x [4, 8], w [8, 6], b [6], s [6].
    fn setup(epilogues: usize) -> (Rc<RefCell<Vec<String>>>, [Tensor; 4]) {
        let log = Rc::new(RefCell::new(Vec::new()));
        let dev = Device::new(Recorder {
            log: log.clone(),
            next: Cell::new(0),
            epilogues,
        });
        let t = |shape: &[usize]| {
            Tensor::from_slice(&dev, &vec![0.5; shape.iter().product()], shape).unwrap()
        };
        (log, [t(&[4, 8]), t(&[8, 6]), t(&[6]), t(&[6])])
    }

    fn launches(log: &Rc<RefCell<Vec<String>>>, roots: &[&Tensor]) -> Vec<String> {
        log.borrow_mut().clear();
        realize(roots).unwrap();
        log.borrow().clone()
    }

    #[test]
    fn bias_and_activation_run_in_the_products_kernel() {
        let (log, [x, w, b, _]) = setup(5);
        let y = (x.matmul(&w) + &b).relu();
        assert_eq!(
            launches(&log, &[&y]),
            ["matmul + epilogue (2 ops, 1 inputs, 1 outputs)"]
        );
    }

    #[test]
    fn an_epilogue_stores_a_value_the_caller_holds() {
        let (log, [x, w, b, s]) = setup(5);
        let z = x.matmul(&w) + &b;
        let y = (&z * &s).sigmoid();
        assert_eq!(
            launches(&log, &[&y, &z]),
            ["matmul + epilogue (3 ops, 2 inputs, 2 outputs)"]
        );
    }

    #[test]
    fn a_repeated_batch_is_planned_once() {
        let (log, [x, w, b, s]) = setup(5);
        let step = |x: &Tensor| ((x.matmul(&w) + &b) * &s).relu();
        let first = launches(&log, &[&step(&x)]);
        // A new graph of the same structure on other inputs: the plan is found, not made.
        let x2 = &x * &x;
        x2.realize().unwrap();
        let plans = || x.device().plans.borrow().recent.len();
        let before = plans();
        assert_eq!(launches(&log, &[&step(&x2)]), first);
        assert_eq!(plans(), before);
        // The same ops with the product held by the caller: another structure, another plan.
        let p = x.matmul(&w);
        let y = ((&p + &b) * &s).relu();
        assert_eq!(
            launches(&log, &[&y, &p]),
            ["matmul", "fused (3 ops, 3 inputs, 1 outputs)"]
        );
        assert_eq!(plans(), before + 1);
    }

    #[test]
    fn a_product_used_twice_or_with_no_room_is_stored() {
        // Two uses: the product is stored, then read by one fused kernel.
        let (log, [x, w, b, _]) = setup(5);
        let p = x.matmul(&w);
        let y = &p.relu() + &(&p + &b);
        assert_eq!(
            launches(&log, &[&y]),
            ["matmul", "fused (3 ops, 2 inputs, 1 outputs)"]
        );
        // A backend without epilogues, and one whose epilogue has room for the output only.
        for room in [0, 1] {
            let (log, [x, w, b, _]) = setup(room);
            let y = (x.matmul(&w) + &b).relu();
            assert_eq!(
                launches(&log, &[&y]),
                ["matmul", "fused (2 ops, 2 inputs, 1 outputs)"]
            );
        }
    }
}
