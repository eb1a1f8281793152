//! Checkpoints: one folder per epoch (`epoch-000012/`) holding the model weights, the optimizer
//! state and a `state.json` (epoch, history, seed, checksums). A checkpoint is written into a
//! temporary folder and renamed into place, so a run killed at any moment leaves only complete
//! checkpoints; loading verifies sizes and CRC-32 checksums before decoding. Removal is atomic
//! too: a checkpoint being replaced or pruned is first renamed to a hidden `.NAME.old-PID` folder
//! and only then deleted, so a kill during the deletion never leaves a visible, half-deleted
//! `epoch-NNNNNN/` (found by `tests/kill_and_resume.rs`: `remove_dir_all` deletes `state.json`
//! before `model.mpk`, and a run killed in between left a folder that no longer loaded).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

const MODEL_FILE: &str = "model.mpk";
const OPTIM_FILE: &str = "optimizer.mpk";
const STATE_FILE: &str = "state.json";

/// One file of a checkpoint with its size and checksum.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileDigest {
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32 of the content.
    pub crc32: u32,
}

/// Everything about a run besides tensors: enough to resume exactly.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckpointState {
    /// What was trained (`perceptron`, `unet`); a checkpoint of another kind is refused.
    pub kind: String,
    /// Epochs completed.
    pub epoch: usize,
    /// The run's seed (per-epoch randomness derives from it and the epoch number).
    pub seed: u64,
    /// The training configuration, as JSON.
    pub config: serde_json::Value,
    /// Per-epoch records so far, as JSON.
    pub history: serde_json::Value,
    /// Best validation score so far, if any.
    pub best: Option<f64>,
    /// The model file's digest.
    pub model: Option<FileDigest>,
    /// The optimizer file's digest.
    pub optimizer: Option<FileDigest>,
}

fn digest(bytes: &[u8]) -> FileDigest {
    FileDigest { bytes: bytes.len() as u64, crc32: crc32fast::hash(bytes) }
}

/// The folder name of the checkpoint after `epoch` epochs.
pub fn epoch_dir_name(epoch: usize) -> String {
    format!("epoch-{epoch:06}")
}

/// Writes a checkpoint of `model` and `optimizer` after `state.epoch` epochs into `dir`
/// atomically, then keeps only the newest `keep` epoch checkpoints. Returns the folder.
pub fn save<B: Backend, M: Module<B>, O: Record<B>>(
    dir: &Path,
    model: &M,
    optimizer: O,
    mut state: CheckpointState,
    keep: usize,
) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let model_bytes = Recorder::<B>::record(&recorder, model.clone().into_record(), ())
        .map_err(|e| TrainError::Checkpoint { path: dir.into(), reason: e.to_string() })?;
    let optim_bytes = Recorder::<B>::record(&recorder, optimizer, ())
        .map_err(|e| TrainError::Checkpoint { path: dir.into(), reason: e.to_string() })?;
    state.model = Some(digest(&model_bytes));
    state.optimizer = Some(digest(&optim_bytes));
    let state_json = serde_json::to_vec_pretty(&state).expect("state serialises");

    let final_dir = dir.join(epoch_dir_name(state.epoch));
    let tmp = dir.join(format!(".{}.tmp-{}", epoch_dir_name(state.epoch), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    for (name, bytes) in [(MODEL_FILE, &model_bytes), (OPTIM_FILE, &optim_bytes), (STATE_FILE, &state_json)] {
        let path = tmp.join(name);
        write_synced(&path, bytes).map_err(TrainError::io(&path))?;
    }
    replace_dir(&tmp, &final_dir)?;
    prune(dir, keep)?;
    Ok(final_dir)
}

/// Moves the complete folder `tmp` to `target`, replacing a previous `target` atomically.
fn replace_dir(tmp: &Path, target: &Path) -> Result<(), TrainError> {
    if target.exists() {
        remove_dir_atomically(target)?;
    }
    std::fs::rename(tmp, target).map_err(TrainError::io(target))
}

/// Renames `path` to a hidden sibling first, then deletes it: whatever moment the process dies
/// at, `path` either is complete or is gone (a hidden leftover is cleaned by [`prune`]).
fn remove_dir_atomically(path: &Path) -> Result<(), TrainError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let hidden = path.with_file_name(format!(".{name}.old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&hidden);
    std::fs::rename(path, &hidden).map_err(TrainError::io(path))?;
    std::fs::remove_dir_all(&hidden).map_err(TrainError::io(&hidden))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Copies a checkpoint folder to `dir/name` atomically (used for the best-on-validation copy).
pub fn copy_as(checkpoint: &Path, dir: &Path, name: &str) -> Result<PathBuf, TrainError> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    for f in [MODEL_FILE, OPTIM_FILE, STATE_FILE] {
        std::fs::copy(checkpoint.join(f), tmp.join(f)).map_err(TrainError::io(checkpoint.join(f)))?;
    }
    let target = dir.join(name);
    replace_dir(&tmp, &target)?;
    Ok(target)
}

fn epoch_dirs(dir: &Path) -> Result<Vec<(usize, PathBuf)>, TrainError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(TrainError::Io { path: dir.into(), source: e }),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_prefix("epoch-").and_then(|n| n.parse::<usize>().ok()) {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn prune(dir: &Path, keep: usize) -> Result<(), TrainError> {
    let dirs = epoch_dirs(dir)?;
    if dirs.len() > keep.max(1) {
        for (_, path) in &dirs[..dirs.len() - keep.max(1)] {
            remove_dir_atomically(path)?;
        }
    }
    // Temporary and half-deleted folders of killed runs.
    if let Ok(entries) = std::fs::read_dir(dir) {
        let own = std::process::id().to_string();
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') {
                continue;
            }
            for marker in [".tmp-", ".old-"] {
                if name.contains(marker) && name.rsplit(marker).next().unwrap_or("") != own {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    Ok(())
}

/// The newest checkpoint folder in `dir`, if any.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>, TrainError> {
    Ok(epoch_dirs(dir)?.pop().map(|(_, p)| p))
}

/// Resolves what `--load-weights`/`--resume` points at: a checkpoint folder itself, or a folder
/// of checkpoints (its newest).
pub fn resolve(path: &Path) -> Result<PathBuf, TrainError> {
    if path.join(STATE_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(TrainError::Checkpoint { path: path.into(), reason: "does not exist".into() });
    }
    latest(path)?.ok_or_else(|| TrainError::Checkpoint {
        path: path.into(),
        reason: "holds no checkpoint (no epoch-NNNNNN folder)".into(),
    })
}

fn read_verified(path: &Path, expected: &Option<FileDigest>) -> Result<Vec<u8>, TrainError> {
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    if let Some(d) = expected
        && digest(&bytes) != *d
    {
        return Err(TrainError::Checkpoint {
            path: path.into(),
            reason: format!("corrupt or truncated ({} bytes, expected {}; checksum mismatch)", bytes.len(), d.bytes),
        });
    }
    Ok(bytes)
}

/// Reads only the `state.json` of a checkpoint folder.
pub fn read_state(checkpoint: &Path) -> Result<CheckpointState, TrainError> {
    let path = checkpoint.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(TrainError::io(&path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| TrainError::Checkpoint { path: path.clone(), reason: format!("unreadable state: {e}") })
}

/// Loads only the weights of a checkpoint into `model` (for export and inference).
pub fn load_model<B: Backend, M: Module<B>>(
    checkpoint: &Path,
    kind: &str,
    model: M,
    device: &B::Device,
) -> Result<(M, CheckpointState), TrainError> {
    let state = read_state(checkpoint)?;
    if state.kind != kind {
        return Err(TrainError::Checkpoint {
            path: checkpoint.into(),
            reason: format!("holds a `{}` model, not a `{kind}` model", state.kind),
        });
    }
    let bytes = read_verified(&checkpoint.join(MODEL_FILE), &state.model)?;
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let record = Recorder::<B>::load(&recorder, bytes, device).map_err(|e| TrainError::Checkpoint {
        path: checkpoint.join(MODEL_FILE),
        reason: format!("does not fit this model: {e}"),
    })?;
    Ok((model.load_record(record), state))
}

/// Loads a checkpoint into `model` (whose architecture must match) and returns the optimizer
/// record and the state. `kind` must match the checkpoint's.
pub fn load<B: Backend, M: Module<B>, O: Record<B>>(
    checkpoint: &Path,
    kind: &str,
    model: M,
    device: &B::Device,
) -> Result<(M, O, CheckpointState), TrainError> {
    let state = read_state(checkpoint)?;
    if state.kind != kind {
        return Err(TrainError::Checkpoint {
            path: checkpoint.into(),
            reason: format!("holds a `{}` model, not a `{kind}` model", state.kind),
        });
    }
    let model_bytes = read_verified(&checkpoint.join(MODEL_FILE), &state.model)?;
    let optim_bytes = read_verified(&checkpoint.join(OPTIM_FILE), &state.optimizer)?;
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let bad = |what: &str, e: burn::record::RecorderError| TrainError::Checkpoint {
        path: checkpoint.join(what),
        reason: format!("does not fit this model: {e}"),
    };
    let record = Recorder::<B>::load(&recorder, model_bytes, device).map_err(|e| bad(MODEL_FILE, e))?;
    let model = model.load_record(record);
    let optim: O = Recorder::<B>::load(&recorder, optim_bytes, device).map_err(|e| bad(OPTIM_FILE, e))?;
    Ok((model, optim, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CpuBackend as B;
    use burn::nn::{Linear, LinearConfig};

    fn state(epoch: usize) -> CheckpointState {
        CheckpointState {
            kind: "test".into(),
            epoch,
            seed: 1,
            config: serde_json::Value::Null,
            history: serde_json::json!([]),
            best: None,
            model: None,
            optimizer: None,
        }
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn pruning_and_replacing_leave_only_complete_checkpoints_and_clean_killed_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let model: Linear<B> = LinearConfig::new(3, 2).init(&Default::default());
        // What killed runs leave: a half-written and a half-deleted hidden folder.
        for leftover in [".epoch-000001.tmp-4000000000", ".epoch-000000.old-4000000001"] {
            std::fs::create_dir_all(dir.join(leftover)).unwrap();
            std::fs::write(dir.join(leftover).join(MODEL_FILE), b"partial").unwrap();
        }
        for epoch in 1..=3 {
            save::<B, _, _>(dir, &model, (), state(epoch), 2).unwrap();
        }
        // Re-saving an epoch replaces it; copying one as `best` twice replaces the copy.
        let again = save::<B, _, _>(dir, &model, (), state(3), 2).unwrap();
        copy_as(&again, dir, "best").unwrap();
        copy_as(&again, dir, "best").unwrap();

        assert_eq!(visible(dir), ["best", "epoch-000002", "epoch-000003"]);
        let everything = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(everything, 3, "hidden leftovers remain");
        for name in visible(dir) {
            let ckpt = dir.join(name);
            let fresh: Linear<B> = LinearConfig::new(3, 2).init(&Default::default());
            let (_, st) = load_model(&ckpt, "test", fresh, &Default::default()).unwrap();
            assert_eq!(st.epoch, if ckpt.ends_with("epoch-000002") { 2 } else { 3 });
        }
        assert_eq!(resolve(dir).unwrap(), dir.join("epoch-000003"));
    }
}
