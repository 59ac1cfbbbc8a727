//! The contract between the graph and a compute backend: allocate, copy, launch, flush.
//!
//! A backend knows buffers by id and ops by their [`Op`] value; it never sees tensors or graphs.

use std::cell::RefCell;
use std::rc::Rc;

use crate::error::Result;
use crate::op::{DType, Op};
use crate::tensor::Tensor;

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

/// A place ops run: the CPU reference loops or a wgpu device.
///
/// `exec` may record work instead of running it; `flush` makes everything recorded happen,
/// and `read` always sees the result of every earlier `exec`.
pub trait Backend {
    /// Human-readable description, e.g. the adapter's name and API.
    fn name(&self) -> String;
    /// True for GPU backends (used in messages and tests).
    fn is_gpu(&self) -> bool;
    /// A buffer of at least `bytes` bytes with undefined contents.
    fn alloc(&self, bytes: usize) -> Result<BufferId>;
    /// Returns a buffer to the backend; it may be handed out again by `alloc`.
    fn free(&self, id: BufferId);
    /// Copies host bytes into a buffer (before any later `exec` reads it).
    fn write(&self, id: BufferId, data: &[u8]) -> Result<()>;
    /// Copies `bytes` bytes of a buffer to the host, after all recorded work.
    fn read(&self, id: BufferId, bytes: usize) -> Result<Vec<u8>>;
    /// Runs or records `op` on `inputs`, writing `out`.
    fn exec(&self, op: &Op, inputs: &[Arg<'_>], out: &Arg<'_>) -> Result<()>;
    /// Submits recorded work.
    fn flush(&self) -> Result<()>;

    /// How many distinct inputs a kernel from [`Backend::exec_fused`] may read; 0 when the
    /// backend does not fuse. The scheduler only builds fused groups within this bound.
    fn fusion_inputs(&self) -> usize {
        0
    }

    /// Runs a fused group of elementwise ops on `inputs` (each read as its [`FusedRead`]
    /// says), writing the values `fused.outputs` names to `outs`, all of one shape.
    fn exec_fused(&self, fused: &Fused, inputs: &[Arg<'_>], outs: &[Arg<'_>]) -> Result<()> {
        let _ = (fused, inputs, outs);
        Err(crate::Error::Device(
            "this backend does not fuse ops".into(),
        ))
    }

    /// How many buffers, inputs and outputs together, the elementwise group after a matmul or
    /// a convolution may use in [`Backend::exec_with_epilogue`]; 0 when the backend does not
    /// fuse products with what follows them.
    fn epilogue_buffers(&self) -> usize {
        0
    }

    /// Runs `op` (an [`Op::MatMul`] or an [`Op::Conv2d`], the *product*) on `operands` with a
    /// fused group as its epilogue: each product element is read by `fused` as
    /// [`FusedValue::Product`], never stored on its own, and the values `fused.outputs` names
    /// are written to `outs`, all of the product's shape. A bias and an activation after a
    /// dense or convolution layer cost no pass over memory of their own.
    fn exec_with_epilogue(
        &self,
        op: &Op,
        operands: &[Arg<'_>],
        fused: &Fused,
        inputs: &[Arg<'_>],
        outs: &[Arg<'_>],
    ) -> Result<()> {
        let _ = (op, operands, fused, inputs, outs);
        Err(crate::Error::Device(
            "this backend does not run epilogues".into(),
        ))
    }
}

/// Most scalar constants one fused kernel reads from its parameters.
pub const MAX_FUSED_CONSTANTS: usize = 16;

/// A group of elementwise ops computed in one kernel: values in topological order, some of
/// them stored. Fusion is an optimisation only: the values are those the ops give one at a
/// time.
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    /// The values, each from an input, a constant or an op on earlier values.
    pub values: Vec<FusedValue>,
    /// Scalar constants (at most [`MAX_FUSED_CONSTANTS`]), passed with the launch rather than
    /// compiled in, so that a kernel serves every value.
    pub constants: Vec<f32>,
    /// The values stored, one per output buffer, in order; the last value is always stored.
    pub outputs: Vec<usize>,
}

/// One value of a [`Fused`] chain.
#[derive(Clone, Debug, PartialEq)]
pub enum FusedValue {
    /// Kernel input `index`, read as `read` says.
    Input {
        /// Position in the `inputs` of [`Backend::exec_fused`].
        index: usize,
        /// Which of the input's elements output element `i` reads.
        read: FusedRead,
    },
    /// Scalar constant `slot` of [`Fused::constants`].
    Const {
        /// Position in [`Fused::constants`].
        slot: usize,
    },
    /// The element of the product a [`Backend::exec_with_epilogue`] kernel has just computed
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

/// A cheap, clonable handle to a backend. Tensors on one device can only be combined with
/// tensors on the same device.
#[derive(Clone)]
pub struct Device {
    pub(crate) backend: Rc<dyn Backend>,
    /// Tensors to compute with the next batch on this device (e.g. running statistics).
    deferred: Rc<RefCell<Vec<Tensor>>>,
    /// Fusion plans of recent batches, by their structure (see `fusion::Plans`).
    pub(crate) plans: Rc<RefCell<crate::fusion::Plans>>,
}

impl Device {
    /// A new handle owning `backend`.
    pub fn new(backend: impl Backend + 'static) -> Self {
        Device {
            backend: Rc::new(backend),
            deferred: Rc::default(),
            plans: Rc::default(),
        }
    }

    /// The backend's human-readable description.
    pub fn name(&self) -> String {
        self.backend.name()
    }

    /// Whether the backend runs on a GPU.
    pub fn is_gpu(&self) -> bool {
        self.backend.is_gpu()
    }

    /// The backend behind this handle.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Whether two handles name the same backend instance.
    pub fn same(&self, other: &Device) -> bool {
        std::ptr::addr_eq(Rc::as_ptr(&self.backend), Rc::as_ptr(&other.backend))
    }

    /// Computes `t` together with the next batch realised on this device, so state updates
    /// such as batch-norm running statistics ride along with the training step's submission.
    pub fn realize_later(&self, t: &Tensor) {
        self.deferred.borrow_mut().push(t.clone());
    }

    pub(crate) fn take_deferred(&self) -> Vec<Tensor> {
        std::mem::take(&mut *self.deferred.borrow_mut())
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.name())
    }
}

/// A backend buffer owned by the graph; dropping it hands the buffer back to the backend.
pub struct Buffer {
    pub(crate) id: BufferId,
    pub(crate) device: Device,
}

impl Buffer {
    pub(crate) fn alloc(device: &Device, bytes: usize) -> Result<Rc<Buffer>> {
        let id = device.backend.alloc(bytes)?;
        Ok(Rc::new(Buffer {
            id,
            device: device.clone(),
        }))
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.device.backend.free(self.id);
    }
}
