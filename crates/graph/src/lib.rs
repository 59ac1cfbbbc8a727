//! wgrad's graph: lazy tensors, the closed set of primitive ops, reverse-mode autodiff and the
//! scheduler that runs a batch of ops on any [`Backend`]. This crate never names wgpu.

#![warn(missing_docs)]

mod autodiff;
mod backend;
mod composite;
mod device;
mod error;
mod fusion;
mod geometry;
mod infer;
pub mod op;
mod ops;
mod plan;
mod schedule;
pub mod shape;
mod tensor;

pub use autodiff::Grads;
pub use backend::{
    Arg, Backend, BackendFuture, BufferId, Capabilities, Fused, FusedRead, FusedValue, Launch,
    MemoryStats, Stats,
};
pub use composite::{bce_with_logits, cross_entropy, mse_loss};
pub use device::Device;
pub use error::{Error, Result};
pub use op::{
    Arity, BinaryOp, Conv2dSpec, DType, Indices, Op, Pool2dSpec, ReduceOp, Signature, UnaryOp,
};
pub use schedule::realize_all;
pub use tensor::{grad_enabled, no_grad, Tensor};
