//! Data loading: the IDX format (plain or gzip), MNIST directories, seeded shuffling and
//! batching. Anything wrong with a file is an [`Error`] naming the file, never a panic.

use std::io::Read;
use std::path::{Path, PathBuf};

use wgrad_graph::{Device, Error, Result, Tensor};

use crate::rng::Rng;

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Clone, Debug)]
pub struct Idx {
    /// Size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

fn format_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Parses IDX bytes (already decompressed). Only unsigned-byte data (type 0x08) is supported,
/// which is what MNIST uses.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<Idx> {
    if bytes.len() < 4 {
        return Err(format_err(
            path,
            format!("file is truncated: {} bytes, no IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format_err(
            path,
            format!(
                "not an IDX file: magic number starts {:02x} {:02x}, expected 00 00",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format_err(
            path,
            format!(
                "unsupported IDX data type 0x{:02x}; only unsigned bytes (0x08) are supported",
                bytes[2]
            ),
        ));
    }
    let rank = bytes[3] as usize;
    if rank == 0 {
        return Err(format_err(path, "IDX header declares zero dimensions"));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(format_err(
            path,
            format!(
                "file is truncated: the header needs {header} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|d| {
            let b = &bytes[4 + 4 * d..8 + 4 * d];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("dimensions {dims:?} are too large")))?;
    let body = &bytes[header..];
    if body.len() < expected {
        return Err(format_err(
            path,
            format!(
                "file is truncated: dimensions {dims:?} need {expected} data bytes, found {}",
                body.len()
            ),
        ));
    }
    if body.len() > expected {
        return Err(format_err(
            path,
            format!(
                "{} unexpected bytes after the data of dimensions {dims:?}",
                body.len() - expected
            ),
        ));
    }
    Ok(Idx {
        dims,
        data: body.to_vec(),
    })
}

/// Reads an IDX file, decompressing it first when it is gzip.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let raw = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_idx(path, raw)
}

/// Parses IDX bytes, gzip-compressed or not, that came from `path` (a file or, in a
/// browser, a URL); errors name it.
pub fn decode_idx(path: &Path, raw: Vec<u8>) -> Result<Idx> {
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format_err(path, format!("gzip data is corrupt or truncated: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(path, &bytes)
}

/// Images scaled to `[0, 1]` with their `u32` labels.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// `len × features` values, row-major.
    pub images: Vec<f32>,
    /// Class of each sample.
    pub labels: Vec<u32>,
    /// Shape of one sample, e.g. `[1, 28, 28]`.
    pub sample_shape: Vec<usize>,
    /// Number of classes (labels are below it).
    pub classes: usize,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per sample.
    pub fn features(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Checks that the images hold `len × features` values and every label is below
    /// `classes`.
    pub fn validate(&self) -> Result<()> {
        let want = self.len() * self.features();
        if self.images.len() != want {
            return Err(Error::Data(format!(
                "dataset has {} values for {} samples of shape {:?} (expected {want})",
                self.images.len(),
                self.len(),
                self.sample_shape
            )));
        }
        if let Some(bad) = self.labels.iter().find(|&&l| l as usize >= self.classes) {
            return Err(Error::Data(format!(
                "label {bad} is not below the {} classes",
                self.classes
            )));
        }
        Ok(())
    }
}

/// The MNIST training and test splits.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// The training split.
    pub train: Dataset,
    /// The test split.
    pub test: Dataset,
}

/// Finds `name` or `name.gz` in `dir`.
fn locate(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Io {
        path: dir.join(format!("{name}.gz")),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("neither {name} nor {name}.gz exists in this directory"),
        ),
    })
}

fn load_split(dir: &Path, images: &str, labels: &str) -> Result<Dataset> {
    let ip = locate(dir, images)?;
    let lp = locate(dir, labels)?;
    split_from((&ip, read_idx(&ip)?), (&lp, read_idx(&lp)?))
}

/// A split from its images and labels, checked against each other.
fn split_from((ip, img): (&Path, Idx), (lp, lab): (&Path, Idx)) -> Result<Dataset> {
    if img.dims.len() != 3 {
        return Err(format_err(
            ip,
            format!(
                "expected images [n, rows, cols], found dimensions {:?}",
                img.dims
            ),
        ));
    }
    if lab.dims.len() != 1 {
        return Err(format_err(
            lp,
            format!("expected labels [n], found dimensions {:?}", lab.dims),
        ));
    }
    if img.dims[0] != lab.dims[0] {
        return Err(format_err(
            lp,
            format!(
                "{} labels for {} images in {}",
                lab.dims[0],
                img.dims[0],
                ip.display()
            ),
        ));
    }
    if let Some(bad) = lab.data.iter().find(|&&l| l > 9) {
        return Err(format_err(lp, format!("label {bad} is not a digit 0-9")));
    }
    Ok(Dataset {
        images: img.data.iter().map(|&b| b as f32 / 255.0).collect(),
        labels: lab.data.iter().map(|&l| l as u32).collect(),
        sample_shape: vec![1, img.dims[1], img.dims[2]],
        classes: 10,
    })
}

impl Mnist {
    /// Loads the four standard MNIST files (plain or `.gz`) from `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        Ok(Mnist {
            train: load_split(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?,
            test: load_split(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?,
        })
    }

    /// MNIST from the contents of its four files (plain or gzip), as a page fetches them:
    /// `(name, bytes)` of the training images and labels, then the test images and labels;
    /// errors name the file.
    pub fn from_bytes(files: [(&str, Vec<u8>); 4]) -> Result<Mnist> {
        let [ti, tl, vi, vl] = files.map(|(name, bytes)| (PathBuf::from(name), bytes));
        let idx = |(path, bytes): (PathBuf, Vec<u8>)| -> Result<(PathBuf, Idx)> {
            let idx = decode_idx(&path, bytes)?;
            Ok((path, idx))
        };
        let (ti, tl, vi, vl) = (idx(ti)?, idx(tl)?, idx(vi)?, idx(vl)?);
        Ok(Mnist {
            train: split_from((&ti.0, ti.1), (&tl.0, tl.1))?,
            test: split_from((&vi.0, vi.1), (&vl.0, vl.1))?,
        })
    }
}

/// One batch on the host.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `len × features` values, row-major.
    pub images: Vec<f32>,
    /// Class of each sample.
    pub labels: Vec<u32>,
    /// Shape of one sample.
    pub sample_shape: Vec<usize>,
}

impl Batch {
    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for a batch without samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Uploads the batch: images `[n, ...sample_shape]` and labels `[n]`.
    pub fn to_device(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let mut shape = vec![self.len()];
        shape.extend(&self.sample_shape);
        Ok((
            Tensor::from_slice(device, &self.images, &shape)?,
            Tensor::from_u32(device, &self.labels, &[self.len()])?,
        ))
    }
}

/// Splits a dataset into batches, reshuffled every epoch from a seed.
#[derive(Clone, Debug)]
pub struct DataLoader<'a> {
    data: &'a Dataset,
    /// Samples per batch (the last batch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// Whether each epoch visits the samples in a new seeded order.
    pub shuffle: bool,
    /// Seed of the shuffling.
    pub seed: u64,
    /// Whether to skip a last, smaller batch.
    pub drop_last: bool,
}

impl<'a> DataLoader<'a> {
    /// Batches of `batch_size` in dataset order; see [`DataLoader::shuffled`].
    #[track_caller]
    pub fn new(data: &'a Dataset, batch_size: usize) -> Self {
        assert!(batch_size > 0, "DataLoader: batch size must be positive");
        DataLoader {
            data,
            batch_size,
            shuffle: false,
            seed: 0,
            drop_last: false,
        }
    }

    /// Shuffles with `seed` (a different order each epoch, the same for the same seed).
    pub fn shuffled(mut self, seed: u64) -> Self {
        self.shuffle = true;
        self.seed = seed;
        self
    }

    /// Number of batches per epoch.
    pub fn len(&self) -> usize {
        if self.drop_last {
            self.data.len() / self.batch_size
        } else {
            self.data.len().div_ceil(self.batch_size)
        }
    }

    /// True when an epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batches of epoch `epoch`.
    pub fn epoch(&self, epoch: u64) -> impl Iterator<Item = Batch> + 'a {
        let order = epoch_order(self.data.len(), self.shuffle.then_some(self.seed), epoch);
        let (data, bs, batches) = (self.data, self.batch_size, self.len());
        (0..batches).map(move |b| {
            let idx = &order[b * bs..((b + 1) * bs).min(order.len())];
            let f = data.features();
            let mut images = Vec::with_capacity(idx.len() * f);
            for &i in idx {
                images.extend_from_slice(&data.images[i * f..(i + 1) * f]);
            }
            Batch {
                images,
                labels: idx.iter().map(|&i| data.labels[i]).collect(),
                sample_shape: data.sample_shape.clone(),
            }
        })
    }
}

/// The order samples `0..len` are visited in during `epoch`: as they are, or shuffled from
/// `seed` (a different order each epoch, the same for the same seed).
pub fn epoch_order(len: usize, seed: Option<u64>, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if let Some(seed) = seed {
        Rng::new(seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15)).shuffle(&mut order);
    }
    order
}

/// What the targets of a data set are, which decides the trainer's default loss and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// `u32` class ids below this many classes: cross-entropy, accuracy and a confusion matrix.
    Classes(usize),
    /// 0/1 `f32` targets for one logit each: BCE with logits, and accuracy, precision, recall
    /// and F1 at 0.5.
    Binary,
    /// Any `f32` values (regression, a reconstruction): mean squared error, no accuracy.
    Values,
}

/// Samples the [`Trainer`](crate::Trainer) can batch: images with class ids ([`Dataset`]),
/// token sequences with 0/1 targets ([`Sequences`](crate::Sequences)), or any data that
/// uploads inputs and targets for a list of sample indices.
pub trait Samples {
    /// Number of samples.
    fn len(&self) -> usize;

    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples at `picks` on `device`: inputs `[picks, ...]` and targets.
    fn batch(&self, device: &Device, picks: &[usize]) -> Result<(Tensor, Tensor)>;

    /// What the targets are.
    fn targets(&self) -> Targets;

    /// The shape of one input, to check the data against a model before training.
    fn input_shape(&self) -> Option<Vec<usize>> {
        None
    }

    /// Checks the data, and that a model giving `outputs` values per sample (the last axis
    /// of its output) fits the targets.
    fn check(&self, outputs: Option<usize>) -> Result<()> {
        let _ = outputs;
        Ok(())
    }
}

impl Samples for Dataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn batch(&self, device: &Device, picks: &[usize]) -> Result<(Tensor, Tensor)> {
        let f = self.features();
        let mut images = Vec::with_capacity(picks.len() * f);
        for &i in picks {
            images.extend_from_slice(&self.images[i * f..(i + 1) * f]);
        }
        let batch = Batch {
            images,
            labels: picks.iter().map(|&i| self.labels[i]).collect(),
            sample_shape: self.sample_shape.clone(),
        };
        batch.to_device(device)
    }

    fn targets(&self) -> Targets {
        Targets::Classes(self.classes)
    }

    fn input_shape(&self) -> Option<Vec<usize>> {
        Some(self.sample_shape.clone())
    }

    fn check(&self, outputs: Option<usize>) -> Result<()> {
        self.validate()?;
        let Some(outputs) = outputs else {
            return Ok(());
        };
        if let Some(&label) = self.labels.iter().max().filter(|&&l| l as usize >= outputs) {
            return Err(Error::Data(format!(
                "the model gives {outputs} outputs per sample but the data has labels up to \
                 {label} ({} classes); make the last layer {} wide",
                self.classes, self.classes
            )));
        }
        Ok(())
    }
}

/// A dataset's images as both inputs and targets, to train an autoencoder: `Targets::Values`
/// (mean squared error by default).
pub struct Reconstruct<'a>(pub &'a Dataset);

impl Samples for Reconstruct<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn batch(&self, device: &Device, picks: &[usize]) -> Result<(Tensor, Tensor)> {
        let (x, _) = Samples::batch(self.0, device, picks)?;
        Ok((x.clone(), x))
    }

    fn targets(&self) -> Targets {
        Targets::Values
    }

    fn input_shape(&self) -> Option<Vec<usize>> {
        Some(self.0.sample_shape.clone())
    }

    fn check(&self, _outputs: Option<usize>) -> Result<()> {
        self.0.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    #[test]
    fn mnist_from_fetched_bytes_is_mnist_from_files() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
        let read = |name: &'static str| (name, std::fs::read(dir.join(name)).unwrap());
        let fetched = Mnist::from_bytes([
            read("train-images-idx3-ubyte.gz"),
            read("train-labels-idx1-ubyte.gz"),
            read("t10k-images-idx3-ubyte.gz"),
            read("t10k-labels-idx1-ubyte.gz"),
        ])
        .unwrap();
        let loaded = Mnist::load(&dir).unwrap();
        assert_eq!(fetched.train.labels, loaded.train.labels);
        assert_eq!(fetched.test.images, loaded.test.images);
        // Labels and images swapped: an error naming the file.
        let e = Mnist::from_bytes([
            read("train-labels-idx1-ubyte.gz"),
            read("train-images-idx3-ubyte.gz"),
            read("t10k-images-idx3-ubyte.gz"),
            read("t10k-labels-idx1-ubyte.gz"),
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("train-labels-idx1-ubyte.gz"), "{e}");
    }

    #[test]
    fn parses_a_valid_file() {
        let p = Path::new("x");
        let idx = parse_idx(p, &idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(idx.dims, vec![2, 3]);
        assert_eq!(idx.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn bad_files_are_named_errors() {
        let p = Path::new("digits.idx");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "truncated"),
            (vec![1, 2, 8, 1, 0, 0, 0, 1, 5], "magic"),
            (vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 5], "data type"),
            (idx_bytes(&[2, 3], &[1, 2, 3])[..10].to_vec(), "truncated"),
            (idx_bytes(&[2, 3], &[1, 2, 3]), "truncated"),
            (idx_bytes(&[1], &[1, 2]), "unexpected bytes"),
        ];
        for (bytes, want) in cases {
            let e = parse_idx(p, &bytes).unwrap_err().to_string();
            assert!(e.contains("digits.idx") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn missing_and_corrupt_gzip_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("wgrad-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = Mnist::load(&dir).unwrap_err().to_string();
        assert!(e.contains("train-images-idx3-ubyte"), "{e}");
        let bad = dir.join("bad.gz");
        std::fs::write(&bad, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
        let e = read_idx(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.gz") && e.contains("gzip"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loader_batches_cover_the_data_once_per_epoch() {
        let data = Dataset {
            images: (0..10).map(|i| i as f32).collect(),
            labels: (0..10).collect(),
            sample_shape: vec![1],
            classes: 10,
        };
        let loader = DataLoader::new(&data, 4).shuffled(7);
        assert_eq!(loader.len(), 3);
        let mut seen: Vec<u32> = loader.epoch(0).flat_map(|b| b.labels).collect();
        let again: Vec<u32> = loader.epoch(0).flat_map(|b| b.labels).collect();
        let other: Vec<u32> = loader.epoch(1).flat_map(|b| b.labels).collect();
        assert_eq!(seen, again);
        assert_ne!(seen, other);
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }
}
