//! The CIFAR-10 binary format: `data_batch_1.bin` … `data_batch_5.bin` and
//! `test_batch.bin`, each a run of 3,073-byte records: one label byte (0–9), then a 32 × 32
//! image as 1,024 red, 1,024 green and 1,024 blue bytes, rows top to bottom.

use std::path::{Path, PathBuf};

use wgrad_graph::{Error, Result};

use crate::data::Dataset;

/// The classes of CIFAR-10, by label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const RECORD: usize = 1 + 3 * 32 * 32;

/// CIFAR-10's training and test splits: images `[3, 32, 32]` in [0, 1], labels 0–9.
pub struct Cifar10 {
    /// The five training batches, in order.
    pub train: Dataset,
    /// The test batch.
    pub test: Dataset,
}

impl Cifar10 {
    /// Reads the standard binary batches from `dir`. A missing file is an error naming it;
    /// a file that is not whole records, is empty, or holds a label past 9 is an error
    /// naming the file and the record.
    pub fn load(dir: impl AsRef<Path>) -> Result<Cifar10> {
        let dir = dir.as_ref();
        let names: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).collect();
        let mut train = empty();
        for name in &names {
            read_batch(&dir.join(name), &mut train)?;
        }
        let mut test = empty();
        read_batch(&dir.join("test_batch.bin"), &mut test)?;
        Ok(Cifar10 { train, test })
    }
}

fn empty() -> Dataset {
    Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        sample_shape: vec![3, 32, 32],
        classes: 10,
    }
}

fn format_err(path: &Path, message: String) -> Error {
    Error::Format {
        path: PathBuf::from(path),
        message,
    }
}

/// Appends the records of the batch file at `path` to `into`.
pub fn read_batch(path: &Path, into: &mut Dataset) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(format_err(path, "the file is empty".into()));
    }
    if !bytes.len().is_multiple_of(RECORD) {
        return Err(format_err(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte records (label and 32 × 32 × 3 \
                 image): truncated, or not a CIFAR-10 binary batch",
                bytes.len()
            ),
        ));
    }
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = record[0];
        if label > 9 {
            return Err(format_err(
                path,
                format!("record {i} has label {label}; CIFAR-10 labels are 0-9"),
            ));
        }
        into.labels.push(u32::from(label));
        into.images
            .extend(record[1..].iter().map(|&b| f32::from(b) / 255.0));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch file of `labels.len()` records whose pixel bytes count up from the label.
    fn write(path: &Path, labels: &[u8]) {
        let mut bytes = Vec::new();
        for &l in labels {
            bytes.push(l);
            bytes.extend((0..3072).map(|j| (j as u8).wrapping_add(l)));
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn reads_the_binary_batches_and_names_bad_files() {
        let dir = std::env::temp_dir().join(format!("wgrad-cifar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 1..=5 {
            write(&dir.join(format!("data_batch_{i}.bin")), &[i, 9 - i]);
        }
        write(&dir.join("test_batch.bin"), &[3]);
        let data = Cifar10::load(&dir).unwrap();
        assert_eq!(data.train.labels, [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]);
        assert_eq!(data.test.labels, [3]);
        assert_eq!(data.train.sample_shape, [3, 32, 32]);
        assert_eq!(data.train.images.len(), 10 * 3072);
        // Record 1 of batch 1 (label 8): red (0, 0) is byte 8, green (0, 0) is byte
        // 1024 + 8, blue (31, 31) is byte 3071 + 8, all mod 256.
        let second = &data.train.images[3072..2 * 3072];
        assert_eq!(second[0], 8.0 / 255.0);
        assert_eq!(second[1024], ((1024 + 8) % 256) as f32 / 255.0);
        assert_eq!(second[3071], ((3071 + 8) % 256) as f32 / 255.0);
        assert_eq!(data.test.images[5], 8.0 / 255.0);

        let message = |e: Error| e.to_string();
        // Truncated.
        let path = dir.join("test_batch.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        let e = message(Cifar10::load(&dir).err().unwrap());
        assert!(
            e.contains("test_batch.bin") && e.contains("3072 bytes"),
            "{e}"
        );
        // A label past 9.
        write(&path, &[1, 12]);
        let e = message(Cifar10::load(&dir).err().unwrap());
        assert!(e.contains("record 1") && e.contains("label 12"), "{e}");
        // Empty.
        std::fs::write(&path, b"").unwrap();
        let e = message(Cifar10::load(&dir).err().unwrap());
        assert!(e.contains("empty"), "{e}");
        // Missing.
        std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
        let e = message(Cifar10::load(&dir).err().unwrap());
        assert!(e.contains("data_batch_3.bin"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
