//! Checkpoints: the whole optimizer state in one safetensors file.
//!
//! Tensors (all `f32`):
//!
//! | name | shape | meaning |
//! |---|---|---|
//! | `{prefix}.weight` | `[d_{l+1}, d_l]` | `W_{l+1}` (candle-nn `Linear` layout) |
//! | `{prefix}.bias` | `[d_{l+1}]` | `b_{l+1}` |
//! | `lifted.u.{l}` | `[N, d_{l+1}]` | pre-activations `U_{l+1}` (three-splitting only) |
//! | `lifted.v.{l}` | `[N, d_{l+1}]` | activations `V_{l+1}` (`V_L` for the last `l`) |
//!
//! Metadata (strings): `format = candle-bcd-checkpoint`, `format_version = 1`,
//! `architecture` and `config` (JSON of [`Architecture`] and [`BcdConfig`]), `layers` (JSON list
//! of the layers' prefixes, e.g. `["fc1","fc2"]`; `layers.{l}` when absent), `iteration`
//! (completed sweeps) and `num_samples` (`N`).
//!
//! A data-parallel run on `P > 1` ranks writes the file above without the lifted tensors and
//! with a `ranks` key (`P`), and beside it one file per rank holding that rank's rows of the
//! lifted tensors (same names, `[N_r, d]`):
//!
//! ```text
//! {stem}.it{k}.rank{r}-of-{P}.safetensors     metadata: iteration k, rank r, ranks P, rows N_r
//! ```
//!
//! The rank files are written first (each atomically), then the main file; a rank's file of an
//! earlier iteration is removed only after that. An interrupted save therefore leaves the
//! previous checkpoint and its rank files whole. A run on another number of ranks (one process
//! included) re-shards on resume: each of its ranks reads the rows it holds from the rank files
//! (or the single file) that have them.
//!
//! A mini-batch run keeps no lifted state between batches: its checkpoints, written at epoch
//! boundaries, hold the weights and a `minibatch` metadata key (JSON: the mini-batch settings,
//! the epochs and batches done) in place of the lifted tensors, `iteration` and `num_samples`.
//! [`load`] returns the two kinds as the two variants of [`Checkpoint`].
//!
//! Files are written atomically: to a temporary file in the same directory, synced, then
//! renamed over the target, so an interrupted save never destroys the previous checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::arch::Architecture;
use crate::comm;
use crate::config::{BcdConfig, Splitting};
use crate::error::{BcdError, Result};
use crate::minibatch::NormalSums;
use crate::minibatch::{MiniBatchBcd, MiniBatchOptions};
use crate::network::Network;
use crate::optimizer::BcdOptimizer;
use crate::state::LiftedState;

mod ranks;

pub use ranks::{load_rank_state, rank_path};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "candle-bcd-checkpoint";
/// Value of the `format_version` metadata key.
pub const FORMAT_VERSION: &str = "1";

/// Where a mini-batch run stands: its settings and the epochs and batches done.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MiniBatchProgress {
    /// The mini-batch settings of the run.
    pub options: MiniBatchOptions,
    /// Completed epochs.
    pub epochs: usize,
    /// Batches done in all.
    pub batches: usize,
    /// The weight blocks' memory of earlier batches (tensors `memory.gram.{l}`,
    /// `memory.cross.{l}` in `f64`), one entry per layer; empty without Gram memory.
    #[serde(skip)]
    pub memory: Vec<Option<NormalSums>>,
    /// With inertia, the weights and biases the last batch started from before extrapolation
    /// (tensors `previous.weight.{l}`, `previous.bias.{l}`), one pair per layer; empty without.
    #[serde(skip)]
    pub previous: Vec<(Tensor, Tensor)>,
}

impl PartialEq for MiniBatchProgress {
    /// Equal settings and progress, and bit-identical memory and previous weights.
    fn eq(&self, other: &Self) -> bool {
        let bits = |t: &Tensor| -> Option<Vec<u32>> {
            let values = t.flatten_all().ok()?.to_vec1::<f32>().ok()?;
            Some(values.into_iter().map(f32::to_bits).collect())
        };
        // A tensor that cannot be read as `f32` equals nothing.
        let same = |a: &Tensor, b: &Tensor| {
            a.dims() == b.dims() && bits(a).is_some_and(|x| bits(b).is_some_and(|y| x == y))
        };
        self.options == other.options
            && (self.epochs, self.batches) == (other.epochs, other.batches)
            && self.memory == other.memory
            && self.previous.len() == other.previous.len()
            && self
                .previous
                .iter()
                .zip(&other.previous)
                .all(|((w, b), (v, c))| same(w, v) && same(b, c))
    }
}

/// A loaded checkpoint: a full-batch run's or a mini-batch run's.
#[derive(Debug)]
#[non_exhaustive]
pub enum Checkpoint {
    /// A full-batch run: the network, its hyperparameters and the lifted state.
    FullBatch(FullBatchCheckpoint),
    /// A mini-batch run at an epoch boundary: the network, its hyperparameters and where the
    /// run stands (it keeps no lifted state between batches).
    MiniBatch(MiniBatchCheckpoint),
}

/// What every checkpoint holds: the network's description and weights, and the
/// hyperparameters it was trained with.
#[derive(Debug)]
pub struct SavedModel {
    /// The network's architecture.
    pub architecture: Architecture,
    /// The layers' prefixes (`{prefix}.weight`, `{prefix}.bias`), from the input.
    pub layer_names: Vec<String>,
    /// The hyperparameters it was trained with.
    pub config: BcdConfig,
    /// Weights and biases by candle-nn name.
    pub weights: HashMap<String, Tensor>,
}

/// The checkpoint of a full-batch run.
#[derive(Debug)]
pub struct FullBatchCheckpoint {
    /// The network and hyperparameters.
    pub model: SavedModel,
    /// Number of training samples `N` of the lifted state.
    pub num_samples: usize,
    /// Lifted variables and iteration count; empty when `ranks > 1` (each rank then reads its
    /// rows with [`load_rank_state`]).
    pub state: LiftedState,
    /// The number of ranks that wrote it.
    pub ranks: usize,
}

/// The checkpoint of a mini-batch run.
#[derive(Debug)]
pub struct MiniBatchCheckpoint {
    /// The network and hyperparameters.
    pub model: SavedModel,
    /// Where the run stands.
    pub progress: MiniBatchProgress,
}

/// Writes `tensors` with `metadata` to `path` atomically (temporary file, sync, rename).
pub fn write_atomic(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| BcdError::checkpoint(path, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let tmp: PathBuf = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| -> Result<()> {
        safetensors::serialize_to_file(tensors, Some(metadata), &tmp)
            .map_err(|e| BcdError::checkpoint(&tmp, format!("cannot write: {e}")))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| BcdError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| BcdError::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Saves the optimizer's weights, lifted state, configuration and iteration count. In a
/// data-parallel run every rank calls it: each writes its rows of the lifted state to its own
/// file, then rank 0 the main file (see the module documentation).
pub fn save(path: &Path, opt: &BcdOptimizer) -> Result<()> {
    let state = opt.state();
    let mut lifted = Vec::new();
    for (l, v) in state.v.iter().enumerate() {
        if let Some(u) = state.u.get(l) {
            lifted.push((LiftedState::u_name(l), u.clone()));
        }
        lifted.push((LiftedState::v_name(l), v.clone()));
    }
    let mut tensors = opt.layers().named_tensors();
    let mut metadata = base_metadata(opt.layers(), opt.config())?;
    metadata.insert("iteration".into(), state.iteration.to_string());
    metadata.insert("num_samples".into(), opt.num_samples().to_string());
    let comm = &**opt.communicator();
    if comm.size() == 1 {
        tensors.extend(lifted);
        return write_atomic(path, tensors, metadata);
    }
    let (rank, ranks) = (comm.rank(), comm.size());
    let shard = rank_path(path, state.iteration, rank, ranks)?;
    let shard_meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("iteration".to_string(), state.iteration.to_string()),
        ("rank".to_string(), rank.to_string()),
        ("ranks".to_string(), ranks.to_string()),
        ("rows".to_string(), opt.inputs().dim(0)?.to_string()),
    ]);
    comm::agree(comm, write_atomic(&shard, lifted, shard_meta))?;
    metadata.insert("ranks".into(), ranks.to_string());
    let main = match rank {
        0 => write_atomic(path, tensors, metadata),
        _ => Ok(()),
    };
    comm::agree(comm, main)?;
    ranks::remove_earlier_rank_files(path, &shard, rank, ranks)
}

/// Saves a mini-batch run at an epoch boundary: its weights, configuration and progress
/// (metadata `minibatch`); a mini-batch run keeps no lifted state between batches.
pub fn save_minibatch(path: &Path, bcd: &MiniBatchBcd) -> Result<()> {
    let progress = MiniBatchProgress {
        options: bcd.options().clone(),
        epochs: bcd.epochs_done(),
        batches: bcd.batches_done(),
        memory: Vec::new(),
        previous: Vec::new(),
    };
    let comm = &**bcd.communicator();
    let mut metadata = base_metadata(bcd.layers(), bcd.config())?;
    metadata.insert("minibatch".into(), to_json(&progress)?);
    let mut tensors = bcd.layers().named_tensors();
    for (l, sums) in bcd.memory().iter().enumerate() {
        if let Some(sums) = sums {
            let (gram, cross) = sums.to_tensors()?;
            tensors.push((format!("memory.gram.{l}"), gram));
            tensors.push((format!("memory.cross.{l}"), cross));
        }
    }
    for (l, (w, b)) in bcd
        .previous_weights()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        tensors.push((format!("previous.weight.{l}"), w.clone()));
        tensors.push((format!("previous.bias.{l}"), b.clone()));
    }
    // Every rank holds the same weights and memory: rank 0 writes them.
    let written = match comm.rank() {
        0 => write_atomic(path, tensors, metadata),
        _ => Ok(()),
    };
    comm::agree(comm, written)
}

/// The metadata every checkpoint carries.
fn base_metadata(layers: &Network, config: &BcdConfig) -> Result<HashMap<String, String>> {
    Ok(HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("architecture".to_string(), to_json(layers.architecture())?),
        ("config".to_string(), to_json(config)?),
        ("layers".to_string(), to_json(&layers.names())?),
    ]))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| candle_core::Error::Msg(format!("json: {e}")).into())
}

/// Largest safetensors header this crate reads (the format's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// Reads the safetensors metadata (`__metadata__`) of `path` with plain reads of its header.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| BcdError::io(path, e))?;
    let size = file.metadata().map_err(|e| BcdError::io(path, e))?.len();
    let bad = |why: String| BcdError::checkpoint(path, format!("not a safetensors file: {why}"));
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| {
        bad(format!(
            "{size} bytes, shorter than the 8-byte header length"
        ))
    })?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER || len > size.saturating_sub(8) {
        return Err(bad(format!(
            "header length {len} does not fit a file of {size} bytes"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| BcdError::io(path, e))?;
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: HashMap<String, String>,
    }
    let header: Header =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
    Ok(header.metadata)
}

fn field<'a>(meta: &'a HashMap<String, String>, key: &str, path: &Path) -> Result<&'a str> {
    meta.get(key)
        .map(String::as_str)
        .ok_or_else(|| BcdError::checkpoint(path, format!("metadata key `{key}` is missing")))
}

pub(crate) fn parse<T: std::str::FromStr>(
    meta: &HashMap<String, String>,
    key: &str,
    path: &Path,
) -> Result<T> {
    field(meta, key, path)?
        .parse()
        .map_err(|_| BcdError::checkpoint(path, format!("metadata key `{key}` is malformed")))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(
    meta: &HashMap<String, String>,
    key: &str,
    path: &Path,
) -> Result<T> {
    serde_json::from_str(field(meta, key, path)?)
        .map_err(|e| BcdError::checkpoint(path, format!("metadata key `{key}`: {e}")))
}

/// Loads a checkpoint onto `device`, checking its format and that every tensor is present.
pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
    let meta = read_metadata(path)?;
    let format = field(&meta, "format", path)?;
    if format != FORMAT {
        return Err(BcdError::checkpoint(
            path,
            format!("format `{format}` is not `{FORMAT}`"),
        ));
    }
    let version = field(&meta, "format_version", path)?;
    if version != FORMAT_VERSION {
        return Err(BcdError::checkpoint(
            path,
            format!("format version {version} is not {FORMAT_VERSION}"),
        ));
    }
    let architecture: Architecture = json(&meta, "architecture", path)?;
    let config: BcdConfig = json(&meta, "config", path)?;
    let minibatch: Option<MiniBatchProgress> = match meta.get("minibatch") {
        Some(_) => Some(json(&meta, "minibatch", path)?),
        None => None,
    };
    let layer_names = layer_names(&meta, &architecture, path)?;
    let ranks: usize = match meta.get("ranks") {
        Some(_) => parse(&meta, "ranks", path)?,
        None => 1,
    };
    let mut tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| BcdError::checkpoint(path, format!("cannot read tensors: {e}")))?;
    let mut take = |name: String| -> Result<Tensor> {
        tensors
            .remove(&name)
            .ok_or_else(|| BcdError::checkpoint(path, format!("tensor `{name}` is missing")))
    };
    let mut weights = HashMap::new();
    for prefix in &layer_names {
        for name in [format!("{prefix}.weight"), format!("{prefix}.bias")] {
            let t = take(name.clone())?;
            weights.insert(name, t);
        }
    }
    let num_layers = layer_names.len();
    let model = SavedModel {
        architecture,
        layer_names,
        config,
        weights,
    };
    if let Some(mut progress) = minibatch {
        progress.memory = memory_sums(&mut tensors, num_layers, path)?;
        progress.previous = previous_weights(&mut tensors, num_layers, path)?;
        return Ok(Checkpoint::MiniBatch(MiniBatchCheckpoint {
            model,
            progress,
        }));
    }
    let mut state = LiftedState {
        iteration: parse(&meta, "iteration", path)?,
        u: Vec::new(),
        v: Vec::new(),
    };
    if ranks == 1 {
        for l in 0..num_layers {
            let mut take = |name: String| -> Result<Tensor> {
                tensors.remove(&name).ok_or_else(|| {
                    BcdError::checkpoint(path, format!("tensor `{name}` is missing"))
                })
            };
            if model.config.splitting == Splitting::Three {
                state.u.push(take(LiftedState::u_name(l))?);
            }
            state.v.push(take(LiftedState::v_name(l))?);
        }
    }
    Ok(Checkpoint::FullBatch(FullBatchCheckpoint {
        model,
        num_samples: parse(&meta, "num_samples", path)?,
        state,
        ranks,
    }))
}

/// The Gram memory of a mini-batch checkpoint, one entry per layer (empty when it has none).
fn memory_sums(
    tensors: &mut HashMap<String, Tensor>,
    layers: usize,
    path: &Path,
) -> Result<Vec<Option<NormalSums>>> {
    let mut memory = Vec::new();
    for l in 0..layers {
        let gram = tensors.remove(&format!("memory.gram.{l}"));
        let cross = tensors.remove(&format!("memory.cross.{l}"));
        let sums = match (gram, cross) {
            (Some(gram), Some(cross)) => {
                NormalSums::from_tensors(&gram, &cross, &format!("memory.gram.{l}"))
                    .map(Some)
                    .map_err(|e| BcdError::checkpoint(path, e.to_string()))?
            }
            (None, None) => None,
            _ => {
                return Err(BcdError::checkpoint(
                    path,
                    format!("memory.gram.{l} and memory.cross.{l} must come together"),
                ))
            }
        };
        memory.push(sums);
    }
    Ok(if memory.iter().all(Option::is_none) {
        Vec::new()
    } else {
        memory
    })
}

/// The inertia's previous weights of a mini-batch checkpoint, one pair per layer (empty when
/// it has none).
fn previous_weights(
    tensors: &mut HashMap<String, Tensor>,
    layers: usize,
    path: &Path,
) -> Result<Vec<(Tensor, Tensor)>> {
    let mut previous = Vec::new();
    for l in 0..layers {
        let (w, b) = (format!("previous.weight.{l}"), format!("previous.bias.{l}"));
        match (tensors.remove(&w), tensors.remove(&b)) {
            (Some(w), Some(b)) => previous.push((w, b)),
            (None, None) if l == 0 => return Ok(previous),
            _ => {
                return Err(BcdError::checkpoint(
                    path,
                    format!("{w} and {b} must be present for every layer or for none"),
                ))
            }
        }
    }
    Ok(previous)
}

/// The `layers` metadata (the layers' prefixes), `layers.{l}` when absent; one per layer.
pub(crate) fn layer_names(
    meta: &HashMap<String, String>,
    arch: &Architecture,
    path: &Path,
) -> Result<Vec<String>> {
    let names: Vec<String> = match meta.get("layers") {
        Some(_) => json(meta, "layers", path)?,
        None => (0..arch.num_layers())
            .map(Architecture::layer_prefix)
            .collect(),
    };
    if names.len() != arch.num_layers() {
        return Err(BcdError::checkpoint(
            path,
            format!(
                "{} layer names for the {} layers of its architecture",
                names.len(),
                arch.num_layers()
            ),
        ));
    }
    Ok(names)
}

impl Checkpoint {
    /// The network and hyperparameters, whichever the kind.
    pub fn model(&self) -> &SavedModel {
        match self {
            Checkpoint::FullBatch(c) => &c.model,
            Checkpoint::MiniBatch(c) => &c.model,
        }
    }

    /// The network's architecture.
    pub fn architecture(&self) -> &Architecture {
        &self.model().architecture
    }

    /// The hyperparameters it was trained with.
    pub fn config(&self) -> &BcdConfig {
        &self.model().config
    }

    /// The network of this checkpoint with its weights in `varmap` (see
    /// [`SavedModel::network`]).
    pub fn network(&self, varmap: &VarMap) -> Result<Network> {
        self.model().network(varmap)
    }
}

impl SavedModel {
    /// Checks that this model (read from `path`) has the architecture `arch`; the error names
    /// what differs ([`Architecture::difference`]).
    pub fn check_architecture(&self, arch: &Architecture, path: &Path) -> Result<()> {
        match self.architecture.difference(arch) {
            None => Ok(()),
            Some(difference) => Err(BcdError::checkpoint(
                path,
                format!(
                    "architecture mismatch (the checkpoint's against the one requested): {difference}"
                ),
            )),
        }
    }

    /// The network of this checkpoint with its weights in `varmap`, under its own layer
    /// names, activation and residual layers. A `Var` of `varmap` already under such a name
    /// (a model of the user's that reads it) is set to the checkpoint's value, so that model
    /// computes with it; missing ones are created. Errors name the tensor whose shape does not
    /// fit the architecture.
    pub fn network(&self, varmap: &VarMap) -> Result<Network> {
        let mut tensors = Vec::new();
        for (l, prefix) in self.layer_names.iter().enumerate() {
            let shape = self.architecture.weight_shape(l);
            for (name, expected) in [
                (format!("{prefix}.weight"), shape.clone()),
                (format!("{prefix}.bias"), vec![shape[0]]),
            ] {
                let t = &self.weights[&name];
                if t.dims() != expected.as_slice() {
                    return Err(BcdError::ShapeMismatch {
                        name,
                        expected,
                        got: t.dims().to_vec(),
                    });
                }
                tensors.push((name, t.clone()));
            }
        }
        crate::network::set_or_insert(varmap, tensors)?;
        Network::from_varmap_as(varmap, &self.layer_names, &self.architecture)
    }
}

impl FullBatchCheckpoint {
    /// Checks that this checkpoint was made for `arch` and `num_samples` training samples.
    pub fn check_compatible(
        &self,
        arch: &Architecture,
        num_samples: usize,
        path: &Path,
    ) -> Result<()> {
        self.model.check_architecture(arch, path)?;
        if self.num_samples != num_samples {
            return Err(BcdError::checkpoint(
                path,
                format!(
                    "its lifted state has {} training samples, the data {num_samples} (use the same --train-limit)",
                    self.num_samples
                ),
            ));
        }
        Ok(())
    }
}
