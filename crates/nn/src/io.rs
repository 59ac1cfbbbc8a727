//! Saving and loading weights in the safetensors format: parameters and buffers by name, and
//! optionally the optimizer's state under `optimizer.`. Writes are atomic (a temporary file in
//! the same directory, then a rename); a load checks every tensor before changing anything.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use wgrad_graph::{realize_all, Error, Result, Tensor};

use crate::module::Module;
use crate::optim::Optimizer;

const OPTIMIZER_PREFIX: &str = "optimizer.";
const COUNTER_PREFIX: &str = "counter.";
/// The layout of the files `save` writes. Version 1 (files without `format_version`) stored
/// `Dense` weights as `[in, out]`; version 2 stores them as PyTorch does, `[out, in]`, and
/// reading a version-1 file transposes them (see [`Module::legacy_transposed`]).
const FORMAT_VERSION: u32 = 2;

/// A parsed file read in today's layout: in a wgrad file of format version 1, the tensors a
/// model names in [`Module::legacy_transposed`] (and their optimizer state) are read back
/// transposed.
struct Stored<'f, 'a> {
    file: &'f SafeTensors<'a>,
    transposed: Vec<String>,
}

impl<'f, 'a> Stored<'f, 'a> {
    fn new(
        file: &'f SafeTensors<'a>,
        meta: &HashMap<String, String>,
        model: &dyn Module,
        optimizer: Option<&dyn Optimizer>,
    ) -> Self {
        let version_1 = meta.get("format").is_some_and(|f| f == "wgrad")
            && !meta.contains_key("format_version");
        let mut transposed = Vec::new();
        if version_1 {
            transposed = model.legacy_transposed();
            // Optimizer state is stored per parameter index: `optimizer.m.3`.
            let named = model.named_parameters();
            let legacy = |p: &Tensor| {
                named
                    .iter()
                    .any(|(n, t)| t.id() == p.id() && transposed.contains(n))
            };
            if let Some(opt) = optimizer {
                let indices: Vec<usize> = (opt.params().iter().enumerate())
                    .filter(|(_, p)| legacy(p))
                    .map(|(i, _)| i)
                    .collect();
                for name in file.names() {
                    let index = name
                        .strip_prefix(OPTIMIZER_PREFIX)
                        .and_then(|key| key.rsplit_once('.'))
                        .and_then(|(_, i)| i.parse::<usize>().ok());
                    if index.is_some_and(|i| indices.contains(&i)) {
                        transposed.push(name.to_string());
                    }
                }
            }
            if !transposed.is_empty() {
                log::info!(
                    target: "wgrad::io",
                    "a file of format version 1: reading {} Dense weights [in, out] as [out, in]",
                    transposed.len()
                );
            }
        }
        Stored { file, transposed }
    }

    /// The element type, shape and (for F32) values of `name`, in today's layout.
    fn get(&self, name: &str) -> Option<(Dtype, Vec<usize>, Vec<f32>)> {
        let view = self.file.tensor(name).ok()?;
        let (dtype, shape) = (view.dtype(), view.shape().to_vec());
        let values = if dtype == Dtype::F32 {
            f32s(&view)
        } else {
            Vec::new()
        };
        match shape[..] {
            [rows, cols] if dtype == Dtype::F32 && self.transposed.iter().any(|n| n == name) => {
                let t = (0..rows * cols)
                    .map(|i| values[(i % rows) * cols + i / rows])
                    .collect();
                Some((dtype, vec![cols, rows], t))
            }
            _ => Some((dtype, shape, values)),
        }
    }
}

fn format_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The safetensors file in `bytes`, or an error naming `path`.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        format_err(
            path,
            format!("not a valid safetensors file (corrupt or truncated?): {e}"),
        )
    })
}

/// The model's counters that the file holds as integer scalars, as PyTorch stores
/// `num_batches_tracked`, with their values.
fn counter_tensors(file: &SafeTensors<'_>, model: &dyn Module) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (name, _) in model.named_counters() {
        let Ok(view) = file.tensor(&name) else {
            continue;
        };
        let b = view.data();
        let value = match (view.dtype(), b.len()) {
            (Dtype::I64, 8) => i64::from_le_bytes(b.try_into().expect("8 bytes")).max(0) as u64,
            (Dtype::I32, 4) => i32::from_le_bytes(b.try_into().expect("4 bytes")).max(0) as u64,
            _ => continue,
        };
        out.push((name, value));
    }
    out
}

/// The values of an F32 tensor view.
fn f32s(view: &TensorView<'_>) -> Vec<f32> {
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Saves the model's parameters and buffers (and the optimizer's state, if given) to `path`.
///
/// ```
/// use wgrad_nn::{io, Dense, Module, Rng, Sequential};
/// let dev = wgrad_cpu::CpuBackend::device();
/// let model = Sequential::new().add(Dense::new(&dev, 3, 2, &mut Rng::new(1))?);
/// let path = std::env::temp_dir().join("wgrad-doc-example.safetensors");
/// io::save(&path, &model, None)?;
/// let copy = Sequential::new().add(Dense::new(&dev, 3, 2, &mut Rng::new(2))?);
/// io::load(&path, &copy, None)?;
/// assert_eq!(copy.parameters()[0].to_vec()?, model.parameters()[0].to_vec()?);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), wgrad_graph::Error>(())
/// ```
pub fn save(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: Option<&dyn Optimizer>,
) -> Result<()> {
    save_with_metadata(path, model, optimizer, &[])
}

/// Like [`save`], with extra string metadata stored in the file's header.
pub fn save_with_metadata(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: Option<&dyn Optimizer>,
    extra: &[(String, String)],
) -> Result<()> {
    let optimizers: Vec<(&str, &dyn Optimizer)> = optimizer.map(|o| ("", o)).into_iter().collect();
    save_checkpoint(path, model, &optimizers, extra)
}

/// Where the state of the optimizer called `name` lives: `optimizer.` for the unnamed one
/// [`save`] writes, `optimizers.{name}.` for each of several (a GAN's two).
fn optimizer_prefix(name: &str) -> String {
    match name {
        "" => OPTIMIZER_PREFIX.to_string(),
        n => format!("optimizers.{n}."),
    }
}

/// Whether a tensor name is optimizer state rather than the model's.
fn is_optimizer_state(name: &str) -> bool {
    name.starts_with(OPTIMIZER_PREFIX) || name.starts_with("optimizers.")
}

/// Saves a model with several optimizers, each under its name, and metadata: a training
/// run with more than one optimizer (see [`crate::TrainStep`]) in one file, written
/// atomically. [`load_checkpoint`] reads it back.
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizers: &[(&str, &dyn Optimizer)],
    extra: &[(String, String)],
) -> Result<()> {
    let path = path.as_ref();
    let mut named = model.named_parameters();
    named.extend(model.named_buffers());
    let mut metadata = HashMap::from([
        ("format".to_string(), "wgrad".to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
    ]);
    metadata.extend(extra.iter().cloned());
    for (name, value) in model.named_counters() {
        metadata.insert(format!("{COUNTER_PREFIX}{name}"), value.to_string());
    }
    for (name, opt) in optimizers {
        let prefix = optimizer_prefix(name);
        metadata.insert(
            prefix.trim_end_matches('.').to_string(),
            opt.kind().to_string(),
        );
        named.extend(
            opt.state_dict()
                .into_iter()
                .map(|(n, t)| (format!("{prefix}{n}"), t)),
        );
    }
    realize_all(&named.iter().map(|(_, t)| t).collect::<Vec<_>>())?;
    let mut data = Vec::with_capacity(named.len());
    for (name, t) in &named {
        let bytes: Vec<u8> = t.to_vec()?.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push((name.clone(), t.shape().to_vec(), bytes));
    }
    let views = data
        .iter()
        .map(|(n, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| format_err(path, format!("tensor `{n}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| format_err(path, format!("cannot encode the weights: {e}")))?;
    write_atomically(path, &bytes)
}

/// Writes to a temporary file beside `path`, syncs it, then renames it over `path`, so a
/// crash leaves either the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Loads parameters and buffers saved by [`save`] into `model` (and the optimizer state into
/// `optimizer`, if given). A missing, extra, misshapen or non-f32 tensor, or a corrupt file,
/// is an error naming the tensor; the model is only changed when everything checks out.
pub fn load(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: Option<&mut dyn Optimizer>,
) -> Result<()> {
    load_with_metadata(path, model, optimizer).map(|_| ())
}

/// Like [`load`], returning the file's string metadata.
pub fn load_with_metadata(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: Option<&mut dyn Optimizer>,
) -> Result<HashMap<String, String>> {
    let mut optimizers: Vec<(&str, &mut dyn Optimizer)> =
        optimizer.map(|o| ("", o)).into_iter().collect();
    load_checkpoint(path, model, &mut optimizers)
}

/// Loads what [`save_checkpoint`] wrote: the model, and each optimizer's state from under
/// its name. Checked as [`load`] checks, before anything changes. Returns the metadata.
pub fn load_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizers: &mut [(&str, &mut dyn Optimizer)],
) -> Result<HashMap<String, String>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    load_checkpoint_bytes(path, &bytes, model, optimizers)
}

/// Like [`load_checkpoint`], from the bytes of such a file (one that another process read
/// and sent); `path` names it in errors.
pub fn load_checkpoint_bytes(
    path: &Path,
    bytes: &[u8],
    model: &dyn Module,
    optimizers: &mut [(&str, &mut dyn Optimizer)],
) -> Result<HashMap<String, String>> {
    let file = parse(path, bytes)?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| format_err(path, format!("unreadable header: {e}")))?;
    let meta = meta.metadata().clone().unwrap_or_default();

    // Format-1 files held one optimizer, unnamed.
    let unnamed = optimizers
        .iter()
        .find(|(n, _)| n.is_empty())
        .map(|(_, o)| &**o as &dyn Optimizer);
    let stored = Stored::new(&file, &meta, model, unnamed);
    let read = |name: &str, want: &[usize]| -> Result<Vec<f32>> {
        let (dtype, shape, values) = stored.get(name).ok_or_else(|| {
            format_err(
                path,
                format!("tensor `{name}` (shape {want:?}) is missing from the file"),
            )
        })?;
        if dtype != Dtype::F32 {
            return Err(format_err(
                path,
                format!("tensor `{name}` is {dtype:?}, expected F32"),
            ));
        }
        if shape != want {
            return Err(format_err(
                path,
                format!(
                    "tensor `{name}` has shape {shape:?} in the file but the model expects {want:?}"
                ),
            ));
        }
        Ok(values)
    };

    let params = model.named_parameters();
    let buffers = model.named_buffers();
    let mut expected: Vec<&str> = Vec::new();
    let mut param_values = Vec::new();
    for (name, t) in &params {
        param_values.push(read(name, t.shape())?);
        expected.push(name);
    }
    let mut buffer_values = Vec::new();
    for (name, t) in &buffers {
        buffer_values.push(read(name, t.shape())?);
        expected.push(name);
    }
    let counters = counter_tensors(&file, model);
    expected.extend(counters.iter().map(|(n, _)| n.as_str()));
    let mut extra: Vec<&str> = file
        .names()
        .into_iter()
        .filter(|n| !is_optimizer_state(n) && !expected.contains(n))
        .collect();
    if !extra.is_empty() {
        extra.sort();
        let shapes: Vec<String> = extra
            .iter()
            .map(|n| {
                format!(
                    "`{n}` {:?}",
                    file.tensor(n)
                        .map(|v| v.shape().to_vec())
                        .unwrap_or_default()
                )
            })
            .collect();
        return Err(format_err(
            path,
            format!(
                "the file has tensors the model does not: {}",
                shapes.join(", ")
            ),
        ));
    }

    let mut states = Vec::new();
    for (opt_name, opt) in optimizers.iter() {
        let prefix = optimizer_prefix(opt_name);
        let kind = meta.get(prefix.trim_end_matches('.')).ok_or_else(|| {
            let which = match *opt_name {
                "" => String::new(),
                n => format!(" for `{n}`"),
            };
            format_err(path, format!("the file holds no optimizer state{which}"))
        })?;
        if kind != opt.kind() {
            return Err(format_err(
                path,
                format!("the file holds {kind} state, not {}", opt.kind()),
            ));
        }
        let shapes: Vec<Vec<usize>> = opt.params().iter().map(|p| p.shape().to_vec()).collect();
        let mut state = Vec::new();
        for name in file.names() {
            let Some(key) = name.strip_prefix(&prefix) else {
                continue;
            };
            let want = match key
                .rsplit_once('.')
                .and_then(|(_, i)| i.parse::<usize>().ok())
            {
                Some(i) => shapes.get(i).cloned().ok_or_else(|| {
                    format_err(
                        path,
                        format!(
                            "tensor `{name}` refers to parameter {i}, the optimizer has {}",
                            shapes.len()
                        ),
                    )
                })?,
                None => vec![shapes.len()],
            };
            state.push((key.to_string(), want.clone(), read(name, &want)?));
        }
        states.push(state);
    }

    // Everything checked: apply.
    for ((_, p), v) in params.iter().zip(&param_values) {
        p.assign(&Tensor::from_slice(p.device(), v, p.shape())?)?;
    }
    for ((name, t), v) in buffers.iter().zip(&buffer_values) {
        model.set_buffer(name, Tensor::from_slice(t.device(), v, t.shape())?);
    }
    for (key, value) in &meta {
        if let (Some(name), Ok(v)) = (key.strip_prefix(COUNTER_PREFIX), value.parse::<u64>()) {
            model.set_counter(name, v);
        }
    }
    for (name, v) in &counters {
        model.set_counter(name, *v);
    }
    for ((_, opt), state) in optimizers.iter_mut().zip(states) {
        let device = opt.params().first().map(|p| p.device().clone());
        let mut map = HashMap::new();
        if let Some(device) = device {
            for (key, shape, values) in state {
                map.insert(key, Tensor::from_slice(&device, &values, &shape)?);
            }
        }
        opt.load_state_dict(&map);
    }
    Ok(meta)
}

/// One tensor of a safetensors file: its name, shape and element type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `lstm.weight_ih_l0`.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its element type, e.g. `F32`.
    pub dtype: String,
}

/// The tensors of a safetensors file (weights saved by wgrad or by PyTorch), by name.
pub fn inspect(path: impl AsRef<Path>) -> Result<Vec<TensorInfo>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let file = parse(path, &bytes)?;
    let mut out: Vec<TensorInfo> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| TensorInfo {
            name,
            shape: view.shape().to_vec(),
            dtype: format!("{:?}", view.dtype()),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What [`load_state_dict`] matched, left out and refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Parameters and buffers of the model that were loaded.
    pub loaded: Vec<String>,
    /// Parameters and buffers of the model the file does not hold.
    pub missing: Vec<String>,
    /// Tensors of the file the model does not have (optimizer state aside).
    pub unexpected: Vec<String>,
    /// Names in both whose shapes or element types differ: (name, in the file, in the model).
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

/// Loads the parameters and buffers of `model` that `path` holds by name, as PyTorch's
/// `load_state_dict`. With `strict`, anything missing, unexpected or mismatched is an error
/// naming it and nothing is changed; without it, what matches is loaded (e.g. a pretrained
/// encoder into a model with a new head) and the report lists the rest.
pub fn load_state_dict(
    path: impl AsRef<Path>,
    model: &dyn Module,
    strict: bool,
) -> Result<LoadReport> {
    let path = path.as_ref();
    if strict {
        load(path, model, None)?;
        let mut report = LoadReport::default();
        report
            .loaded
            .extend(model.named_parameters().into_iter().map(|(n, _)| n));
        report
            .loaded
            .extend(model.named_buffers().into_iter().map(|(n, _)| n));
        return Ok(report);
    }
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let file = parse(path, &bytes)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| format_err(path, format!("unreadable header: {e}")))?;
    let stored = Stored::new(
        &file,
        &meta.metadata().clone().unwrap_or_default(),
        model,
        None,
    );
    let mut report = LoadReport::default();
    let mut fits = Vec::new();
    let params = model.named_parameters();
    let buffers = model.named_buffers();
    for (name, t) in params.iter().chain(&buffers) {
        match stored.get(name) {
            None => report.missing.push(name.clone()),
            Some((dtype, shape, _)) if dtype != Dtype::F32 || shape != t.shape() => report
                .mismatched
                .push((name.clone(), shape, t.shape().to_vec())),
            Some((_, _, values)) => fits.push((name.clone(), t.clone(), values)),
        }
    }
    let counters = counter_tensors(&file, model);
    let known: Vec<&str> = params
        .iter()
        .chain(&buffers)
        .map(|(n, _)| n.as_str())
        .chain(counters.iter().map(|(n, _)| n.as_str()))
        .collect();
    report.unexpected = file
        .names()
        .into_iter()
        .filter(|n| !is_optimizer_state(n) && !known.contains(n))
        .map(str::to_string)
        .collect();
    report.unexpected.sort();
    for (name, v) in &counters {
        model.set_counter(name, *v);
    }
    let is_buffer = |n: &str| buffers.iter().any(|(b, _)| b == n);
    for (name, t, v) in fits {
        let value = Tensor::from_slice(t.device(), &v, t.shape())?;
        if is_buffer(&name) {
            model.set_buffer(&name, value);
        } else {
            t.assign(&value)?;
        }
        report.loaded.push(name);
    }
    Ok(report)
}
