//! `Tensor`: a cheap handle to a node of a lazy graph. Building ops records nodes; values are
//! computed only when asked for (`to_vec`, `realize`, an optimizer step).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::device::{Buffer, Device};
use crate::error::{Error, Result};
use crate::op::{DType, Op};
use crate::shape::{checked_numel, numel};

pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    /// `None` for leaves (data uploaded by the user, parameters).
    pub(crate) op: Option<Op>,
    /// Kept after realisation only while the node may still need a backward pass.
    pub(crate) inputs: RefCell<Vec<Tensor>>,
    pub(crate) buffer: RefCell<Option<Rc<Buffer>>>,
    pub(crate) requires_grad: Cell<bool>,
    /// The value of a one-element tensor made by [`Tensor::full`]: fused kernels read it from
    /// their parameters instead of binding its buffer.
    pub(crate) constant: Cell<Option<f32>>,
    /// The largest value of `u32` data uploaded from the host: indices are checked against
    /// what they index before any kernel runs (see `Op::index_bound`).
    pub(crate) max_index: Cell<Option<u32>>,
}

/// A lazily evaluated n-dimensional array on a [`Device`].
#[derive(Clone)]
pub struct Tensor(pub(crate) Rc<Node>);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` without recording what it builds for autodiff, like PyTorch's `torch.no_grad()`.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let previous = GRAD_ENABLED.with(|g| g.replace(false));
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(previous);
    f()
}

/// Whether new nodes currently record their inputs for autodiff.
pub fn grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

impl Tensor {
    fn new_node(
        device: Device,
        shape: Vec<usize>,
        dtype: DType,
        op: Option<Op>,
        inputs: Vec<Tensor>,
        buffer: Option<Rc<Buffer>>,
        requires_grad: bool,
    ) -> Tensor {
        Tensor(Rc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            dtype,
            device,
            op,
            inputs: RefCell::new(inputs),
            buffer: RefCell::new(buffer),
            requires_grad: Cell::new(requires_grad),
            constant: Cell::new(None),
            max_index: Cell::new(None),
        }))
    }

    /// Records `op` applied to `inputs`. Panics at the caller with the op's name and the shapes
    /// when they do not fit.
    #[track_caller]
    pub fn from_op(op: Op, inputs: &[&Tensor]) -> Tensor {
        let device = match inputs.first() {
            Some(t) => t.device().clone(),
            None => panic!(
                "{}: needs a device; use Tensor::full or Tensor::rand",
                op.name()
            ),
        };
        Self::from_op_on(&device, op, inputs)
    }

    #[track_caller]
    pub(crate) fn from_op_on(device: &Device, op: Op, inputs: &[&Tensor]) -> Tensor {
        for t in inputs {
            if !t.device().same(device) {
                panic!(
                    "{}: inputs live on different devices ({} and {})",
                    op.name(),
                    device.name(),
                    t.device().name()
                );
            }
        }
        let metas: Vec<_> = inputs
            .iter()
            .map(|t| (t.shape().to_vec(), t.dtype()))
            .collect();
        // Shape misuse is the programmer's: a panic at the caller, naming the op and shapes.
        let (shape, dtype) = match op.infer(&metas) {
            Ok(m) => m,
            Err(msg) => panic!("{msg}"),
        };
        let requires_grad =
            grad_enabled() && op.differentiable() && inputs.iter().any(|t| t.requires_grad());
        // Ops that rearrange host indices without dropping any keep their largest value.
        let max_index = match op {
            Op::Reshape { .. } | Op::Permute { .. } | Op::Expand { .. } | Op::Concat { .. } => {
                inputs
                    .iter()
                    .map(|t| t.0.max_index.get())
                    .try_fold(0, |m, v| Some(m.max(v?)))
            }
            _ => None,
        };
        let inputs = inputs.iter().map(|t| (*t).clone()).collect();
        let t = Self::new_node(
            device.clone(),
            shape,
            dtype,
            Some(op),
            inputs,
            None,
            requires_grad,
        );
        t.0.max_index.set(max_index);
        t
    }

    fn upload(device: &Device, bytes: &[u8], shape: &[usize], dtype: DType) -> Result<Tensor> {
        let len = bytes.len() / 4;
        match checked_numel(shape) {
            Some(n) if n == len => {}
            Some(n) => {
                return Err(Error::Data(format!(
                    "data has {len} values but shape {shape:?} holds {n}"
                )))
            }
            None => {
                return Err(Error::Data(format!(
                    "shape {shape:?} has more elements than fit in memory"
                )))
            }
        }
        let buffer = Buffer::alloc(device, bytes.len())?;
        device.backend.write(buffer.id, bytes)?;
        Ok(Self::new_node(
            device.clone(),
            shape.to_vec(),
            dtype,
            None,
            vec![],
            Some(buffer),
            false,
        ))
    }

    /// Uploads `f32` data of the given shape; an [`Error::Data`] when the lengths disagree.
    pub fn from_slice(device: &Device, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Self::upload(device, bytemuck::cast_slice(data), shape, DType::F32)
    }

    /// Uploads `u32` data (labels, indices) of the given shape; an [`Error::Data`] when the
    /// lengths disagree. Its largest value is kept, so that an index past what a gather or
    /// one-hot indexes is an [`Error::Index`] before any kernel runs.
    pub fn from_u32(device: &Device, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        let t = Self::upload(device, bytemuck::cast_slice(data), shape, DType::U32)?;
        t.0.max_index.set(data.iter().copied().max());
        Ok(t)
    }

    /// A trainable leaf: uploaded data that autodiff computes gradients for.
    pub fn param(device: &Device, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        let t = Self::from_slice(device, data, shape)?;
        t.0.requires_grad.set(true);
        Ok(t)
    }

    /// Marks a leaf as trainable (or not). Panics on non-leaves, whose flag follows their inputs.
    #[track_caller]
    pub fn set_requires_grad(&self, on: bool) -> &Self {
        assert!(
            self.is_leaf(),
            "set_requires_grad: only leaf tensors can be marked trainable"
        );
        self.0.requires_grad.set(on);
        self
    }

    /// A tensor of `shape` filled with `value` (lazy: no upload). Panics at the caller when
    /// the shape has more elements than fit in memory.
    #[track_caller]
    pub fn full(device: &Device, shape: &[usize], value: f32) -> Tensor {
        // A single value is uploaded now: a four-byte write costs far less than a fill
        // dispatch, and scalars (learning rates, β, ε, 1/n) appear many times in every step.
        if checked_numel(shape) == Some(1) {
            if let Ok(t) = Self::upload(device, &value.to_le_bytes(), shape, DType::F32) {
                t.0.constant.set(Some(value));
                return t;
            }
        }
        let op = Op::Full {
            value,
            shape: shape.to_vec(),
            dtype: DType::F32,
        };
        Self::from_op_on(device, op, &[])
    }

    /// A tensor of `shape` filled with 0.0 (lazy: no upload).
    #[track_caller]
    pub fn zeros(device: &Device, shape: &[usize]) -> Tensor {
        Self::full(device, shape, 0.0)
    }

    /// A tensor of `shape` filled with 1.0 (lazy: no upload).
    #[track_caller]
    pub fn ones(device: &Device, shape: &[usize]) -> Tensor {
        Self::full(device, shape, 1.0)
    }

    /// A 0-dimensional tensor holding `value`.
    pub fn scalar(device: &Device, value: f32) -> Tensor {
        Self::full(device, &[], value)
    }

    /// Uniform samples in `[0, 1)`; the same seed gives the same bits on every backend.
    #[track_caller]
    pub fn rand(device: &Device, shape: &[usize], seed: u64) -> Tensor {
        let op = Op::RandUniform {
            seed,
            shape: shape.to_vec(),
        };
        Self::from_op_on(device, op, &[])
    }

    /// Size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }

    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// The device the tensor lives on.
    pub fn device(&self) -> &Device {
        &self.0.device
    }

    /// Unique id of the node (stable for the tensor's lifetime).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The op that computes this tensor, or `None` for a leaf.
    pub fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }

    /// Whether the tensor has no op: uploaded data, a parameter or a detached value.
    pub fn is_leaf(&self) -> bool {
        self.0.op.is_none()
    }

    /// Whether autodiff tracks this tensor: a trainable leaf, or a node built from one while
    /// gradients were enabled.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.get()
    }

    /// Whether the values have been computed (or uploaded) into a buffer.
    pub fn is_realized(&self) -> bool {
        self.0.buffer.borrow().is_some()
    }

    /// Copies the values to the host. Panics if the tensor is not `f32`.
    #[track_caller]
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        assert_eq!(
            self.dtype(),
            DType::F32,
            "to_vec: tensor is u32; use to_vec_u32"
        );
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes()?))
    }

    /// Copies `u32` values to the host. Panics if the tensor is not `u32`.
    #[track_caller]
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        assert_eq!(
            self.dtype(),
            DType::U32,
            "to_vec_u32: tensor is f32; use to_vec"
        );
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes()?))
    }

    /// The single value of a one-element `f32` tensor.
    #[track_caller]
    pub fn item(&self) -> Result<f32> {
        assert_eq!(self.numel(), 1, "item: tensor has shape {:?}", self.shape());
        Ok(self.to_vec()?[0])
    }

    /// Like [`Tensor::to_vec`], without blocking the thread: what a browser needs (see
    /// [`crate::Backend::read_async`]). Works on every backend; natively it waits for the
    /// device inside.
    #[track_caller]
    pub fn to_vec_async(&self) -> impl std::future::Future<Output = Result<Vec<f32>>> + '_ {
        assert_eq!(
            self.dtype(),
            DType::F32,
            "to_vec_async: tensor is u32; use to_vec_u32_async"
        );
        async move {
            Ok(bytemuck::pod_collect_to_vec(
                &self.read_bytes_async().await?,
            ))
        }
    }

    /// Like [`Tensor::to_vec_u32`], without blocking the thread.
    #[track_caller]
    pub fn to_vec_u32_async(&self) -> impl std::future::Future<Output = Result<Vec<u32>>> + '_ {
        assert_eq!(
            self.dtype(),
            DType::U32,
            "to_vec_u32_async: tensor is f32; use to_vec_async"
        );
        async move {
            Ok(bytemuck::pod_collect_to_vec(
                &self.read_bytes_async().await?,
            ))
        }
    }

    /// Like [`Tensor::item`], without blocking the thread.
    #[track_caller]
    pub fn item_async(&self) -> impl std::future::Future<Output = Result<f32>> + '_ {
        assert_eq!(
            self.numel(),
            1,
            "item_async: tensor has shape {:?}",
            self.shape()
        );
        async move { Ok(self.to_vec_async().await?[0]) }
    }

    /// Computes this tensor, as [`Tensor::realize`] does (which submits the work and never
    /// waits for it), then completes when the device has run it.
    pub async fn realize_async(&self) -> Result<&Self> {
        self.realize()?;
        self.device().backend.finish_async().await?;
        Ok(self)
    }

    async fn read_bytes_async(&self) -> Result<Vec<u8>> {
        self.realize()?;
        // Held across the wait, so the buffer is not reused before it is read.
        let buffer = self
            .0
            .buffer
            .borrow()
            .clone()
            .expect("realized tensor has a buffer");
        let bytes = self.numel() * 4;
        if bytes == 0 {
            return Ok(vec![]);
        }
        self.device().backend.read_async(buffer.id, bytes).await
    }

    fn read_bytes(&self) -> Result<Vec<u8>> {
        self.realize()?;
        let buffer = self
            .0
            .buffer
            .borrow()
            .clone()
            .expect("realized tensor has a buffer");
        let bytes = self.numel() * 4;
        if bytes == 0 {
            return Ok(vec![]);
        }
        self.device().backend.read(buffer.id, bytes)
    }

    /// A tensor with this one's values that autodiff does not look through: a leaf sharing the
    /// buffer when the values are computed, else an identity node computed with them.
    pub fn detach(&self) -> Tensor {
        if let Some(buffer) = self.0.buffer.borrow().clone() {
            return Self::new_node(
                self.device().clone(),
                self.shape().to_vec(),
                self.dtype(),
                None,
                vec![],
                Some(buffer),
                false,
            );
        }
        // Not computed yet: an identity node that does not record for autodiff.
        no_grad(|| {
            Tensor::from_op(
                Op::Reshape {
                    shape: self.shape().to_vec(),
                },
                &[self],
            )
        })
    }

    /// Replaces the values of a leaf with those of `value` (computed now if needed), keeping
    /// the leaf's identity: how optimizers update parameters in place.
    #[track_caller]
    pub fn assign(&self, value: &Tensor) -> Result<()> {
        assert!(
            self.is_leaf(),
            "assign: only leaf tensors can be assigned to"
        );
        assert!(
            self.shape() == value.shape() && self.dtype() == value.dtype(),
            "assign: target {:?} {} and value {:?} {} differ",
            self.shape(),
            self.dtype().name(),
            value.shape(),
            value.dtype().name()
        );
        value.realize()?;
        let buffer = value.0.buffer.borrow().clone();
        *self.0.buffer.borrow_mut() = buffer;
        self.0.constant.set(value.0.constant.get());
        Ok(())
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.op() {
            Some(op) => op.name(),
            None => "leaf",
        };
        write!(
            f,
            "Tensor({what}, {:?}, {})",
            self.shape(),
            self.dtype().name()
        )
    }
}
