//! `Upsample`: images `[n, c, h, w]` enlarged by a whole factor, nearest or bilinear, as
//! PyTorch's `nn.Upsample` (bilinear with `align_corners=False`). Each output pixel reads its
//! source pixels through a gather of the image's pixels, so the gradient is a deterministic
//! scatter-add.

use wgrad_graph::Tensor;

use crate::module::Module;

/// How new pixels take their values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsampleMode {
    /// The pixel the output pixel falls in.
    Nearest,
    /// The four nearest pixels, weighted by distance (half-pixel centres, edges clamped).
    Bilinear,
}

/// Enlarges `[n, c, h, w]` images `scale` times along height and width.
pub struct Upsample {
    scale: usize,
    mode: UpsampleMode,
}

impl Upsample {
    /// An upsampling by a whole `scale` (at least 1).
    #[track_caller]
    pub fn new(scale: usize, mode: UpsampleMode) -> Upsample {
        assert!(scale >= 1, "Upsample: the scale must be at least 1");
        Upsample { scale, mode }
    }
}

/// Per output position along one axis: the source positions and their weights.
fn taps(size: usize, scale: usize, mode: UpsampleMode) -> Vec<[(usize, f32); 2]> {
    (0..size * scale)
        .map(|o| match mode {
            UpsampleMode::Nearest => [(o / scale, 1.0), (o / scale, 0.0)],
            UpsampleMode::Bilinear => {
                let src = ((o as f64 + 0.5) / scale as f64 - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(size - 1);
                let i1 = (i0 + 1).min(size - 1);
                let w1 = (src - i0 as f64) as f32;
                [(i0, 1.0 - w1), (i1, w1)]
            }
        })
        .collect()
}

impl Module for Upsample {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let s = x.shape();
        assert!(
            s.len() == 4,
            "Upsample: input must be [n, c, h, w], got {s:?}"
        );
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        let (oh, ow) = (h * self.scale, w * self.scale);
        // Pixels as rows: [h·w, n·c].
        let table = x.reshape(&[n * c, h * w]).t();
        let (ty, tx) = (
            taps(h, self.scale, self.mode),
            taps(w, self.scale, self.mode),
        );
        let corners: &[(usize, usize)] = match self.mode {
            UpsampleMode::Nearest => &[(0, 0)],
            UpsampleMode::Bilinear => &[(0, 0), (0, 1), (1, 0), (1, 1)],
        };
        let dev = x.device();
        let mut out: Option<Tensor> = None;
        for &(a, b) in corners {
            let mut idx = Vec::with_capacity(oh * ow);
            let mut weight = Vec::with_capacity(oh * ow);
            for y in &ty {
                for xx in &tx {
                    idx.push((y[a].0 * w + xx[b].0) as u32);
                    weight.push(y[a].1 * xx[b].1);
                }
            }
            let idx = Tensor::from_u32(dev, &idx, &[oh * ow]).expect("fits");
            let mut term = table.gather(&idx);
            if self.mode == UpsampleMode::Bilinear {
                let weight = Tensor::from_slice(dev, &weight, &[oh * ow, 1]).expect("fits");
                term = term * weight;
            }
            out = Some(match out {
                Some(sum) => sum + term,
                None => term,
            });
        }
        out.expect("one corner at least")
            .t()
            .reshape(&[n, c, oh, ow])
    }

    fn describe(&self) -> String {
        format!("Upsample({}, {:?})", self.scale, self.mode)
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        match input {
            [n, c, h, w] => Ok(vec![*n, *c, h * self.scale, w * self.scale]),
            _ => Err(format!("Upsample takes [n, c, h, w], got {input:?}")),
        }
    }
}
