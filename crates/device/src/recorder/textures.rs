//! Textures that kernels read in place of storage buffers, kept per recorder.

use std::collections::HashMap;
use std::sync::Arc;

use wgrad_graph::BufferId;

use super::{Command, Recorder, KEPT_FOR};

/// Where kernels that read a texture find it: past the buffers and an epilogue's.
pub(crate) const TEXTURE_BINDING: u32 = 20;

/// Textures by width, height and values a texel, each with the number of the submission
/// that last used it.
pub(super) type Textures = HashMap<(u32, u32, u32), (Arc<Texture>, u64)>;

/// A float texture (`rgba32float`, or `r32float` for one value a texel) that kernels read
/// with `textureLoad` (on CPU-type adapters, a texel fetch is a vector gather where a
/// storage-buffer load is a loop over the lanes), kept per recorder, size and format and
/// refilled by each user.
pub(crate) struct Texture {
    pub(super) texture: wgpu::Texture,
    pub(super) view: wgpu::TextureView,
    pub(super) width: u32,
    pub(super) height: u32,
    /// Values a texel: 4 or 1.
    values: u32,
}

impl Texture {
    /// Bytes between rows in the buffer a copy fills it from.
    pub(crate) fn bytes_per_row(&self) -> u32 {
        self.width * self.values * 4
    }
}

impl Recorder {
    /// A texture of `width` × `height` texels of `values` floats (4 or 1), or None past the
    /// adapter's limit. One per size, format and recorder: each user fills it before its
    /// dispatches read it, and work runs in the order recorded. Kept while submissions use
    /// it (see [`KEPT_FOR`]).
    pub(crate) fn texture(&self, width: u32, height: u32, values: u32) -> Option<Arc<Texture>> {
        let max = self.ctx.limits.max_texture_dimension_2d;
        if width == 0 || height == 0 || width > max || height > max {
            return None;
        }
        let format = match values {
            4 => wgpu::TextureFormat::Rgba32Float,
            1 => wgpu::TextureFormat::R32Float,
            _ => unreachable!("textures of 4 or 1 floats a texel"),
        };
        let now = self.stats.get().submissions;
        let mut textures = self.textures.borrow_mut();
        let (texture, used) = textures.entry((width, height, values)).or_insert_with(|| {
            let texture = self.ctx.device.create_texture(&wgpu::TextureDescriptor {
                label: Some("wgrad texture"),
                size: wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let view = texture.create_view(&Default::default());
            let texture = Arc::new(Texture {
                texture,
                view,
                width,
                height,
                values,
            });
            (texture, now)
        });
        *used = now;
        Some(texture.clone())
    }

    /// Hands back the textures no submission has used for [`KEPT_FOR`] submissions;
    /// whether there were any (the caller drops the cached bind groups that bind them).
    pub(super) fn release_stale_textures(&self) -> bool {
        let now = self.stats.get().submissions;
        let mut textures = self.textures.borrow_mut();
        let before = textures.len();
        textures.retain(|_, (_, used)| now - *used < KEPT_FOR);
        textures.len() < before
    }

    /// Whether `texture` is still kept.
    pub(super) fn texture_kept(&self, texture: &Arc<Texture>) -> bool {
        let textures = self.textures.borrow();
        textures.values().any(|(t, _)| Arc::ptr_eq(t, texture))
    }

    /// Records filling `dst` from `src`, whose rows lie `dst.bytes_per_row()` apart (a
    /// multiple of 256 bytes).
    pub(crate) fn copy_to_texture(&self, src: BufferId, dst: &Arc<Texture>) {
        debug_assert!(dst
            .bytes_per_row()
            .is_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT));
        self.commands.borrow_mut().push(Command::CopyToTexture {
            src,
            dst: dst.clone(),
        });
    }
}
