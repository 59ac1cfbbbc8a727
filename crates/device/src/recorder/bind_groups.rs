//! The keys and entries of a recorder's cache of bind groups, and handing back what no
//! submission has used for a while, with the bind groups that bind it.

use std::collections::HashMap;
use std::sync::Arc;

use wgrad_graph::BufferId;

use super::{Recorder, Texture, KEPT_FOR};

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

impl Recorder {
    /// Hands back the free buffers and the textures that no submission has used for
    /// [`KEPT_FOR`] submissions, and the cached bind groups that bind them. Called as a
    /// submission starts, once its commands are taken: what they use was used by this
    /// submission.
    pub(super) fn release_stale(&self, bind_groups: &mut HashMap<BindKey, Bound>) {
        let now = self.stats.get().submissions;
        let textures = self.release_stale_textures();
        let (buffers, bytes) = self
            .buffers
            .release_unused((now + 1).saturating_sub(KEPT_FOR));
        if textures || !buffers.is_empty() {
            bind_groups.retain(|key, (_, texture, _)| {
                texture.as_ref().is_none_or(|t| self.texture_kept(t))
                    && !key.buffers.iter().any(|b| buffers.contains(b))
            });
        }
        if !buffers.is_empty() {
            log::debug!(
                target: "wgrad::device",
                "handed back {} pooled buffers ({bytes} bytes) that {KEPT_FOR} submissions did not use",
                buffers.len()
            );
        }
    }
}
