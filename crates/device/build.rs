//! Writes the kernel table (`kernels::ALL` and one constant per entry point) from the WGSL
//! under `shaders/`: every `@compute` function becomes an `Entry` named after it in capitals,
//! with its family (the file; `matmul_ua.wgsl` is part of the matmul family) and workgroup
//! size, documented by the comment above it. A launcher naming an entry point the WGSL lacks
//! then fails to compile.

use std::fmt::Write;
use std::path::Path;

fn main() {
    // Read when the script runs: the same script binary may serve another checkout.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let dir = Path::new(&manifest).join("../../shaders");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    let (mut out, mut all) = (String::new(), Vec::new());
    for path in files {
        println!("cargo:rerun-if-changed={}", path.display());
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name");
        let family = match stem {
            "common" => continue,
            "matmul_ua" => "Matmul".to_string(),
            _ => stem[..1].to_uppercase() + &stem[1..],
        };
        let text = std::fs::read_to_string(&path).expect("readable");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(size) = line
                .strip_prefix("@compute @workgroup_size(")
                .and_then(|s| s.strip_suffix(')'))
            else {
                continue;
            };
            let name = lines[i + 1]
                .strip_prefix("fn ")
                .and_then(|s| s.split('(').next())
                .unwrap_or_else(|| panic!("{stem}.wgsl:{}: `fn` after @compute", i + 2));
            let mut dims: Vec<&str> = size.split(',').map(str::trim).collect();
            dims.resize(3, "1");
            // The comment right above the entry point, as its doc.
            let mut doc: Vec<&str> = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.starts_with("//"))
                .map(|l| l.trim_start_matches('/').trim())
                .collect();
            doc.reverse();
            let constant = name.to_uppercase();
            writeln!(out, "/// Entry point `{name}` of `shaders/{stem}.wgsl`.").unwrap();
            if !doc.is_empty() {
                writeln!(out, "///").unwrap();
                // Brackets in WGSL comments are indexing, not links.
                let text = doc.join(" ").replace('[', "\\[").replace(']', "\\]");
                writeln!(out, "#[doc = {text:?}]").unwrap();
            }
            writeln!(
                out,
                "pub const {constant}: Entry = Entry {{ family: Family::{family}, name: {name:?}, \
                 workgroup: [{}, {}, {}] }};",
                dims[0], dims[1], dims[2]
            )
            .unwrap();
            all.push(constant);
        }
    }
    writeln!(out, "/// Every entry point of the WGSL, in file order.").unwrap();
    writeln!(out, "pub const ALL: &[Entry] = &[{}];", all.join(", ")).unwrap();
    let target = Path::new(&std::env::var("OUT_DIR").expect("set by cargo")).join("entries.rs");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}
