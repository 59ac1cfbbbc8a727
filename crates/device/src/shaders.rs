//! WGSL sources, one file per kernel family under `shaders/`, each preceded by the prelude:
//! the constants Rust and WGSL share, written here from their Rust values, then the helpers
//! of `shaders/common.wgsl`. Templates (the uniform-window matmul kernels) are expanded here.

use std::sync::OnceLock;

use wgrad_graph::shape::MAX_RANK;

use crate::kernels::{
    Family, CONV_ROWS, CONV_TEXELS, UA_LANES, UA_ROWS, UA_WINDOWS, UA_WINDOW_BYTES, WORKGROUP,
};
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
                "CONV_TEXELS",
                CONV_TEXELS as u64,
                "values per row of a window convolution's input texture",
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
        Family::Matmul => format!("{}{}{PLAIN_STORES}", prelude(), file(Family::Matmul)),
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
/// the product: plain stores, or a generated epilogue (see `generated.rs`). With `window`
/// naming one of the uniform-window kernels, that kernel too, without the other window
/// kernels (their windows take bindings 4 to 10, which the other kernels' epilogues bind
/// after their operands).
pub fn matmul_source(stores: &str, window: Option<&str>) -> String {
    let mut source = format!("{}{}{stores}", prelude(), file(Family::Matmul));
    if let Some(entry) = window {
        expand_windows(entry, &mut source);
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

/// The module of `entry` if it is an entry point of `shaders/matmul_ua.wgsl`: the matmul
/// family with plain stores, then that entry point and the functions it calls, written out
/// (see [`expand`]); None for any other entry point. The family's own module leaves these
/// out: written out per window, block height and variant they are long, and each is
/// compiled only when it is first used.
pub fn window_source(entry: &str) -> Option<String> {
    window_entries()
        .contains(&entry)
        .then(|| matmul_source(PLAIN_STORES, Some(entry)))
}

/// The entry points of `shaders/matmul_ua.wgsl`.
pub fn window_entries() -> &'static [&'static str] {
    static ENTRIES: OnceLock<Vec<&'static str>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        include_str!("../../../shaders/matmul_ua.wgsl")
            .lines()
            .filter_map(|l| l.strip_prefix("//@entry ")?.split_whitespace().next())
            .collect()
    })
}

/// Appends what `shaders/matmul_ua.wgsl` holds for the entry point `entry` to `out`,
/// written out: the lines outside entry blocks, its `//@entry` block, and the function its
/// `//@entry` line names.
fn expand_windows(entry: &str, out: &mut String) {
    let template: Vec<&str> = include_str!("../../../shaders/matmul_ua.wgsl")
        .lines()
        .collect();
    let function = template.iter().find_map(|l| {
        let mut words = l.strip_prefix("//@entry ")?.split_whitespace();
        (words.next() == Some(entry)).then(|| words.next().expect("//@entry NAME FUNCTION"))
    });
    let function = function.unwrap_or_else(|| panic!("matmul_ua.wgsl has no {entry}"));
    out.reserve(template.len() * 40);
    expand(&template, &[], Some((entry, function)), out);
}

/// The variants of the uniform-window products' `//@rows` section: plain; storing through
/// an offset and row length; B stored transposed; and the plain and transposed ones reading
/// B from a texture. `{product}` holds `{r}`, written out after it.
const UA_VARIANTS: [[(&str, &str); 8]; 5] = [
    ua_variant("", "p.n", "ua_store", false, false),
    ua_variant("_out", "p.out_n", "ua_store_out", false, false),
    ua_variant("_nt", "p.n", "ua_store", true, false),
    ua_variant("_tex", "p.n", "ua_store", false, true),
    ua_variant("_nt_tex", "p.n", "ua_store", true, true),
];

/// One variant of [`UA_VARIANTS`]: its suffix, the row length stored, the store function,
/// whether B is stored transposed, and whether it is read from the texture.
const fn ua_variant(
    v: &'static str,
    cols: &'static str,
    store: &'static str,
    nt: bool,
    texture: bool,
) -> [(&'static str, &'static str); 8] {
    let loads = match (nt, texture) {
        (_, false) => {
            "let b_0 = b4[rb];
                let b_1 = b4[rb + b_row];
                let b_2 = b4[rb + 2u * b_row];
                let b_3 = b4[rb + 3u * b_row];"
        }
        (false, true) => {
            "let b_0 = textureLoad(bt, vec2<i32>(i32(c4), i32(4u * t)), 0);
                let b_1 = textureLoad(bt, vec2<i32>(i32(c4), i32(4u * t + 1u)), 0);
                let b_2 = textureLoad(bt, vec2<i32>(i32(c4), i32(4u * t + 2u)), 0);
                let b_3 = textureLoad(bt, vec2<i32>(i32(c4), i32(4u * t + 3u)), 0);"
        }
        (true, true) => {
            "let b_0 = textureLoad(bt, vec2<i32>(i32(t), i32(4u * c4)), 0);
                let b_1 = textureLoad(bt, vec2<i32>(i32(t), i32(4u * c4 + 1u)), 0);
                let b_2 = textureLoad(bt, vec2<i32>(i32(t), i32(4u * c4 + 2u)), 0);
                let b_3 = textureLoad(bt, vec2<i32>(i32(t), i32(4u * c4 + 3u)), 0);"
        }
    };
    [
        ("v", v),
        ("cols", cols),
        ("store", store),
        ("nt", if nt { "true" } else { "false" }),
        ("b_next", if nt { "1u" } else { "4u * b_row" }),
        ("loads", loads),
        ("guard", if texture { TEXTURE_GUARD } else { "" }),
        (
            "product",
            if nt {
                "vec4<f32>(dot(x{r}, b_0), dot(x{r}, b_1), dot(x{r}, b_2), dot(x{r}, b_3))"
            } else {
                "x{r}.x * b_0 + x{r}.y * b_1 + x{r}.z * b_2 + x{r}.w * b_3"
            },
        ),
    ]
}

/// The variants of the window convolutions' `//@conv-rows` section: bounds checked; every
/// window inside the input.
const CONV_VARIANTS: [[(&str, &str); 3]; 4] = [
    [("v", ""), ("gather", "conv_gather"), ("guard", "")],
    [("v", "_inside"), ("gather", "conv_inside"), ("guard", "")],
    [
        ("v", "_tex"),
        ("gather", "conv_gather_tex"),
        ("guard", TEXTURE_GUARD),
    ],
    [
        ("v", "_inside_tex"),
        ("gather", "conv_inside_tex"),
        ("guard", TEXTURE_GUARD),
    ],
];

/// The first line of a kernel that reads a texture in place of the buffer at binding 3: a
/// use of that buffer, so that it stays in the kernel's bindings and every variant binds
/// the same buffers.
const TEXTURE_GUARD: &str = "if (arrayLength(&b) == 0u) { return; }";

/// The variants of the window weight gradients' `//@conv-gw-rows` section: bounds checked
/// (0 in the padding); every window inside the input. `{value}` holds `{r}` and `{w}`.
const CONV_GW_VARIANTS: [[(&str, &str); 2]; 2] = [
    [
        ("v", ""),
        (
            "value",
            "let in{r} = (u32(y + t{r}.y) < cw.h) && (u32(x + t{r}.z) < cw.w);
                let a{r} = u32(select(0, at + t{r}.x, in{r}));
                let v{r} = select(0.0, ua{w}[a{r} >> 2u][a{r} & 3u], in{r});",
        ),
    ],
    [
        ("v", "_inside"),
        (
            "value",
            "let a{r} = u32(at + t{r}.x);
                let v{r} = ua{w}[a{r} >> 2u][a{r} & 3u];",
        ),
    ],
];

/// The variable sets of a row-block section (`//@rows` and the like): one per block height
/// of `heights` and variant of `variants` (name–value pairs, `v` the suffix), for the
/// function `{function}{rows}{v}`; with `keep`, only the one it names.
fn row_blocks<const N: usize>(
    function: &str,
    heights: &[u32],
    variants: &[[(&'static str, &'static str); N]],
    keep: Option<(&str, &str)>,
) -> Vec<Vec<(&'static str, String)>> {
    heights
        .iter()
        .flat_map(|rows| {
            variants.iter().map(move |variant| {
                let mut vars = vec![("rows", rows.to_string())];
                vars.extend(variant.iter().map(|&(k, v)| (k, v.to_string())));
                vars
            })
        })
        .filter(|vars| {
            let (rows, v) = (var(vars, "rows"), var(vars, "v"));
            let name = format!("{function}{}{}", rows.unwrap_or(""), v.unwrap_or(""));
            keep.is_none_or(|(_, f)| f == name)
        })
        .collect()
}

/// Appends `lines` to `out` with each `{name}` of `vars` replaced by its value, and each
/// block between a `//@rows`, `//@conv-rows`, `//@conv-gw-rows`, `//@each-row` or
/// `//@each-window` line and its `//@end` written out once per value of what it repeats
/// over (blocks nest). With `keep` (an entry point and the function it calls), the other
/// `//@entry` blocks and the row-block functions (`//@rows`, `//@conv-rows`, `//@conv-gw-rows`) of other names are
/// left out.
fn expand(lines: &[&str], vars: &[(&str, String)], keep: Option<(&str, &str)>, out: &mut String) {
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let repeats: Vec<Vec<(&str, String)>> = match line {
            "//@rows" => row_blocks("ua_rows", &UA_ROWS, &UA_VARIANTS, keep),
            "//@conv-rows" => row_blocks("conv_rows", &CONV_ROWS, &CONV_VARIANTS, keep),
            "//@conv-gw-rows" => row_blocks("conv_gw_rows", &CONV_ROWS, &CONV_GW_VARIANTS, keep),
            l if l.starts_with("//@entry ") => {
                let name = l.split_whitespace().nth(1).expect("//@entry NAME FUNCTION");
                match keep.is_none_or(|(entry, _)| entry == name) {
                    true => vec![vec![]],
                    false => vec![],
                }
            }
            "//@each-row" => {
                let rows = var(vars, "rows").expect("matmul_ua.wgsl: //@each-row outside //@rows");
                let rows: u32 = rows.parse().expect("a number");
                (0..rows).map(|r| vec![("r", r.to_string())]).collect()
            }
            "//@each-window" => (0..UA_WINDOWS)
                .map(|w| {
                    let binding = if w == 0 { 2 } else { w + 3 };
                    vec![("w", w.to_string()), ("binding", binding.to_string())]
                })
                .collect(),
            _ => {
                let mut text = line.to_string();
                for (name, value) in vars {
                    text = text.replace(&format!("{{{name}}}"), value);
                }
                *out += &text;
                out.push('\n');
                i += 1;
                continue;
            }
        };
        // The block's end: the `//@end` at the same depth.
        let mut depth = 0;
        let end = (i + 1..lines.len())
            .find(|&j| match lines[j] {
                "//@end" if depth == 0 => true,
                "//@end" => {
                    depth -= 1;
                    false
                }
                l if l.starts_with("//@") => {
                    depth += 1;
                    false
                }
                _ => false,
            })
            .unwrap_or_else(|| panic!("matmul_ua.wgsl: {line} without //@end"));
        for more in repeats {
            let vars: Vec<(&str, String)> = vars.iter().cloned().chain(more).collect();
            expand(&lines[i + 1..end], &vars, keep, out);
        }
        i = end + 1;
    }
}

/// The value of the template variable `name` among `vars`.
fn var<'a>(vars: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    vars.iter().find(|v| v.0 == name).map(|v| v.1.as_str())
}
