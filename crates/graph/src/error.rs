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
    OutOfMemory {
        /// Size of the failed allocation in bytes, or 0 when the device did not say.
        bytes: u64,
    },
    /// A tensor needs a buffer larger than the device allows.
    BufferTooLarge {
        /// Bytes the buffer needs.
        bytes: u64,
        /// The device's largest allowed buffer, in bytes.
        limit: u64,
    },
    /// Reading results back from the device failed.
    Map(String),
    /// A file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A file was read but its contents are not what was expected.
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        message: String,
    },
    /// Data handed to the engine does not fit what the model expects.
    Data(String),
    /// An operation the engine does not support on these sizes (named, with what to do).
    Unsupported(String),
    /// A gather, embedding or one-hot index is past the size it indexes.
    Index {
        /// The op, e.g. `gather`.
        op: &'static str,
        /// An index out of range (one of them, when there are several).
        index: u64,
        /// The size it must be below.
        size: u64,
    },
    /// A loss or gradient became NaN or infinite during training.
    NonFinite {
        /// Training step, counted from 1, at which it was found.
        step: usize,
        /// What became non-finite, e.g. the loss or a named parameter's gradient.
        what: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(msg) => write!(f, "no GPU adapter: {msg}"),
            Error::Device(msg) => write!(f, "device error: {msg}"),
            Error::OutOfMemory { bytes } => {
                let what = if *bytes > 0 {
                    format!(" allocating {bytes} bytes")
                } else {
                    String::new()
                };
                write!(
                    f,
                    "the device ran out of memory{what}; use a smaller batch or model"
                )
            }
            Error::BufferTooLarge { bytes, limit } => write!(
                f,
                "a tensor needs {bytes} bytes but the device's buffer limit is {limit} bytes; \
                 split the work into smaller batches"
            ),
            Error::Map(msg) => write!(f, "reading results back from the device failed: {msg}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Format { path, message } => write!(f, "{}: {message}", path.display()),
            Error::Data(msg) => write!(f, "{msg}"),
            Error::Unsupported(msg) => write!(f, "not supported: {msg}"),
            Error::Index { op, index, size } => write!(
                f,
                "{op}: index {index} is out of range for size {size} (indices must be below {size})"
            ),
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
