//! The keys and entries of a recorder's cache of bind groups.

use std::sync::Arc;

use wgrad_graph::BufferId;

use super::Texture;

/// What a dispatch's bind group binds: the pipeline (by address; the cache holds the pipeline
/// beside the bind group, so no other pipeline can take that address), the parameters' offset
/// and size in the parameter buffer, the buffers from binding 1 on, and the constants' range.
#[derive(PartialEq, Eq, Hash)]
pub(super) struct BindKey {
    pub(super) pipeline: usize,
    pub(super) params_at: u64,
    pub(super) params_len: u64,
    pub(super) buffers: Vec<BufferId>,
    pub(super) constants: Option<(u64, u64)>,
    /// The texture bound, by address (the cache holds it beside the bind group, as it does
    /// the pipeline).
    pub(super) texture: usize,
}

/// A cached bind group and what its key names by address, held so that no other pipeline
/// or texture takes that address while the key is kept.
pub(super) type Bound = (
    Arc<wgpu::ComputePipeline>,
    Option<Arc<Texture>>,
    wgpu::BindGroup,
);

/// Most bind groups kept; past it the cache starts again (a workload that keeps changing
/// shapes would otherwise grow it without end).
pub(super) const MAX_BIND_GROUPS: usize = 4096;
