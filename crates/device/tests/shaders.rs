//! The kernel table against the WGSL, with naga and without a GPU: every family's source
//! (prelude included) and every uniform-window kernel's own module validates; every entry
//! point in `kernels::ALL` exists with the workgroup size the table gives, and every entry
//! point of the files is in the table; every parameter struct has the size of its WGSL twin.

use std::mem::size_of;

use wgrad_device::kernels::{self, Family};
use wgrad_device::params::*;
use wgrad_device::shaders;
use wgrad_graph::{BinaryOp, UnaryOp};

fn module(family: Family) -> naga::Module {
    validated(family.file(), shaders::source(family), family)
}

fn validated(what: &str, src: &str, family: Family) -> naga::Module {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(src)));
    // The subgroup family runs only on devices that have subgroup operations.
    let capabilities = match family {
        Family::Subgroup => naga::valid::Capabilities::SUBGROUP,
        _ => naga::valid::Capabilities::default(),
    };
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(src)));
    module
}

#[test]
fn every_family_validates() {
    for family in Family::ALL {
        let m = module(family);
        assert!(
            !m.entry_points.is_empty(),
            "{} has no entry point",
            family.file()
        );
    }
}

#[test]
fn the_kernel_table_matches_the_wgsl() {
    let mut checked = 0;
    for family in Family::ALL {
        let m = module(family);
        let table: Vec<_> = kernels::ALL.iter().filter(|e| e.family == family).collect();
        for entry in &table {
            // An entry point of the uniform-window template is in a module of its own.
            let own =
                shaders::window_source(entry.name).map(|src| validated(entry.name, &src, family));
            let m = own.as_ref().unwrap_or(&m);
            let found = m.entry_points.iter().find(|e| e.name == entry.name);
            let found = found.unwrap_or_else(|| {
                panic!("{}: entry point `{}` is missing", family.file(), entry.name)
            });
            assert_eq!(
                found.workgroup_size,
                entry.workgroup,
                "{}: `{}` has another workgroup size than the table's",
                family.file(),
                entry.name
            );
            checked += 1;
        }
        // The subgroup module has the reduce family's file in front, entry points included.
        let also = |e: &&kernels::Entry| family == Family::Subgroup && e.family == Family::Reduce;
        for ep in &m.entry_points {
            assert!(
                kernels::ALL
                    .iter()
                    .any(|e| e.name == ep.name && (e.family == family || also(&e))),
                "{}: entry point `{}` is not in kernels.rs",
                family.file(),
                ep.name
            );
        }
    }
    assert_eq!(checked, kernels::ALL.len());
    assert!(checked >= 60, "only {checked} entry points checked");
}

#[test]
fn each_function_has_its_own_kernel() {
    use UnaryOp::*;
    let unary = [
        Neg,
        Exp,
        Log,
        Sqrt,
        Abs,
        Sign,
        Relu,
        Sigmoid,
        Tanh,
        Erf,
        Gelu,
        LeakyRelu(0.1),
        IsNan,
        IsInf,
        IsFinite,
    ];
    for u in unary {
        assert_eq!(kernels::unary(u).name, format!("unary_{}", u.name()));
    }
    use BinaryOp::*;
    let binary = [
        Add,
        Sub,
        Mul,
        Div,
        Pow,
        Maximum,
        Minimum,
        BinaryOp::Eq,
        Ne,
        Lt,
        Le,
        Gt,
        Ge,
    ];
    for b in binary {
        assert_eq!(kernels::binary(b).name, format!("binary_{}", b.name()));
    }
}

/// The size naga lays out for struct `name` of `family`'s module, or of the module of the
/// uniform-window entry point `window`.
fn wgsl_size(family: Family, window: Option<&str>, name: &str) -> usize {
    let m = match window {
        Some(entry) => {
            let src = shaders::window_source(entry).expect("a uniform-window entry point");
            validated(entry, &src, family)
        }
        None => module(family),
    };
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(m.to_ctx()).expect("layout");
    let (handle, _) = m
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{}: no struct {name}", family.file()));
    layouter[handle].size as usize
}

#[test]
fn parameter_structs_match_their_wgsl_twins() {
    let twins = [
        (Family::Elementwise, "EwParams", size_of::<EwParams>()),
        (Family::Index, "IndexParams", size_of::<IndexParams>()),
        (Family::Reduce, "ReduceParams", size_of::<ReduceParams>()),
        (Family::Layout, "CopyParams", size_of::<CopyParams>()),
        (Family::Matmul, "MatmulParams", size_of::<MatmulParams>()),
        (Family::Random, "RandParams", size_of::<RandParams>()),
        (Family::Conv, "ConvParams", size_of::<ConvParams>()),
        (
            Family::Conv,
            "ConvLanesParams",
            size_of::<ConvLanesParams>(),
        ),
        (Family::Conv, "Im2colParams", size_of::<Im2colParams>()),
        (Family::Pool, "PoolParams", size_of::<PoolParams>()),
    ];
    for (family, name, rust) in twins {
        assert_eq!(
            wgsl_size(family, None, name),
            rust,
            "{name}: Rust and WGSL sizes differ"
        );
    }
    let window = Some(kernels::CONV_WINDOW_TAPS.name);
    assert_eq!(
        wgsl_size(Family::Matmul, window, "ConvWindowParams"),
        size_of::<ConvWindowParams>(),
        "ConvWindowParams: Rust and WGSL sizes differ"
    );
}
