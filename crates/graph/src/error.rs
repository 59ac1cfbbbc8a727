//! Errors that depend on the world: devices, memory, files and data.
//!
//! Shape misuse while building a graph is a programmer error and panics at the caller instead.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong outside the program's control.
#[derive(Debug)]
pub enum Error {
    /// No GPU adapter matched the request.
    NoAdapter(String),
    /// The device was lost (driver reset, GPU removed) or refused a request.
    Device(String),
    /// The device ran out of memory while allocating `bytes`.
    OutOfMemory { bytes: u64 },
    /// A tensor needs a buffer larger than the device allows.
    BufferTooLarge { bytes: u64, limit: u64 },
    /// Reading results back from the device failed.
    Map(String),
    /// A file could not be opened or read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file was read but its contents are not what was expected.
    Format { path: PathBuf, message: String },
    /// Data handed to the engine does not fit what the model expects.
    Data(String),
    /// A loss or gradient became NaN or infinite during training.
    NonFinite { step: usize, what: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(msg) => write!(f, "no GPU adapter: {msg}"),
            Error::Device(msg) => write!(f, "device error: {msg}"),
            Error::OutOfMemory { bytes } => write!(
                f,
                "the device ran out of memory allocating {bytes} bytes; use a smaller batch or model"
            ),
            Error::BufferTooLarge { bytes, limit } => write!(
                f,
                "a tensor needs {bytes} bytes but the device's buffer limit is {limit} bytes; \
                 split the work into smaller batches"
            ),
            Error::Map(msg) => write!(f, "reading results back from the device failed: {msg}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Format { path, message } => write!(f, "{}: {message}", path.display()),
            Error::Data(msg) => write!(f, "{msg}"),
            Error::NonFinite { step, what } => write!(
                f,
                "{what} is NaN or infinite at step {step}; training stopped before applying it \
                 (lower the learning rate, or check the data)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result with wgrad's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
