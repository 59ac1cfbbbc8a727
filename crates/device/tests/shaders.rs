//! Every WGSL file parses and validates with naga, and every op's entry points exist in its
//! family's file. Needs no GPU.

use wgrad_device::shaders;
use wgrad_graph::op::{BinaryOp, Conv2dSpec, DType, Family, Op, Pool2dSpec, ReduceOp, UnaryOp};

fn module(family: Family) -> naga::Module {
    let src = shaders::source(family);
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{}: {}", family.file(), e.emit_to_string(src)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}: {}", family.file(), e.emit_to_string(src)));
    module
}

#[test]
fn every_shader_file_validates() {
    for family in Family::ALL {
        let m = module(family);
        assert!(
            !m.entry_points.is_empty(),
            "{} has no entry point",
            family.file()
        );
    }
}

/// One op of every variant. The exhaustive match makes a new variant fail to compile here
/// until it is added to the list.
fn all_ops() -> Vec<Op> {
    let mut ops = vec![
        Op::Full {
            value: 0.0,
            shape: vec![],
            dtype: DType::F32,
        },
        Op::RandUniform {
            seed: 0,
            shape: vec![],
        },
        Op::Where,
        Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![],
            keepdim: false,
        },
        Op::Reduce {
            op: ReduceOp::Max,
            axes: vec![],
            keepdim: false,
        },
        Op::Argmax {
            axis: 0,
            keepdim: false,
        },
        Op::MatMul {
            ta: false,
            tb: false,
        },
        Op::Reshape { shape: vec![] },
        Op::Permute { perm: vec![] },
        Op::Expand { shape: vec![] },
        Op::Slice { ranges: vec![] },
        Op::Pad {
            before: vec![],
            after: vec![],
        },
        Op::Concat { axis: 0 },
        Op::Gather,
        Op::OneHot { classes: 1 },
        Op::Cast { to: DType::F32 },
        Op::Conv2d(Conv2dSpec::default()),
        Op::Conv2dGradInput {
            spec: Conv2dSpec::default(),
            input_hw: [1, 1],
        },
        Op::Conv2dGradWeight {
            spec: Conv2dSpec::default(),
            kernel: [1, 1],
        },
        Op::MaxPool2d(Pool2dSpec::square(2)),
        Op::MaxPool2dGrad(Pool2dSpec::square(2)),
        Op::AvgPool2d(Pool2dSpec::square(2)),
        Op::AvgPool2dGrad {
            spec: Pool2dSpec::square(2),
            input_hw: [2, 2],
        },
    ];
    use UnaryOp::*;
    for u in [
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
    ] {
        ops.push(Op::Unary(u));
    }
    use BinaryOp::*;
    for b in [
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
    ] {
        ops.push(Op::Binary(b));
    }
    for op in &ops {
        match op {
            Op::Full { .. }
            | Op::RandUniform { .. }
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Where
            | Op::Reduce { .. }
            | Op::Argmax { .. }
            | Op::MatMul { .. }
            | Op::Reshape { .. }
            | Op::Permute { .. }
            | Op::Expand { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Concat { .. }
            | Op::Gather
            | Op::OneHot { .. }
            | Op::Cast { .. }
            | Op::Conv2d(_)
            | Op::Conv2dGradInput { .. }
            | Op::Conv2dGradWeight { .. }
            | Op::MaxPool2d(_)
            | Op::MaxPool2dGrad(_)
            | Op::AvgPool2d(_)
            | Op::AvgPool2dGrad { .. } => {}
        }
    }
    ops
}

#[test]
fn every_op_entry_point_exists() {
    let modules: Vec<(Family, naga::Module)> =
        Family::ALL.iter().map(|&f| (f, module(f))).collect();
    let mut checked = 0;
    for op in all_ops() {
        let (family, entries) = op.kernels();
        let module = &modules
            .iter()
            .find(|(f, _)| *f == family)
            .expect("family has a module")
            .1;
        for entry in entries {
            assert!(
                module.entry_points.iter().any(|e| e.name == entry),
                "{}: entry point `{entry}` for op `{}` is missing",
                family.file(),
                op.name()
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} entry points checked");
}
