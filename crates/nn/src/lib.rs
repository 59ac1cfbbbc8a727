//! wgrad's neural-network toolkit on top of the graph: layers, losses, optimizers,
//! initialisers, metrics and data loading.

pub mod conv;
pub mod data;
pub mod init;
pub mod io;
pub mod layers;
pub mod metrics;
pub mod module;
pub mod norm;
pub mod optim;
pub mod rng;
pub mod trainer;

pub use conv::{AvgPool2d, Conv2d, ConvConfig, ConvTranspose2d, GlobalAvgPool2d, MaxPool2d};
pub use data::{Batch, DataLoader, Dataset, Mnist};
pub use init::Init;
pub use layers::{Activation, Dense, DenseConfig, Dropout, Flatten};
pub use metrics::{ClassReport, ConfusionMatrix};
pub use module::check_input;
pub use module::{Module, Sequential};
pub use norm::{BatchNorm, BatchNorm1d, BatchNorm2d, LayerNorm, NormConfig};
pub use optim::{Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig};
pub use rng::Rng;
pub use trainer::{
    Callback, Control, EarlyStopping, EpochStats, Evaluation, FitOptions, History, LrSchedule,
    Trainer,
};

/// Losses: composites of graph primitives.
pub mod loss {
    pub use wgrad_graph::{bce_with_logits, cross_entropy, mse_loss};
}
