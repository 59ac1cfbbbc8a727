//! wgrad's neural-network toolkit on top of the graph: layers, losses, optimizers,
//! initialisers, metrics and data loading.

pub mod rng;

pub use rng::Rng;
