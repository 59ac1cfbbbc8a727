//! Text data: a tokenizer, a vocabulary, padding to a length, labelled sentence files (the
//! bundled `data/sentiment` layout, and the `aclImdb` layout of the full IMDB reviews) and a
//! dataset of token sequences with float targets. Anything wrong with a file is an [`Error`]
//! naming the file and line, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use wgrad_graph::{Device, Error, Result, Tensor};

/// Lowercase words: the runs of `[a-z0-9']` in the lowercased text.
pub fn tokenize(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Token ids: 0 is padding, 1 an unknown token, then the tokens of the training texts by
/// count (most frequent first) and then alphabetically.
#[derive(Clone, Debug)]
pub struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// The id of padding.
    pub const PAD: u32 = 0;
    /// The id of a token not in the vocabulary.
    pub const UNK: u32 = 1;

    /// The vocabulary of `texts` (already tokenized): tokens seen at least `min_count` times,
    /// at most `max_vocab` ids in all (padding and unknown included, so never fewer than 2)
    /// when given.
    pub fn build<'a>(
        texts: impl IntoIterator<Item = &'a [String]>,
        min_count: usize,
        max_vocab: Option<usize>,
    ) -> Vocab {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for text in texts {
            for token in text {
                *counts.entry(token.as_str()).or_default() += 1;
            }
        }
        let mut ranked: Vec<(&str, usize)> = counts
            .into_iter()
            .filter(|&(_, n)| n >= min_count.max(1))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut tokens = vec!["<pad>".to_string(), "<unk>".to_string()];
        let room = max_vocab.map_or(usize::MAX, |m| m.saturating_sub(2));
        tokens.extend(ranked.into_iter().take(room).map(|(t, _)| t.to_string()));
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Vocab { tokens, ids }
    }

    /// Number of ids, padding and unknown included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Never true: padding and unknown are always there.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of a token ([`Vocab::UNK`] when it is not in the vocabulary).
    pub fn id(&self, token: &str) -> u32 {
        self.ids.get(token).copied().unwrap_or(Vocab::UNK)
    }

    /// The token of an id, if there is one.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The ids of tokens.
    pub fn encode(&self, tokens: &[String]) -> Vec<u32> {
        tokens.iter().map(|t| self.id(t)).collect()
    }
}

/// Where padding and truncation happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Keras' default: keep the last tokens, pad at the front.
    Pre,
    /// Keep the first tokens, pad at the end; the length says where the tokens stop.
    Post,
}

/// `ids` cut or padded to `len` as `padding` says, and how many of the result are tokens.
pub fn pad(ids: &[u32], len: usize, padding: Padding) -> (Vec<u32>, usize) {
    let kept = ids.len().min(len);
    let mut out = vec![Vocab::PAD; len];
    match padding {
        Padding::Pre => out[len - kept..].copy_from_slice(&ids[ids.len() - kept..]),
        Padding::Post => out[..kept].copy_from_slice(&ids[..kept]),
    }
    (out, kept)
}

/// One labelled text.
#[derive(Clone, Debug, PartialEq)]
pub struct Labelled {
    /// The text.
    pub text: String,
    /// Its label: 0.0 or 1.0.
    pub label: f32,
}

fn format_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The lines `text<TAB>label` of `path`, labels 0 or 1. An empty file, invalid UTF-8, a line
/// without a tab or a label other than 0 and 1 is an error naming the file and line.
pub fn read_labelled(path: &Path) -> Result<Vec<Labelled>> {
    let bytes = read(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        format_err(path, format!("line {line}: not valid UTF-8"))
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((sentence, label)) = line.rsplit_once('\t') else {
            return Err(format_err(
                path,
                format!("line {}: no tab between the text and its label", i + 1),
            ));
        };
        let label = match label.trim() {
            "0" => 0.0,
            "1" => 1.0,
            other => {
                return Err(format_err(
                    path,
                    format!("line {}: the label is {other:?}; it must be 0 or 1", i + 1),
                ))
            }
        };
        out.push(Labelled {
            text: sentence.to_string(),
            label,
        });
    }
    if out.is_empty() {
        return Err(format_err(path, "the file holds no labelled lines"));
    }
    Ok(out)
}

/// Labelled sentences split into training and test texts.
#[derive(Clone, Debug)]
pub struct Sentiment {
    /// Training texts.
    pub train: Vec<Labelled>,
    /// Test texts.
    pub test: Vec<Labelled>,
}

impl Sentiment {
    /// Reads `dir`: either files `*_labelled.txt` of `text<TAB>label` lines (the bundled
    /// layout; in each file, the i-th labelled line, blank lines not counted, is a test text
    /// when i % 5 == 4, else a training text),
    /// or the `aclImdb` layout (`train/pos/*.txt`, `train/neg/*.txt`, `test/...`).
    pub fn load(dir: impl AsRef<Path>) -> Result<Sentiment> {
        let dir = dir.as_ref();
        if dir.join("train").join("pos").is_dir() {
            return Ok(Sentiment {
                train: read_reviews(&dir.join("train"))?,
                test: read_reviews(&dir.join("test"))?,
            });
        }
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with("_labelled.txt"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format_err(
                dir,
                "no *_labelled.txt files and no aclImdb layout (train/pos, train/neg)",
            ));
        }
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for file in files {
            for (i, item) in read_labelled(&file)?.into_iter().enumerate() {
                if i % 5 == 4 {
                    test.push(item);
                } else {
                    train.push(item);
                }
            }
        }
        Ok(Sentiment { train, test })
    }
}

/// The reviews of `dir/pos` (label 1) and `dir/neg` (label 0), each folder in name order.
fn read_reviews(dir: &Path) -> Result<Vec<Labelled>> {
    let mut out = Vec::new();
    for (sub, label) in [("pos", 1.0), ("neg", 0.0)] {
        let folder = dir.join(sub);
        let entries = std::fs::read_dir(&folder).map_err(|source| Error::Io {
            path: folder.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "txt"))
        {
            let bytes = read(&file)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format_err(&file, "line 1: not valid UTF-8"))?;
            out.push(Labelled { text, label });
        }
    }
    if out.is_empty() {
        return Err(format_err(dir, "no reviews in pos/ or neg/"));
    }
    Ok(out)
}

/// Token sequences of one length with float targets, ready for batches.
#[derive(Clone, Debug)]
pub struct Sequences {
    /// The sequences, each `len` ids.
    pub ids: Vec<Vec<u32>>,
    /// How many ids of each are tokens (the rest padding).
    pub lengths: Vec<usize>,
    /// One target per sequence.
    pub targets: Vec<f32>,
    /// The length of every sequence.
    pub len: usize,
}

impl Sequences {
    /// `texts` tokenized, encoded with `vocab` and padded to `len` as `padding` says.
    pub fn new(texts: &[Labelled], vocab: &Vocab, len: usize, padding: Padding) -> Sequences {
        let (mut ids, mut lengths) = (Vec::new(), Vec::new());
        for t in texts {
            let (padded, kept) = pad(&vocab.encode(&tokenize(&t.text)), len, padding);
            ids.push(padded);
            lengths.push(kept);
        }
        Sequences {
            ids,
            lengths,
            targets: texts.iter().map(|t| t.label).collect(),
            len,
        }
    }

    /// Number of sequences.
    pub fn count(&self) -> usize {
        self.ids.len()
    }

    /// The sequences at `picks` as `u32` ids `[batch, len]` and their targets `[batch]`.
    pub fn batch(&self, device: &Device, picks: &[usize]) -> Result<(Tensor, Tensor)> {
        let ids: Vec<u32> = picks
            .iter()
            .flat_map(|&i| self.ids[i].iter().copied())
            .collect();
        let targets: Vec<f32> = picks.iter().map(|&i| self.targets[i]).collect();
        Ok((
            Tensor::from_u32(device, &ids, &[picks.len(), self.len])?,
            Tensor::from_slice(device, &targets, &[picks.len()])?,
        ))
    }
}

impl crate::data::Samples for Sequences {
    fn len(&self) -> usize {
        self.count()
    }

    fn batch(&self, device: &Device, picks: &[usize]) -> Result<(Tensor, Tensor)> {
        Sequences::batch(self, device, picks)
    }

    fn targets(&self) -> crate::data::Targets {
        crate::data::Targets::Binary
    }

    fn check(&self, _outputs: Option<usize>) -> Result<()> {
        match self.targets.iter().find(|&&t| t != 0.0 && t != 1.0) {
            Some(bad) => Err(Error::Data(format!(
                "a target is {bad}; binary targets are 0 or 1"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_vocabulary_and_padding() {
        assert_eq!(
            tokenize("Don't STOP-me now, 2 times!"),
            ["don't", "stop", "me", "now", "2", "times"]
        );
        let texts = [tokenize("b a b c"), tokenize("c b d")];
        let vocab = Vocab::build(texts.iter().map(|t| &t[..]), 1, None);
        // b (3), c (2), then a and d (1) alphabetically.
        let order: Vec<&str> = (0..vocab.len() as u32)
            .map(|i| vocab.token(i).unwrap())
            .collect();
        assert_eq!(order, ["<pad>", "<unk>", "b", "c", "a", "d"]);
        assert_eq!(vocab.encode(&tokenize("d zzz b")), [5, Vocab::UNK, 2]);
        let small = Vocab::build(texts.iter().map(|t| &t[..]), 2, None);
        assert_eq!(small.len(), 4);
        assert_eq!(
            Vocab::build(texts.iter().map(|t| &t[..]), 1, Some(3)).len(),
            3
        );
        assert_eq!(pad(&[7, 8, 9], 2, Padding::Pre), (vec![8, 9], 2));
        assert_eq!(pad(&[7, 8, 9], 5, Padding::Pre), (vec![0, 0, 7, 8, 9], 3));
        assert_eq!(pad(&[7, 8, 9], 5, Padding::Post), (vec![7, 8, 9, 0, 0], 3));
        assert_eq!(pad(&[7, 8, 9], 2, Padding::Post), (vec![7, 8], 2));
    }

    #[test]
    fn bad_text_files_are_errors_naming_file_and_line() {
        let dir = std::env::temp_dir().join(format!("wgrad-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, &[u8], &str); 4] = [
            ("tab", b"good\t1\nno tab here\n", "line 2: no tab"),
            ("label", b"good\t1\nbad\t2\n", "line 2: the label is \"2\""),
            ("utf8", b"good\t1\nbad \xff\t0\n", "line 2: not valid UTF-8"),
            ("empty", b"", "no labelled lines"),
        ];
        for (name, bytes, want) in cases {
            let path = dir.join(format!("{name}_labelled.txt"));
            std::fs::write(&path, bytes).unwrap();
            let e = read_labelled(&path).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(name), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
