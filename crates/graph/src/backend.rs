//! The contract between the graph and a compute backend: allocate, upload, read back, launch,
//! flush, and the capabilities the planner needs.
//!
//! A backend knows buffers by id and work by [`Launch`] descriptions; it never sees tensors
//! or graphs, and the graph never sees its kernels.

use std::future::Future;
use std::pin::Pin;

use crate::error::Result;
use crate::op::{DType, Op};

/// A boxed future a backend returns from its asynchronous calls.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + 'a>>;

/// A backend's handle to one of its buffers.
pub type BufferId = usize;

/// One operand of a launch: where it lives and how it is shaped.
#[derive(Clone, Copy, Debug)]
pub struct Arg<'a> {
    /// The backend buffer holding the operand's elements.
    pub buffer: BufferId,
    /// The operand's shape; its elements are contiguous in row-major order.
    pub shape: &'a [usize],
    /// The operand's element type.
    pub dtype: DType,
}

/// What a backend can do, as far as the graph's planner needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Human-readable description, e.g. the adapter's name and API.
    pub name: String,
    /// True for GPU backends (used in messages and tests).
    pub gpu: bool,
    /// How many distinct inputs a [`Launch::Fused`] kernel may read; 0 when the backend does
    /// not fuse. The scheduler only builds fused groups within this bound.
    pub fused_inputs: usize,
    /// Most elementwise ops in one fused group.
    pub fused_ops: usize,
    /// Most scalar constants one fused group reads (see [`Fused::constants`]).
    pub fused_constants: usize,
    /// How many buffers, inputs and outputs together, the group after a product may use in a
    /// [`Launch::Epilogue`]; 0 when the backend does not fuse products with what follows them.
    pub epilogue_buffers: usize,
}

impl Capabilities {
    /// A backend that runs one op at a time and fuses nothing.
    pub fn unfused(name: impl Into<String>, gpu: bool) -> Self {
        Capabilities {
            name: name.into(),
            gpu,
            fused_inputs: 0,
            fused_ops: 0,
            fused_constants: 0,
            epilogue_buffers: 0,
        }
    }
}

/// One unit of work handed to [`Backend::exec`].
#[derive(Clone, Copy, Debug)]
pub enum Launch<'a> {
    /// `op` on `inputs`, writing `out`.
    Op {
        /// The primitive.
        op: &'a Op,
        /// Its inputs, in the op's order.
        inputs: &'a [Arg<'a>],
        /// Where its value goes.
        out: &'a Arg<'a>,
    },
    /// A fused group of elementwise ops on `inputs` (each read as its [`FusedRead`] says),
    /// writing the values `fused.outputs` names to `outs`, all of one shape.
    Fused {
        /// The group.
        fused: &'a Fused,
        /// The buffers its [`FusedValue::Input`]s read.
        inputs: &'a [Arg<'a>],
        /// One per stored value.
        outs: &'a [Arg<'a>],
    },
    /// `op` (an [`Op::MatMul`] or an [`Op::Conv2d`], the *product*) on `operands`, with a fused
    /// group as its epilogue: each product element is read by `fused` as
    /// [`FusedValue::Product`], never stored on its own, and the values `fused.outputs` names
    /// are written to `outs`, all of the product's shape. A bias and an activation after a
    /// dense or convolution layer cost no pass over memory of their own.
    Epilogue {
        /// The product.
        op: &'a Op,
        /// Its two operands.
        operands: &'a [Arg<'a>],
        /// The group applied to each product element.
        fused: &'a Fused,
        /// The buffers the group's [`FusedValue::Input`]s read.
        inputs: &'a [Arg<'a>],
        /// One per stored value.
        outs: &'a [Arg<'a>],
    },
}

/// A place ops run: the CPU reference loops or a wgpu device.
///
/// `exec` may record work instead of running it; `flush` makes everything recorded happen,
/// and `read` always sees the result of every earlier `exec`. Fused launches come only
/// within the bounds [`Backend::capabilities`] gives.
pub trait Backend {
    /// What the backend is and what its planner may ask of it.
    fn capabilities(&self) -> &Capabilities;
    /// A buffer of at least `bytes` bytes with undefined contents.
    fn alloc(&self, bytes: usize) -> Result<BufferId>;
    /// Returns a buffer to the backend; it may be handed out again by `alloc`.
    fn free(&self, id: BufferId);
    /// Copies host bytes into a buffer (before any later `exec` reads it).
    fn write(&self, id: BufferId, data: &[u8]) -> Result<()>;
    /// Copies `bytes` bytes of a buffer to the host, after all recorded work.
    fn read(&self, id: BufferId, bytes: usize) -> Result<Vec<u8>>;
    /// Runs or records one launch.
    fn exec(&self, launch: &Launch<'_>) -> Result<()>;
    /// Submits recorded work.
    fn flush(&self) -> Result<()>;
    /// Like [`Backend::read`], without blocking the thread: in a browser a GPU buffer can be
    /// read only after control returns to the event loop, so reads there must be awaited.
    /// The default reads at once.
    fn read_async(&self, id: BufferId, bytes: usize) -> BackendFuture<'_, Vec<u8>> {
        Box::pin(std::future::ready(self.read(id, bytes)))
    }
    /// Completes when everything submitted so far has run. The default completes at once
    /// (after a flush), as for a backend that runs work when it is given.
    fn finish_async(&self) -> BackendFuture<'_, ()> {
        Box::pin(std::future::ready(self.flush()))
    }
    /// Work done since the backend was made. A backend that does not count returns zeros.
    fn stats(&self) -> Stats {
        Stats::default()
    }
    /// The memory the backend's buffers take. A backend that does not count returns zeros.
    fn memory(&self) -> MemoryStats {
        MemoryStats::default()
    }
    /// Hands back to the system the buffers kept for reuse (those no tensor holds), after
    /// submitting recorded work. The default has none.
    fn empty_cache(&self) -> Result<()> {
        Ok(())
    }
}

/// Bytes in a backend's buffers, as PyTorch's `memory_allocated`, `memory_reserved` and
/// `max_memory_allocated` report them (see [`crate::Device::memory`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes in buffers in use: tensors' values, and scratch of work not yet run.
    pub allocated: u64,
    /// Bytes the backend holds: those in use and those kept free for reuse, which
    /// [`crate::Device::empty_cache`] hands back (the GPU backend also hands back those
    /// that several submissions in a row have not taken).
    pub reserved: u64,
    /// The most bytes in use at once since the backend was made.
    pub peak_allocated: u64,
}

/// Work a backend has done since it was made; the difference of two readings is the work
/// between them (see [`crate::Device::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Queue submissions (flushes that had work to submit).
    pub submissions: u64,
    /// Kernel dispatches, or on the CPU, kernels run.
    pub dispatches: u64,
    /// Buffer copies and clears recorded beside the dispatches.
    pub copies: u64,
}

impl std::ops::Sub for Stats {
    type Output = Stats;
    fn sub(self, earlier: Stats) -> Stats {
        Stats {
            submissions: self.submissions - earlier.submissions,
            dispatches: self.dispatches - earlier.dispatches,
            copies: self.copies - earlier.copies,
        }
    }
}

/// A group of elementwise ops computed in one kernel: values in topological order, some of
/// them stored. Fusion is an optimisation only: the values are those the ops give one at a
/// time.
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    /// The values, each from an input, a constant or an op on earlier values.
    pub values: Vec<FusedValue>,
    /// Scalar constants (at most [`Capabilities::fused_constants`]), passed with the launch
    /// rather than compiled in, so that a kernel serves every value.
    pub constants: Vec<f32>,
    /// The values stored, one per output buffer, in order; the last value is always stored.
    pub outputs: Vec<usize>,
}

/// One value of a [`Fused`] chain.
#[derive(Clone, Debug, PartialEq)]
pub enum FusedValue {
    /// Kernel input `index`, read as `read` says.
    Input {
        /// Position in the launch's `inputs`.
        index: usize,
        /// Which of the input's elements output element `i` reads.
        read: FusedRead,
    },
    /// Scalar constant `slot` of [`Fused::constants`].
    Const {
        /// Position in [`Fused::constants`].
        slot: usize,
    },
    /// The element of the product a [`Launch::Epilogue`] kernel has just computed
    /// (in no other kind of kernel).
    Product,
    /// An elementwise op (`Unary`, `Binary` or `Where`) applied to earlier values.
    Op {
        /// The op.
        op: Op,
        /// Indices of its operands among the earlier values.
        args: Vec<usize>,
    },
}

/// How output element `i` of a fused chain indexes one of its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusedRead {
    /// The input has the output's shape: element `i`.
    Same,
    /// The input holds one value: element 0.
    Scalar,
    /// The input varies along one axis of the output only (a per-channel bias of an NCHW
    /// tensor, a per-feature bias of a batch): element `(i / inner) % len`.
    Axis {
        /// Elements of the output after that axis.
        inner: usize,
        /// Length of that axis.
        len: usize,
    },
}

impl FusedRead {
    /// How an input of shape `input` is read by an elementwise op producing `out`, or None
    /// when it broadcasts in a way a fused kernel does not index.
    pub fn of(input: &[usize], out: &[usize]) -> Option<FusedRead> {
        if input == out {
            return Some(FusedRead::Same);
        }
        let n: usize = input.iter().product();
        if n == 1 {
            return Some(FusedRead::Scalar);
        }
        if input.len() > out.len() {
            return None;
        }
        // The one axis (aligned from the right) where the input is not 1 must match the output.
        let lead = out.len() - input.len();
        let mut axes = input.iter().enumerate().filter(|(_, &d)| d != 1);
        let (d, &len) = axes.next()?;
        if axes.next().is_some() || out[lead + d] != len {
            return None;
        }
        let inner = out[lead + d + 1..].iter().product();
        Some(FusedRead::Axis { inner, len })
    }
}
