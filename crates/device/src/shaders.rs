//! WGSL sources, one file per kernel family under `shaders/`, each preceded by the prelude:
//! the constants Rust and WGSL share, written here from their Rust values, then the helpers
//! of `shaders/common.wgsl`. Templates (the uniform-window matmul kernels) are expanded here.

use std::sync::OnceLock;

use wgrad_graph::shape::MAX_RANK;

use crate::kernels::{Family, UA_LANES, UA_WINDOWS, UA_WINDOW_BYTES, WORKGROUP};
use crate::params::MAX_FUSED_CONSTANTS;

/// The prelude kernels start with (families and generated kernels alike): the shared
/// [`constants`], then the helpers of `shaders/common.wgsl`.
pub fn prelude() -> &'static str {
    static PRELUDE: OnceLock<String> = OnceLock::new();
    PRELUDE.get_or_init(|| {
        format!(
            "{}{}",
            constants(),
            include_str!("../../../shaders/common.wgsl")
        )
    })
}

/// The constants Rust and WGSL share, as WGSL `const` declarations written from their Rust
/// values (every kernel's source starts with them).
pub fn constants() -> &'static str {
    static CONSTANTS: OnceLock<String> = OnceLock::new();
    CONSTANTS.get_or_init(|| {
        let constants = [
            (
                "MAX_RANK",
                MAX_RANK as u64,
                "axes of a tensor a kernel indexes",
            ),
            (
                "WORKGROUP",
                WORKGROUP as u64,
                "invocations per 1-D workgroup",
            ),
            (
                "UA_LANES",
                UA_LANES as u64,
                "invocations per `_ua` matmul workgroup",
            ),
            (
                "UA_WINDOW_VEC4S",
                UA_WINDOW_BYTES / 16,
                "vec4s in a uniform window",
            ),
            (
                "MAX_FUSED_CONSTANTS",
                MAX_FUSED_CONSTANTS as u64,
                "constants of a fused kernel",
            ),
        ];
        let mut s = String::from("// Written by crates/device/src/shaders.rs from Rust.\n");
        for (name, value, what) in constants {
            s += &format!("const {name}: u32 = {value}u; // {what}\n");
        }
        s
    })
}

/// A family's file with the prelude in front (WGSL has no includes).
pub fn source(family: Family) -> &'static str {
    static SOURCES: [OnceLock<String>; Family::ALL.len()] =
        [const { OnceLock::new() }; Family::ALL.len()];
    let i = Family::ALL
        .iter()
        .position(|&f| f == family)
        .expect("listed");
    SOURCES[i].get_or_init(|| match family {
        Family::Matmul => matmul_source(PLAIN_STORES, true),
        Family::Conv => conv_source(PLAIN_STORE),
        Family::Subgroup => format!(
            "{}{}{}",
            prelude(),
            file(Family::Reduce),
            file(Family::Subgroup)
        ),
        _ => format!("{}{}", prelude(), file(family)),
    })
}

/// The text of a family's file, without the prelude.
fn file(family: Family) -> &'static str {
    match family {
        Family::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
        Family::Reduce => include_str!("../../../shaders/reduce.wgsl"),
        Family::Matmul => include_str!("../../../shaders/matmul.wgsl"),
        Family::Layout => include_str!("../../../shaders/layout.wgsl"),
        Family::Index => include_str!("../../../shaders/index.wgsl"),
        Family::Random => include_str!("../../../shaders/random.wgsl"),
        Family::Conv => include_str!("../../../shaders/conv.wgsl"),
        Family::Pool => include_str!("../../../shaders/pool.wgsl"),
        Family::Subgroup => include_str!("../../../shaders/subgroup.wgsl"),
    }
}

/// The matmul family with `stores` defining `put` and `put4`, through which its kernels store
/// the product: plain stores, or a generated epilogue (see `generated.rs`). With
/// `windows`, the uniform-window kernels too (their windows take bindings 4 to 10, which the
/// other kernels' epilogues bind after their operands).
pub fn matmul_source(stores: &str, windows: bool) -> String {
    let mut source = format!("{}{}{stores}", prelude(), file(Family::Matmul));
    if windows {
        source += uniform_window_kernels();
    }
    source
}

/// The convolution family with `stores` defining `put`, through which its kernels store:
/// plain stores, or a generated epilogue.
pub fn conv_source(stores: &str) -> String {
    format!("{}{}{stores}", prelude(), file(Family::Conv))
}

/// A value stored as it is: element `i` of the output.
const PLAIN_STORE: &str = "
fn put(i: u32, v: f32) { out[i] = v; }
";

/// The product stored as it is: element `i`, or vec4 `i4`, of the output.
const PLAIN_STORES: &str = "
fn put(i: u32, v: f32) { out[i] = v; }
fn put4(i4: u32, v: vec4<f32>) { out4[i4] = v; }
";

/// `shaders/matmul_ua.wgsl` with its per-window lines written out for each of the
/// [`UA_WINDOWS`] windows.
fn uniform_window_kernels() -> &'static str {
    static KERNELS: OnceLock<String> = OnceLock::new();
    KERNELS.get_or_init(|| {
        let template = include_str!("../../../shaders/matmul_ua.wgsl");
        let mut out = String::with_capacity(template.len() * 4);
        let mut block: Option<String> = None;
        for line in template.lines() {
            match (line, &mut block) {
                ("//@each-window", None) => block = Some(String::new()),
                ("//@end", Some(text)) => {
                    for w in 0..UA_WINDOWS {
                        let binding = if w == 0 { 2 } else { w + 3 };
                        out += &text
                            .replace("{w}", &w.to_string())
                            .replace("{binding}", &binding.to_string());
                    }
                    block = None;
                }
                (_, Some(text)) => *text += &format!("{line}\n"),
                (_, None) => out += &format!("{line}\n"),
            }
        }
        assert!(
            block.is_none(),
            "matmul_ua.wgsl: an //@each-window without //@end"
        );
        out
    })
}
