//! Fusion plans: which nodes of a batch run inside another node's kernel ([`Group`]), and the
//! cache of recent plans a [`Device`](crate::Device) keeps (made in `fusion.rs`).

use std::rc::Rc;

/// A fused kernel: its members in topological order (the root last), and the members whose
/// values it stores (the root last). With a `product`, the kernel is that matmul's, and the
/// members are its epilogue.
#[derive(Clone, Default)]
pub(crate) struct Group {
    pub(crate) members: Vec<usize>,
    pub(crate) outputs: Vec<usize>,
    pub(crate) product: Option<usize>,
}

impl Group {
    /// A group of one node, storing it.
    pub(crate) fn single(node: usize) -> Group {
        Group {
            members: vec![node],
            outputs: vec![node],
            product: None,
        }
    }

    /// The nodes computed inside the root's kernel, the root aside.
    pub(crate) fn inner(&self) -> impl Iterator<Item = &usize> {
        self.members[..self.members.len() - 1]
            .iter()
            .chain(&self.product)
    }
}

/// For each node of a batch, the group it roots (see `fusion::plan`).
pub(crate) type Plan = Rc<Vec<Option<Group>>>;

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
    pub(crate) fn find(&self, structure: &[u64]) -> Option<Plan> {
        self.recent
            .iter()
            .find(|(s, _)| s == structure)
            .map(|(_, groups)| groups.clone())
    }

    /// How many plans are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.recent.len()
    }

    pub(crate) fn insert(&mut self, structure: Vec<u64>, groups: Plan) {
        if self.recent.len() == MAX_PLANS {
            self.recent.remove(0);
        }
        self.recent.push((structure, groups));
    }
}
