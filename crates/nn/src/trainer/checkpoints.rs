//! A trainer's checkpoints: writing one per epoch, getting the directory ready, and finding
//! and loading the newest when a run resumes (rank 0 reads it and sends its bytes to the
//! other ranks of a data-parallel run).

use std::path::{Path, PathBuf};

use wgrad_graph::{Error, Result};

use super::Trainer;
use crate::history::History;
use crate::io;
use crate::optim::Optimizer;

impl Trainer<'_> {
    pub(super) fn save_checkpoint(
        &mut self,
        dir: &Path,
        epoch: usize,
        history: &History,
    ) -> Result<()> {
        let path = dir.join(format!("epoch-{epoch:04}.safetensors"));
        let world = self.parallel.map_or(1, |p| p.world_size());
        let meta = [
            ("epoch".to_string(), epoch.to_string()),
            ("history".to_string(), history.to_csv()),
            ("world_size".to_string(), world.to_string()),
        ];
        let (model, optimizers) = self.learner.parts();
        let optimizers: Vec<(&str, &dyn Optimizer)> =
            optimizers.into_iter().map(|(n, o)| (n, &*o)).collect();
        io::save_checkpoint(&path, model, &optimizers, &meta)
    }

    /// Gets the checkpoint directory ready and, when resuming, loads the newest checkpoint
    /// that fits, returning its epoch and history. In a data-parallel run rank 0 does this
    /// and sends the checkpoint's bytes to the others (which need not share its file
    /// system); every rank then loads the same bytes, or returns the same error.
    pub(super) fn open_checkpoints(
        &mut self,
        dir: &Path,
        resume: bool,
        overwrite: bool,
    ) -> Result<Option<(usize, History)>> {
        let world = self.parallel.map_or(1, |p| p.world_size());
        let mine = (|| {
            if !self.is_main() {
                return Ok(None);
            }
            prepare_checkpoint_dir(dir, resume, overwrite)?;
            if !resume {
                return Ok(None);
            }
            self.load_latest_checkpoint(dir, world)
        })();
        let Some(p) = self.parallel else {
            return mine.map(|found| found.map(|(epoch, history, _)| (epoch, history)));
        };
        // The message: 0 nothing to resume, 1 + the checkpoint's bytes, 2 + rank 0's error.
        let mut message = match &mine {
            Ok(None) => vec![0],
            Ok(Some((_, _, bytes))) => [&[1u8][..], bytes].concat(),
            Err(e) => [&[2u8][..], e.to_string().as_bytes()].concat(),
        };
        p.broadcast_bytes(&mut message)?;
        if p.is_main() {
            return mine.map(|found| found.map(|(epoch, history, _)| (epoch, history)));
        }
        match message.split_first() {
            Some((1, bytes)) => {
                let path = dir.join("(the checkpoint rank 0 sent)");
                let (model, mut optimizers) = self.learner.parts();
                let meta = io::load_checkpoint_bytes(&path, bytes, model, &mut optimizers)?;
                let (epoch, history) = checkpoint_progress(&path, &meta, world)?;
                Ok(Some((epoch, history)))
            }
            Some((2, text)) => Err(Error::Data(format!(
                "rank 0 could not open the checkpoints: {}",
                String::from_utf8_lossy(text)
            ))),
            _ => Ok(None),
        }
    }

    /// The newest checkpoint in `dir` that loads completely, with its bytes; older ones are
    /// tried when a newer one is damaged. One written by a run of another world size is an
    /// error: its epochs were cut into other shards.
    pub(super) fn load_latest_checkpoint(
        &mut self,
        dir: &Path,
        world: usize,
    ) -> Result<Option<(usize, History, Vec<u8>)>> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(None);
        };
        let mut found: Vec<(usize, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name
                    .strip_prefix("epoch-")?
                    .strip_suffix(".safetensors")?
                    .parse()
                    .ok()?;
                Some((n, e.path()))
            })
            .collect();
        found.sort();
        let any = !found.is_empty();
        for (_, path) in found.into_iter().rev() {
            let (model, mut optimizers) = self.learner.parts();
            let loaded = std::fs::read(&path)
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })
                .and_then(|bytes| {
                    let meta = io::load_checkpoint_bytes(&path, &bytes, model, &mut optimizers)?;
                    Ok((meta, bytes))
                });
            match loaded {
                Ok((meta, bytes)) => {
                    let (epoch, history) = checkpoint_progress(&path, &meta, world)?;
                    return Ok(Some((epoch, history, bytes)));
                }
                Err(e) => log::warn!("skipping checkpoint {}: {e}", path.display()),
            }
        }
        if any {
            // Starting over would overwrite the checkpoints that exist.
            return Err(Error::Data(format!(
                "no checkpoint in {} fits this model and optimizer; remove them to start over",
                dir.display()
            )));
        }
        Ok(None)
    }
}

/// The epoch and history a checkpoint's metadata records, checking that it was written by a
/// run of `world` ranks (a file without the entry comes from one process).
fn checkpoint_progress(
    path: &Path,
    meta: &std::collections::HashMap<String, String>,
    world: usize,
) -> Result<(usize, History)> {
    let written_by: usize = meta
        .get("world_size")
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    if written_by != world {
        return Err(Error::Data(format!(
            "{} was written by a run of {written_by} rank(s), and this run has {world}: resume \
             with the same number of ranks (each epoch's shards depend on it)",
            path.display()
        )));
    }
    let epoch = meta
        .get("epoch")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| Error::Data(format!("{} records no epoch", path.display())))?;
    let history = meta
        .get("history")
        .and_then(|h| History::from_csv(h))
        .unwrap_or_default();
    Ok((epoch, history))
}

/// Gets `dir` ready for a run's checkpoints: the temporary file of a write that was
/// interrupted is removed; checkpoints of another run are refused (or, with `overwrite`,
/// removed) unless this run resumes them.
fn prepare_checkpoint_dir(dir: &Path, resume: bool, overwrite: bool) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut checkpoints = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".epoch-") && name.contains(".safetensors.tmp-") {
            std::fs::remove_file(entry.path()).map_err(|source| Error::Io {
                path: entry.path(),
                source,
            })?;
        } else if name.starts_with("epoch-") && name.ends_with(".safetensors") {
            checkpoints.push(entry.path());
        }
    }
    if resume || checkpoints.is_empty() {
        return Ok(());
    }
    if !overwrite {
        checkpoints.sort();
        return Err(Error::Data(format!(
            "{} holds checkpoints of another run ({} files, the last {}); resume it, or \
             overwrite them (--resume or --overwrite)",
            dir.display(),
            checkpoints.len(),
            checkpoints
                .last()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )));
    }
    for path in checkpoints {
        std::fs::remove_file(&path).map_err(|source| Error::Io { path, source })?;
    }
    Ok(())
}
