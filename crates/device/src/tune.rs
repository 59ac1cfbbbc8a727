//! Kernel choices measured rather than assumed: where several kernels can run the same work
//! (a matrix product: uniform windows, wide or square workgroups, workgroup-memory tiles), the
//! first work of each shape class times every candidate once and keeps the fastest. Choices
//! are kept for the process and on disk, keyed by adapter, driver and wgrad version (and, for a
//! software adapter, the host processor), so a warm cache measures nothing.
//!
//! - `WGRAD_AUTOTUNE=0`: no measuring; the built-in rules choose (as with an empty budget).
//! - `WGRAD_CACHE_DIR`: where choices are kept (default `$XDG_CACHE_HOME/wgrad`, else
//!   `~/.cache/wgrad`); `WGRAD_CACHE_DIR=` (empty) keeps them in memory only.
//! - Measuring stops for the process once it has taken [`BUDGET`]. A class whose warm-up
//!   shows its candidates would pass the time left keeps the built-in rule for the process,
//!   and for good (on disk) when they would pass the whole budget. Candidates are tried in
//!   order while the time left allows three more runs at the best pace so far; the best of
//!   those tried is kept.
//!
//! `RUST_LOG=wgrad=info` logs each choice with the times that made it.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The most time one process spends measuring.
pub const BUDGET: Duration = Duration::from_secs(3);

/// The host processor's model and the vector extensions it has, for keying the choices of
/// software adapters.
fn host_processor() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[cfg(target_arch = "x86_64")]
    let vector = if std::arch::is_x86_feature_detected!("avx512f") {
        "avx512f"
    } else if std::arch::is_x86_feature_detected!("avx2") {
        "avx2"
    } else {
        "sse"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let vector = "";
    format!("{model} {vector}").trim_end().to_string()
}

/// The kernel choices of one context: measured, loaded from disk, or pinned.
pub struct Tuning {
    enabled: bool,
    /// The file choices are kept in, and this adapter's key in it.
    file: Option<(PathBuf, String)>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Choice by class key, as loaded or measured.
    choices: HashMap<String, String>,
    loaded: bool,
    spent: Duration,
    /// Where set, every class whose candidates include it takes it.
    pinned: Option<String>,
}

/// Where a choice came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Taken from earlier measurements (this process or the cache file).
    Known(String),
    /// To be measured now, within the time left.
    Measure(Duration),
    /// The built-in rule decides: measuring is off or its budget spent.
    Rule,
}

impl Tuning {
    /// Settings from the environment for the adapter `info` describes.
    pub fn from_env(info: &wgpu::AdapterInfo) -> Tuning {
        // A browser has no clock for measuring (`Instant`) and no files to keep choices in.
        let enabled = !cfg!(target_arch = "wasm32")
            && std::env::var("WGRAD_AUTOTUNE").map_or(true, |v| v != "0");
        let dir = match std::env::var("WGRAD_CACHE_DIR") {
            Ok(d) if d.trim().is_empty() => None,
            Ok(d) => Some(PathBuf::from(d)),
            Err(_) => std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|d| d.join("wgrad")),
        };
        let mut adapter = format!(
            "{} | {:?} {:?} | {} {} | wgrad {}",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info,
            env!("CARGO_PKG_VERSION")
        );
        // A software adapter's speed is the host processor's: llvmpipe names only its vector
        // width, the same on processors whose best kernels differ.
        if info.device_type == wgpu::DeviceType::Cpu {
            adapter = format!("{adapter} | {}", host_processor());
        }
        let adapter = adapter.replace(['\t', '\n'], " ");
        Tuning {
            enabled,
            file: dir.map(|d| (d.join("tuning.tsv"), adapter)),
            state: Mutex::default(),
        }
    }

    /// The position among `candidates` of the pinned choice, if it is one of them.
    pub fn pinned(&self, candidates: &[&str]) -> Option<usize> {
        let state = self.lock();
        let pinned = state.pinned.as_deref()?;
        candidates.iter().position(|&c| c == pinned)
    }

    /// How the choice for class `key` among `candidates` is made.
    pub fn choice(&self, key: &str, candidates: &[&str]) -> Choice {
        let mut state = self.lock();
        if !self.enabled {
            return Choice::Rule;
        }
        if !state.loaded {
            state.loaded = true;
            self.load(&mut state);
        }
        match state.choices.get(key) {
            Some(c) if candidates.contains(&c.as_str()) => Choice::Known(c.clone()),
            _ if state.spent >= BUDGET => Choice::Rule,
            _ => Choice::Measure(BUDGET - state.spent),
        }
    }

    /// Keeps `choice` for class `key`, measured in `spent`, and writes it to the cache file.
    pub fn keep(&self, key: &str, choice: &str, spent: Duration) {
        let mut state = self.lock();
        state.spent += spent;
        state.choices.insert(key.to_string(), choice.to_string());
        if let Some((path, adapter)) = &self.file {
            let line = format!("{adapter}\t{key}\t{choice}\n");
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                })
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                log::warn!(target: "wgrad::tune", "could not keep a kernel choice in {}: {e}", path.display());
            }
        }
    }

    /// Charges time spent measuring without a choice (a class that proved too slow).
    pub fn charge(&self, spent: Duration) {
        self.lock().spent += spent;
    }

    /// Makes every class whose candidates include `choice` take it (None: measure or load
    /// again), e.g. to test each kernel against the CPU backend.
    pub fn pin(&self, choice: Option<&str>) {
        self.lock().pinned = choice.map(str::to_string);
    }

    /// Time spent measuring so far in this process.
    pub fn spent(&self) -> Duration {
        self.lock().spent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads this adapter's choices from the cache file (a missing file holds none).
    fn load(&self, state: &mut State) {
        let Some((path, adapter)) = &self.file else {
            return;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        for line in text.lines() {
            let mut parts = line.split('\t');
            if let (Some(a), Some(key), Some(choice)) = (parts.next(), parts.next(), parts.next()) {
                if a == adapter {
                    state.choices.insert(key.to_string(), choice.to_string());
                }
            }
        }
        log::debug!(target: "wgrad::tune", "{} kernel choices from {}", state.choices.len(), path.display());
    }
}
