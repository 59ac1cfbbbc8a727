//! Realisation: every pending node that the requested tensors need goes into one batch, in
//! topological order, with intermediate buffers handed back to the backend's pool right after
//! their last use, then one flush (one queue submission on a GPU).

use std::collections::HashMap;
use std::rc::Rc;

use crate::backend::{Arg, Launch};
use crate::device::{Buffer, Device};
use crate::error::{Error, Result};
use crate::fusion::{self, build_fused};
use crate::tensor::Tensor;

impl Tensor {
    /// Computes this tensor (and whatever it needs that is not computed yet) in one batch.
    pub fn realize(&self) -> Result<&Self> {
        realize(&[self])?;
        Ok(self)
    }
}

/// Computes several tensors in one batch (one submission on a GPU).
pub fn realize_all(tensors: &[&Tensor]) -> Result<()> {
    realize(tensors)
}

impl Device {
    /// Computes `t` together with the next batch realised on this device, so state updates
    /// such as batch-norm running statistics ride along with the training step's submission.
    pub fn realize_later(&self, t: &Tensor) {
        self.deferred.borrow_mut().push(Rc::new(t.clone()));
    }

    fn take_deferred(&self) -> Vec<Tensor> {
        let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        deferred
            .into_iter()
            .map(|t| {
                let t = t.downcast::<Tensor>().expect("only tensors are deferred");
                Rc::unwrap_or_clone(t)
            })
            .collect()
    }
}

fn realize(roots: &[&Tensor]) -> Result<()> {
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
    check_host_indices(&order)?;
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
    let planner = (device.capabilities(), &*device.plans);
    let groups = fusion::plan(planner, &order, &index, &uses, &keep);
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
                    backend.exec(&Launch::Epilogue {
                        op,
                        operands: &operand_args,
                        fused: &fused,
                        inputs: &args,
                        outs: &out_args,
                    })?;
                }
                None => backend.exec(&Launch::Fused {
                    fused: &fused,
                    inputs: &args,
                    outs: &out_args,
                })?,
            }
        } else {
            let op = t.0.op.as_ref().expect("pending nodes have an op");
            let inputs = t.0.inputs.borrow();
            let in_bufs: Vec<Rc<Buffer>> = inputs.iter().map(buffer_of).collect();
            let args = args_of(&inputs, &in_bufs);
            backend.exec(&Launch::Op {
                op,
                inputs: &args,
                out: &out_args[0],
            })?;
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

/// Indices uploaded from the host are checked against what they index before anything of
/// the batch runs (indices computed on a device are checked by its kernels).
fn check_host_indices(order: &[Tensor]) -> Result<()> {
    for t in order {
        let Some(op) = t.op() else { continue };
        let inputs = t.0.inputs.borrow();
        let shapes: Vec<&[usize]> = inputs.iter().map(|x| x.shape()).collect();
        let Some((i, size)) = op.index_bound(&shapes) else {
            continue;
        };
        if let Some(max) = inputs[i].0.max_index.get().filter(|&m| m as usize >= size) {
            return Err(Error::Index {
                op: op.name(),
                index: max as u64,
                size: size as u64,
            });
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
    use crate::backend::{Backend, BufferId, Capabilities, Fused, FusedValue};

    /// A backend that computes nothing and logs each launch: which kernels the scheduler asks
    /// for. Values are checked against the CPU backend in the GPU tests.
    struct Recorder {
        log: Rc<RefCell<Vec<String>>>,
        next: Cell<BufferId>,
        caps: Capabilities,
    }

    impl Backend for Recorder {
        fn capabilities(&self) -> &Capabilities {
            &self.caps
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
        fn exec(&self, launch: &Launch<'_>) -> Result<()> {
            let log = match *launch {
                Launch::Op { op, .. } => op.name().to_string(),
                Launch::Fused {
                    fused,
                    inputs,
                    outs,
                } => format!(
                    "fused ({} ops, {} inputs, {} outputs)",
                    ops(fused),
                    inputs.len(),
                    outs.len()
                ),
                Launch::Epilogue {
                    op,
                    operands,
                    fused,
                    inputs,
                    outs,
                } => {
                    assert_eq!(fused.values[0], FusedValue::Product);
                    assert_eq!(operands.len(), 2);
                    format!(
                        "{} + epilogue ({} ops, {} inputs, {} outputs)",
                        op.name(),
                        ops(fused),
                        inputs.len(),
                        outs.len()
                    )
                }
            };
            self.log.borrow_mut().push(log);
            Ok(())
        }
        fn flush(&self) -> Result<()> {
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
            caps: Capabilities {
                fused_inputs: 6,
                fused_ops: 24,
                fused_constants: 16,
                epilogue_buffers: epilogues,
                ..Capabilities::unfused("recorder", false)
            },
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
        let plans = || x.device().plans.borrow().len();
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
