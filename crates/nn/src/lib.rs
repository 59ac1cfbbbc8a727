//! wgrad's neural-network toolkit on top of the graph: layers, losses, optimizers,
//! initialisers, metrics, data loading, weights on disk and a trainer.
//!
//! ```
//! use wgrad_nn::{Activation, Adam, Dense, Module, Optimizer, Rng, Sequential};
//! use wgrad_graph::{cross_entropy, Tensor};
//!
//! let dev = wgrad_cpu::CpuBackend::device();
//! let mut rng = Rng::new(0);
//! let model = Sequential::new()
//!     .add(Dense::new(&dev, 4, 8, &mut rng)?)
//!     .add(Activation::Relu)
//!     .add(Dense::new(&dev, 8, 3, &mut rng)?);
//! let mut opt = Adam::new(model.parameters(), 1e-2);
//! let x = Tensor::from_slice(&dev, &[0.5; 8], &[2, 4])?;
//! let y = Tensor::from_u32(&dev, &[0, 2], &[2])?;
//! let first = cross_entropy(&model.forward(&x), &y);
//! opt.step_with(&first.backward(), &[&first])?; // forward, backward and update in one batch
//! let second = cross_entropy(&model.forward(&x), &y);
//! assert!(second.item()? < first.item()?);
//! # Ok::<(), wgrad_graph::Error>(())
//! ```
#![warn(missing_docs)]

pub mod attention;
pub mod callbacks;
pub mod cifar;
pub mod conv;
pub mod data;
pub mod gan;
pub mod history;
pub mod init;
pub mod io;
pub mod layers;
pub mod metrics;
pub mod models;
pub mod module;
pub mod norm;
pub mod optim;
pub mod parallel;
pub mod recurrent;
pub mod resample;
pub mod rng;
pub mod step;
pub mod text;
pub mod trainer;

pub use attention::{
    scaled_dot_product_attention, sinusoidal_positions, AttentionMask, EncoderConfig,
    LearnedPositions, MultiheadAttention, TransformerEncoderLayer,
};
pub use callbacks::{Callback, Control, EarlyStopping, LrSchedule};
pub use cifar::{Cifar10, CIFAR10_CLASSES};
pub use conv::{AvgPool2d, Conv2d, ConvConfig, ConvTranspose2d, GlobalAvgPool2d, MaxPool2d};
pub use data::{Batch, DataLoader, Dataset, Mnist, Reconstruct, Samples, Targets};
pub use gan::Gan;
pub use history::{EpochStats, History};
pub use init::Init;
pub use layers::{Activation, Dense, DenseConfig, Dropout, Flatten, Unflatten};
pub use metrics::{BinaryCounts, ClassReport, ConfusionMatrix};
pub use module::check_input;
pub use module::{Module, Sequential};
pub use norm::{BatchNorm, BatchNorm1d, BatchNorm2d, LayerNorm, NormConfig};
pub use optim::{
    clip_grad_norm, clip_grad_value, Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig, Sgd,
    SgdConfig,
};
pub use parallel::DataParallel;
pub use recurrent::{Embedding, Gru, Lstm, Rnn, RnnConfig};
pub use resample::{Upsample, UpsampleMode};
pub use rng::Rng;
pub use step::{Metrics, TrainStep};
pub use text::{Labelled, Padding, Sentiment, Sequences, Vocab};
pub use trainer::{Evaluation, FitOptions, Trainer};

/// Losses: composites of graph primitives.
pub mod loss {
    pub use wgrad_graph::{bce_with_logits, cross_entropy, mse_loss};
}
