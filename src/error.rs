//! Typed errors of the crate.
//!
//! Every variant names the culprit: the file, tensor, block or setting at fault. Library code
//! returns these and never panics on user input; binaries wrap them in `anyhow`.

use std::path::PathBuf;

/// Errors returned by `candle-bcd`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BcdError {
    /// A hyperparameter is outside its valid range (e.g. `gamma <= 0`, `alpha < 0`, NaN).
    #[error("invalid hyperparameter {name} = {value}: {reason}")]
    InvalidHyperparameter {
        /// Name of the setting, as in [`crate::BcdConfig`].
        name: &'static str,
        /// The rejected value.
        value: f64,
        /// What the valid range is.
        reason: &'static str,
    },
    /// A named setting (e.g. the weight initialisation) has a value it does not know.
    #[error("unknown {setting} {value:?}; expected one of {expected}")]
    UnknownValue {
        /// Name of the setting.
        setting: &'static str,
        /// The rejected value.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// The architecture description is unusable (too few layers, a zero width, ...).
    #[error("invalid architecture: {0}")]
    InvalidArchitecture(String),
    /// A tensor does not have the shape the architecture or data requires.
    #[error("shape mismatch for {name}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Name of the tensor (e.g. `layers.1.weight`, `inputs`, `targets`).
        name: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Actual shape.
        got: Vec<usize>,
    },
    /// Training inputs or targets cannot be used (NaN or infinite entries, no rows).
    #[error("invalid training {name}: {reason}")]
    InvalidData {
        /// Which data: `inputs` or `targets`.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A saved lifted state does not fit the network, formulation or data it is resumed with.
    #[error("the lifted state does not fit: {0}")]
    StateMismatch(String),
    /// A layer of a `VarMap` that BCD cannot train as described: a weight that is not 2-D
    /// read by `Network::from_varmap` (a convolution, which `Network::from_varmap_as` reads
    /// with an `Architecture::cnn`), a layer without a bias, a dtype other than `f32`.
    #[error("layer {layer} cannot be trained: {reason}")]
    UnsupportedLayer {
        /// The layer's prefix.
        layer: String,
        /// What about it BCD cannot train.
        reason: String,
    },
    /// The network description and the user's model compute different outputs on the same
    /// rows (see [`crate::Network::check_against`]).
    #[error("the network description does not match the model on its first {rows} rows: {reason}")]
    ModelMismatch {
        /// Rows compared.
        rows: usize,
        /// How they differ.
        reason: String,
    },
    /// The weights were changed outside a step of the optimizer that caches products of them
    /// (a `VarMap::load`, a head fit, a second optimizer on the same `Var`s).
    #[error("{layer}.weight or {layer}.bias changed outside the optimizer's steps; build a new optimizer from the network (its lifted state and cached products were made from the old weights)")]
    WeightsChanged {
        /// The layer's prefix.
        layer: String,
    },
    /// A tensor the optimizer needs is missing from a `VarMap` or a checkpoint.
    #[error("missing tensor {0}")]
    MissingTensor(String),
    /// A dataset file is missing, truncated or malformed.
    #[error("dataset file {path}: {reason}")]
    Data {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint cannot be used: unreadable, of another format, architecture or data size.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A small SPD system of a block update could not be factorised.
    #[error("numerically singular system in the {block} update (Cholesky pivot {pivot} not positive); check the data for NaN/Inf or increase alpha/gamma")]
    SingularSystem {
        /// The block being updated, e.g. `W_3` or `V_2`.
        block: String,
        /// Index of the first non-positive pivot.
        pivot: usize,
    },
    /// A block or the objective became NaN or infinite.
    #[error("training diverged at iteration {iteration}: {what} is not finite")]
    NonFinite {
        /// The iteration (sweep) in which it happened.
        iteration: usize,
        /// What became non-finite (a block name or an objective part).
        what: String,
    },
    /// The requested device is not available in this build or on this machine.
    #[error("device {device}: {reason}")]
    Device {
        /// The device asked for.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Another rank of a distributed run failed (its own error is reported by that rank), or
    /// the ranks disagree on something they must share.
    #[error("rank {rank}: {reason}")]
    Distributed {
        /// The rank at fault.
        rank: usize,
        /// What happened there.
        reason: String,
    },
    /// An error from Candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An I/O error on a file the crate writes or reads.
    #[error("{path}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
}

/// Result type of the crate.
pub type Result<T> = std::result::Result<T, BcdError>;

impl BcdError {
    /// Shorthand for a [`BcdError::Data`] error.
    pub(crate) fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for a [`BcdError::Checkpoint`] error.
    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for a [`BcdError::Io`] error.
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }
}
