//! The rank files of a data-parallel checkpoint (layout in the parent module): their names,
//! their clean-up after a save, and reading the rows one rank of a run holds, from files
//! written by the same or another number of ranks.

use std::ops::Range;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::{parse, read_metadata, FullBatchCheckpoint};
use crate::comm::{share, Communicator};
use crate::config::Splitting;
use crate::error::{BcdError, Result};
use crate::state::LiftedState;

/// The file of rank `rank`'s lifted rows of the checkpoint `path` at `iteration`.
pub fn rank_path(path: &Path, iteration: usize, rank: usize, ranks: usize) -> Result<PathBuf> {
    let stem = path
        .file_stem()
        .ok_or_else(|| BcdError::checkpoint(path, "not a file path"))?
        .to_string_lossy();
    Ok(path.with_file_name(format!(
        "{stem}.it{iteration}.rank{rank}-of-{ranks}.safetensors"
    )))
}

/// Removes this rank's files of `path` from other iterations than the one of `current`.
pub(super) fn remove_earlier_rank_files(
    path: &Path,
    current: &Path,
    rank: usize,
    ranks: usize,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let (prefix, suffix) = (
        format!("{stem}.it"),
        format!(".rank{rank}-of-{ranks}.safetensors"),
    );
    let entries = std::fs::read_dir(&dir).map_err(|e| BcdError::io(&dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let middle = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix));
        let is_ours = middle.is_some_and(|k| k.parse::<usize>().is_ok());
        if is_ours && entry.path().file_name() != current.file_name() {
            std::fs::remove_file(entry.path()).map_err(|e| BcdError::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// This rank's rows (`rows` of them, its [`share`] of the checkpoint's `N`) of the lifted state
/// of `ckpt`, loaded from `path`. Written by as many ranks, that is its own rank file; written
/// by another number (one process included), the rows are cut from the files that hold them
/// (re-sharding). Errors name the file that is missing, of another iteration or of other rows.
pub fn load_rank_state(
    path: &Path,
    ckpt: &FullBatchCheckpoint,
    comm: &dyn Communicator,
    rows: usize,
    device: &Device,
) -> Result<LiftedState> {
    let (rank, ranks) = (comm.rank(), comm.size());
    let mine = share(ckpt.num_samples, rank, ranks);
    if mine.len() != rows {
        return Err(BcdError::checkpoint(
            path,
            format!(
                "rank {rank} of {ranks} holds {rows} rows, its share of the checkpoint's {} is {}",
                ckpt.num_samples,
                mine.len()
            ),
        ));
    }
    let mut pieces = Vec::new();
    for k in 0..ckpt.ranks {
        let theirs = share(ckpt.num_samples, k, ckpt.ranks);
        let (lo, hi) = (mine.start.max(theirs.start), mine.end.min(theirs.end));
        if lo >= hi {
            continue;
        }
        let state = match ckpt.ranks {
            1 => ckpt.state.clone(),
            _ => read_rank_file(path, ckpt, k, theirs.len(), device)?,
        };
        pieces.push(cut(state, lo - theirs.start..hi - theirs.start)?);
    }
    join(pieces, ckpt.state.iteration)
}

/// Rank `k`'s file of `ckpt`, checked against its metadata.
fn read_rank_file(
    path: &Path,
    ckpt: &FullBatchCheckpoint,
    k: usize,
    rows: usize,
    device: &Device,
) -> Result<LiftedState> {
    let (iteration, ranks) = (ckpt.state.iteration, ckpt.ranks);
    let file = rank_path(path, iteration, k, ranks)?;
    let meta = read_metadata(&file)?;
    for (key, expected) in [
        ("iteration", iteration),
        ("rank", k),
        ("ranks", ranks),
        ("rows", rows),
    ] {
        let found: usize = parse(&meta, key, &file)?;
        if found != expected {
            return Err(BcdError::checkpoint(
                &file,
                format!("its `{key}` is {found}, the checkpoint needs {expected}"),
            ));
        }
    }
    let mut tensors = candle_core::safetensors::load(&file, device)
        .map_err(|e| BcdError::checkpoint(&file, format!("cannot read tensors: {e}")))?;
    let mut take = |name: String| -> Result<Tensor> {
        tensors
            .remove(&name)
            .ok_or_else(|| BcdError::checkpoint(&file, format!("tensor `{name}` is missing")))
    };
    let mut state = LiftedState {
        iteration,
        u: Vec::new(),
        v: Vec::new(),
    };
    for l in 0..ckpt.model.architecture.num_layers() {
        if ckpt.model.config.splitting == Splitting::Three {
            state.u.push(take(LiftedState::u_name(l))?);
        }
        state.v.push(take(LiftedState::v_name(l))?);
    }
    Ok(state)
}

/// The rows `range` of every lifted block.
fn cut(state: LiftedState, range: Range<usize>) -> Result<LiftedState> {
    let narrow = |t: Vec<Tensor>| -> Result<Vec<Tensor>> {
        t.iter()
            .map(|t| Ok(t.narrow(0, range.start, range.len())?))
            .collect()
    };
    Ok(LiftedState {
        iteration: state.iteration,
        u: narrow(state.u)?,
        v: narrow(state.v)?,
    })
}

/// The pieces' rows stacked in order, block by block.
fn join(mut pieces: Vec<LiftedState>, iteration: usize) -> Result<LiftedState> {
    if pieces.len() == 1 {
        return Ok(pieces.remove(0));
    }
    let stack = |blocks: Vec<&Vec<Tensor>>| -> Result<Vec<Tensor>> {
        let count = blocks.first().map_or(0, |b| b.len());
        (0..count)
            .map(|l| {
                let parts: Vec<&Tensor> = blocks.iter().map(|b| &b[l]).collect();
                Ok(Tensor::cat(&parts, 0)?)
            })
            .collect()
    };
    Ok(LiftedState {
        iteration,
        u: stack(pieces.iter().map(|p| &p.u).collect())?,
        v: stack(pieces.iter().map(|p| &p.v).collect())?,
    })
}
