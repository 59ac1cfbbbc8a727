//! The kinds of program a case starts from; `generate.rs` then adds random steps.

use wgrad::graph::{BinaryOp, Conv2dSpec, Pool2dSpec, UnaryOp};
use wgrad::DType;

use super::Gen;
use crate::fuzzer::program::{Leaf, Node};

impl Gen {
    /// Elementwise chains and reductions over random axes.
    pub(super) fn chain(&mut self) -> usize {
        let shape: Vec<usize> = if self.large {
            let rank = 1 + self.rng.below(3);
            let big_axis = self.rng.below(rank);
            (0..rank)
                .map(|d| {
                    if d == big_axis {
                        self.big()
                    } else {
                        self.pick(&[1, 2, 3])
                    }
                })
                .collect()
        } else {
            let rank = 1 + self.rng.below(4);
            (0..rank).map(|_| self.dim()).collect()
        };
        let exact_path = self.chance(0.4);
        let x = self.input(&shape, exact_path);
        let mut cur = x;
        for _ in 0..1 + self.rng.below(3) {
            cur = if exact_path {
                self.exact_step(cur)
            } else {
                self.step_elementwise(cur)
            };
        }
        let rank = self.shape(cur).len();
        let mut axes = self.axes(rank);
        if self.large {
            // Every large case reduces its long axis.
            let long = (0..rank).max_by_key(|&d| self.shape(cur)[d]).unwrap_or(0);
            if !axes.contains(&long) {
                axes.push(long);
                axes.sort_unstable();
            }
        }
        let keep = self.chance(0.5);
        let reduced = match (self.exact[cur], self.rng.below(4)) {
            (true, 0) => self.node(Node::Max(cur, axes, keep)),
            (true, 1) => {
                let axis = axes[self.rng.below(axes.len())];
                self.node(Node::Argmax(cur, axis, keep))
            }
            (_, 2) => self.node(Node::Mean(cur, axes, keep)),
            _ => self.node(Node::Sum(cur, axes, keep)),
        };
        if self.dtype(reduced) == DType::U32 {
            return self.node(Node::Cast(reduced, DType::F32));
        }
        reduced
    }

    /// A matrix product, possibly batched, broadcast or transposed, with an epilogue.
    pub(super) fn matmul(&mut self) -> usize {
        let (m, k, n) = if self.large {
            (1 + self.rng.below(5), self.big(), self.pick(&[1, 3, 4, 8]))
        } else {
            match self.rng.below(3) {
                0 => (self.dim(), self.dim(), self.dim()),
                // Multiples of 4: the vec4 kernels; past 64 rows several uniform windows.
                1 => (4 * self.dim(), 4 * self.dim(), 4 * self.dim()),
                _ => (
                    1 + self.rng.below(80),
                    4 * (1 + self.rng.below(40)),
                    4 * self.dim(),
                ),
            }
        };
        let batch: Vec<usize> = if self.large {
            vec![]
        } else {
            (0..self.rng.below(3))
                .map(|_| self.pick(&[1, 2, 3]))
                .collect()
        };
        let (ta, tb) = (self.chance(0.25), self.chance(0.25));
        let mut sa = if self.chance(0.3) {
            vec![]
        } else {
            batch.clone()
        };
        let mut sb = if self.chance(0.3) && !sa.is_empty() {
            vec![]
        } else {
            batch.clone()
        };
        sa.extend(if ta { [k, m] } else { [m, k] });
        sb.extend(if tb { [n, k] } else { [k, n] });
        let a = self.input(&sa, false);
        let b = self.input(&sb, false);
        let p = self.node(Node::MatMul(a, b, ta, tb));
        self.epilogue(p, 1)
    }

    /// 0 to 3 elementwise ops after a product: a bias along one axis, an activation, a scalar.
    fn epilogue(&mut self, p: usize, channel_axis: usize) -> usize {
        let mut cur = p;
        for _ in 0..self.rng.below(4) {
            let shape = self.shape(cur);
            cur = match self.rng.below(4) {
                0 => {
                    // A bias varying along the channel axis from the right (or the last).
                    let rank = shape.len();
                    let axis = rank.saturating_sub(channel_axis).min(rank - 1);
                    let bias: Vec<usize> = (axis..rank)
                        .map(|d| if d == axis { shape[d] } else { 1 })
                        .collect();
                    let b = self.input(&bias, false);
                    self.node(Node::Binary(BinaryOp::Add, cur, b))
                }
                1 => {
                    let c = self.pick(&[0.5, 0.25, 2.0, -3.0, 1.25]);
                    let op = self.pick(&[BinaryOp::Mul, BinaryOp::Add]);
                    self.node(Node::Scalar(op, cur, c))
                }
                _ => self.unary(cur),
            };
        }
        cur
    }

    /// A convolution (groups, strides, padding, dilation) with an epilogue, then maybe
    /// pooling and a reduction.
    pub(super) fn conv(&mut self) -> usize {
        let groups = if self.large { 1 } else { self.pick(&[1, 1, 2]) };
        let (n, cg, og, hw, k) = if self.large {
            match self.rng.below(3) {
                // Weight and bias gradients over n·oh·ow > 65,536 terms.
                0 | 1 => (
                    96 + self.rng.below(33),
                    1 + self.rng.below(2),
                    2 + self.rng.below(5),
                    28,
                    3,
                ),
                // Direct kernels over 600-odd input channels.
                _ => (
                    1 + self.rng.below(2),
                    600 + self.rng.below(100),
                    self.pick(&[3, 8]),
                    6,
                    3,
                ),
            }
        } else {
            let k = self.pick(&[1, 2, 3]);
            (
                1 + self.rng.below(3),
                1 + self.rng.below(4),
                1 + self.rng.below(6),
                k + 2 + self.rng.below(9),
                k,
            )
        };
        let spec = if self.large {
            Conv2dSpec::default()
        } else {
            Conv2dSpec {
                stride: [1 + self.rng.below(2), 1 + self.rng.below(2)],
                padding: [self.rng.below(2), self.rng.below(2)],
                dilation: if k > 1 && self.chance(0.2) {
                    [2, 1]
                } else {
                    [1, 1]
                },
                groups,
            }
        };
        let width = hw + self.rng.below(2);
        let x = self.input(&[n, cg * groups, hw, width], false);
        let transposed = !self.large && self.chance(0.25);
        let y = if transposed {
            // Weights [c_in, c_out / groups, kh, kw]; output padding below the stride.
            let w = self.input(&[cg * groups, og, k, k], false);
            let pad = [
                self.rng.below(spec.stride[0].max(spec.dilation[0])),
                self.rng.below(spec.stride[1].max(spec.dilation[1])),
            ];
            let pad = [
                pad[0].min(spec.stride[0] - 1),
                pad[1].min(spec.stride[1] - 1),
            ];
            self.node(Node::ConvTranspose2d(x, w, spec, pad))
        } else {
            let w = self.input(&[og * groups, cg, k, k], false);
            self.node(Node::Conv2d(x, w, spec))
        };
        let mut cur = self.epilogue(y, 3);
        let [h, wd] = [self.shape(cur)[2], self.shape(cur)[3]];
        if !self.large && h >= 2 && wd >= 2 && self.chance(0.5) {
            let spec = match self.rng.below(3) {
                0 => Pool2dSpec::square(2),
                1 => Pool2dSpec {
                    kernel: [2, 2],
                    stride: [1, 1],
                    padding: [0, 0],
                    ceil_mode: false,
                    count_include_pad: true,
                },
                _ => Pool2dSpec {
                    kernel: [3, 3],
                    stride: [1, 2],
                    padding: [1, 1],
                    ceil_mode: false,
                    count_include_pad: self.chance(0.5),
                },
            };
            if self.exact[cur] && self.chance(0.7) || !self.exact[cur] && self.chance(0.3) {
                // Max pooling needs exact values: pool a relu of the input itself.
                if !self.exact[cur] {
                    cur = self.node(Node::Unary(UnaryOp::Relu, x));
                }
                cur = self.node(Node::MaxPool(cur, spec));
            } else {
                cur = self.node(Node::AvgPool(cur, spec));
            }
        }
        if self.chance(0.5) {
            let axes = self.axes(4);
            let keep = self.chance(0.5);
            cur = self.node(Node::Sum(cur, axes, keep));
        }
        cur
    }

    /// Layout ops: permutes, slices, pads, concatenations, broadcasts and reshapes.
    pub(super) fn layout(&mut self) -> usize {
        let rank = 2 + self.rng.below(3);
        let shape: Vec<usize> = (0..rank).map(|_| self.dim()).collect();
        let distinct = self.chance(0.5);
        let x = self.input(&shape, distinct);
        let mut cur = x;
        for _ in 0..1 + self.rng.below(4) {
            let shape = self.shape(cur);
            let rank = shape.len();
            cur = match self.rng.below(6) {
                0 => {
                    let mut perm: Vec<usize> = (0..rank).collect();
                    self.rng.shuffle(&mut perm);
                    self.node(Node::Permute(cur, perm))
                }
                1 => {
                    let ranges = shape
                        .iter()
                        .map(|&d| {
                            let a = self.rng.below(d);
                            (a, a + 1 + self.rng.below(d - a))
                        })
                        .collect();
                    self.node(Node::Slice(cur, ranges))
                }
                2 => {
                    let before = (0..rank).map(|_| self.rng.below(3)).collect();
                    let after = (0..rank).map(|_| self.rng.below(3)).collect();
                    self.node(Node::Pad(cur, before, after))
                }
                3 => {
                    let axis = self.rng.below(rank);
                    let mut other = shape.clone();
                    other[axis] = self.dim();
                    let y = self.input(&other, self.exact[cur]);
                    let (a, b) = if self.chance(0.5) { (cur, y) } else { (y, cur) };
                    self.node(Node::Concat(vec![a, b], axis))
                }
                4 if rank < 5 => {
                    // A size-1 axis in front, broadcast to 2 or 3.
                    let mut one = vec![1];
                    one.extend(&shape);
                    let r = self.node(Node::Reshape(cur, one));
                    let mut wide = vec![self.pick(&[2, 3])];
                    wide.extend(&shape);
                    self.node(Node::Expand(r, wide))
                }
                _ => {
                    let flat = vec![shape.iter().product()];
                    self.node(Node::Reshape(cur, flat))
                }
            };
        }
        let shape = self.shape(cur);
        let other = self.broadcastable(&shape);
        let y = self.input(&other, self.exact[cur]);
        let z = self.binary(cur, y);
        let rank = self.shape(z).len();
        if rank == 0 {
            return z;
        }
        let axes = self.axes(rank);
        self.node(Node::Sum(z, axes, false))
    }

    /// Rows of a table picked by indices (now and then one past the table, which every
    /// backend must refuse), and one-hot labels.
    pub(super) fn gather(&mut self) -> usize {
        let rows = 1 + self.rng.below(12);
        let mut table_shape = vec![rows];
        table_shape.extend((0..self.rng.below(3)).map(|_| self.dim()));
        let idx_shape: Vec<usize> = (0..1 + self.rng.below(2)).map(|_| self.dim()).collect();
        let bad = self
            .chance(0.08)
            .then(|| self.pick(&[rows as u32, rows as u32 + 7, u32::MAX]));
        let exact = self.chance(0.5);
        let table = self.input(&table_shape, exact);
        let idx = self.leaf(Leaf::Index {
            shape: idx_shape,
            bound: rows as u32,
            bad,
        });
        let g = self.node(Node::Gather(table, idx));
        let g = self.step_elementwise(g);
        let rank = self.shape(g).len();
        let axes = self.axes(rank);
        self.node(Node::Sum(g, axes, false))
    }

    /// Softmax and log-softmax along an axis, and a cross-entropy against one-hot labels.
    pub(super) fn softmax(&mut self) -> usize {
        let (b, c) = if self.large {
            (1 + self.rng.below(2), self.big())
        } else {
            (self.dim(), self.dim())
        };
        let logits = self.input(&[b, c], false);
        if self.chance(0.5) {
            let axis = self.rng.below(2);
            let s = match self.rng.below(2) {
                0 => self.node(Node::Softmax(logits, axis)),
                _ => self.node(Node::LogSoftmax(logits, axis)),
            };
            return self.step_elementwise(s);
        }
        let bad = self.chance(0.05).then_some(c as u32 + 1);
        let labels = self.leaf(Leaf::Index {
            shape: vec![b],
            bound: c as u32,
            bad,
        });
        let logp = self.node(Node::LogSoftmax(logits, 1));
        let onehot = self.node(Node::OneHot(labels, c));
        let picked = self.node(Node::Binary(BinaryOp::Mul, logp, onehot));
        let per_row = self.node(Node::Sum(picked, vec![1], false));
        self.node(Node::Mean(per_row, vec![0], false))
    }
}
