//! wgrad's graph: lazy tensors, the closed set of primitive ops, reverse-mode autodiff and the
//! scheduler that runs a batch of ops on any [`Backend`]. This crate never names wgpu.

#![warn(missing_docs)]

mod autodiff;
mod backend;
mod composite;
mod error;
mod fusion;
mod geometry;
mod infer;
pub mod op;
mod ops;
mod schedule;
pub mod shape;
mod tensor;

pub use autodiff::Grads;
pub use backend::{
    Arg, Backend, BufferId, Device, Fused, FusedRead, FusedValue, MAX_FUSED_CONSTANTS,
};
pub use composite::{bce_with_logits, cross_entropy, mse_loss};
pub use error::{Error, Result};
pub use op::{BinaryOp, Conv2dSpec, DType, Family, Op, Pool2dSpec, ReduceOp, UnaryOp};
pub use tensor::{grad_enabled, no_grad, realize_all, Tensor};
