//! Readers of outside data never panic: random, truncated and bit-flipped IDX and safetensors
//! files give errors (or, when the damage happens to leave a valid file, a result).

use std::path::Path;

use proptest::prelude::*;
use wgrad_nn::data::parse_idx;
use wgrad_nn::{io, Dense, Module, Rng, Sequential};

fn idx_file(dims: &[u32]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    b.extend((0..n).map(|i| i as u8));
    b
}

fn model() -> Sequential {
    let dev = wgrad_cpu::CpuBackend::device();
    Sequential::new().add(Dense::new(&dev, 3, 2, &mut Rng::new(1)).unwrap())
}

fn weights_file() -> Vec<u8> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "wgrad-prop-{}-w{n}.safetensors",
        std::process::id()
    ));
    io::save(&path, &model(), None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

fn load_bytes(bytes: &[u8], tag: u64) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!(
        "wgrad-prop-{}-{tag}.safetensors",
        std::process::id()
    ));
    std::fs::write(&path, bytes).unwrap();
    let r = io::load(&path, &model(), None).map_err(|e| e.to_string());
    std::fs::remove_file(&path).unwrap();
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn idx_parser_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_idx(Path::new("random.idx"), &bytes);
    }

    #[test]
    fn idx_parser_rejects_every_truncation(cut in 0usize..18) {
        let full = idx_file(&[2, 3]);
        let e = parse_idx(Path::new("cut.idx"), &full[..cut]).unwrap_err().to_string();
        prop_assert!(e.contains("cut.idx"));
    }

    #[test]
    fn idx_parser_survives_bit_flips(at in 0usize..18, bit in 0u8..8) {
        let mut b = idx_file(&[2, 3]);
        let at = at % b.len();
        b[at] ^= 1 << bit;
        let _ = parse_idx(Path::new("flip.idx"), &b);
    }

    #[test]
    fn weights_loader_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), tag in any::<u64>()) {
        prop_assert!(load_bytes(&bytes, tag).is_err());
    }

    #[test]
    fn weights_loader_rejects_every_truncation(fraction in 0.0f64..1.0, tag in any::<u64>()) {
        let full = weights_file();
        let cut = (full.len() as f64 * fraction) as usize;
        let e = load_bytes(&full[..cut], tag).unwrap_err();
        prop_assert!(e.contains("safetensors"), "{}", e);
    }

    #[test]
    fn weights_loader_survives_bit_flips(fraction in 0.0f64..1.0, bit in 0u8..8, tag in any::<u64>()) {
        let mut b = weights_file();
        let at = ((b.len() as f64 * fraction) as usize).min(b.len() - 1);
        b[at] ^= 1 << bit;
        let _ = load_bytes(&b, tag);
    }
}

#[test]
fn an_intact_file_loads() {
    assert_eq!(load_bytes(&weights_file(), 0), Ok(()));
    let idx = parse_idx(Path::new("ok.idx"), &idx_file(&[2, 3])).unwrap();
    assert_eq!(idx.dims, vec![2, 3]);
    let _ = model().parameters();
}
