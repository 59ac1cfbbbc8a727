//! Every kind of generated kernel, for the launches a representative set of graphs asks for
//! (elementwise chains with broadcast inputs and constants, an optimizer step, products and
//! convolutions with epilogues, every strided copy), passes naga's validation: a mistake in
//! a generator fails here, without a GPU, instead of at a flush.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wgrad_graph::shape::contiguous_strides;
use wgrad_graph::{
    Backend, BufferId, Capabilities, Conv2dSpec, Device, Fused, Launch, Op, Result, Tensor,
};

use super::*;
use crate::kernels;

/// A strided copy: the view, and (offset, strides) of its source and destination.
type Copy = (Vec<usize>, (usize, Vec<usize>), (usize, Vec<usize>));

/// What the graphs' launches ask to generate.
#[derive(Default)]
struct Seen {
    fused: RefCell<Vec<Fused>>,
    epilogues: RefCell<Vec<(Op, Fused)>>,
    copies: RefCell<Vec<Copy>>,
}

/// A backend with the GPU backend's capabilities that computes nothing and keeps what it is
/// asked to run.
struct Capture {
    next: Cell<BufferId>,
    caps: Capabilities,
    seen: Rc<Seen>,
}

impl Backend for Capture {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    fn alloc(&self, _bytes: usize) -> Result<BufferId> {
        self.next.set(self.next.get() + 1);
        Ok(self.next.get())
    }
    fn free(&self, _id: BufferId) {}
    fn write(&self, _id: BufferId, _data: &[u8]) -> Result<()> {
        Ok(())
    }
    fn read(&self, _id: BufferId, bytes: usize) -> Result<Vec<u8>> {
        Ok(vec![0; bytes])
    }
    fn exec(&self, launch: &Launch<'_>) -> Result<()> {
        match *launch {
            Launch::Fused { fused, .. } => self.seen.fused.borrow_mut().push(fused.clone()),
            Launch::Epilogue { op, fused, .. } => {
                let mut epilogues = self.seen.epilogues.borrow_mut();
                epilogues.push((op.clone(), fused.clone()));
            }
            Launch::Op { op, inputs, out } => {
                // The strided copies the layout family asks for (see `layout.rs`).
                let dense = |s: &[usize]| contiguous_strides(s);
                let x = inputs.first().map(|a| a.shape).unwrap_or(&[]);
                let copy = match op {
                    Op::Permute { perm } => {
                        let own = dense(x);
                        let src = perm.iter().map(|&p| own[p]).collect();
                        Some((out.shape.to_vec(), (0, src), (0, dense(out.shape))))
                    }
                    Op::Slice { ranges } => {
                        let own = dense(x);
                        let at = ranges.iter().zip(&own).map(|(r, s)| r.0 * s).sum();
                        Some((out.shape.to_vec(), (at, own), (0, dense(out.shape))))
                    }
                    Op::Expand { .. } => {
                        let src = wgrad_graph::shape::broadcast_strides(x, out.shape);
                        Some((out.shape.to_vec(), (0, src), (0, dense(out.shape))))
                    }
                    _ => None,
                };
                self.seen.copies.borrow_mut().extend(copy);
            }
        }
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

fn validate(what: &str, source: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{what}: {}\n{source}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{what}: {}\n{source}", e.emit_to_string(source)));
    module
}

/// Fails unless struct `name` of `module` has `size` bytes (its Rust twin's).
fn check_twin(module: &naga::Module, name: &str, size: usize) {
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).expect("layout");
    let (handle, _) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no struct {name}"));
    assert_eq!(
        layouter[handle].size as usize, size,
        "{name}: Rust and WGSL sizes differ"
    );
}

/// Realises representative graphs on a capturing device and returns what it saw.
fn captured() -> Rc<Seen> {
    let seen = Rc::new(Seen::default());
    let dev = Device::new(Capture {
        next: Cell::new(0),
        caps: Capabilities {
            fused_inputs: 6,
            fused_ops: 24,
            fused_constants: crate::params::MAX_FUSED_CONSTANTS,
            epilogue_buffers: 6,
            ..Capabilities::unfused("capture", true)
        },
        seen: seen.clone(),
    });
    let t = |shape: &[usize]| {
        let n = shape.iter().product();
        Tensor::from_slice(&dev, &vec![0.5; n], shape).unwrap()
    };
    let (x, w, b) = (t(&[8, 12]), t(&[12, 16]), t(&[16]));
    let (img, k, c) = (t(&[2, 3, 9, 9]), t(&[4, 3, 3, 3]), t(&[4, 1, 1]));
    let (m, v, s) = (t(&[8, 16]), t(&[8, 16]), t(&[1]));
    // A dense layer with bias and activation, an output it keeps, and a chain reading a
    // scalar, a per-row and a per-column input, with every unary function.
    let z = x.matmul(&w) + &b;
    let y = (&z * &s).sigmoid().relu();
    let chain = [
        y.exp().log().sqrt().abs().sign(),
        y.neg().tanh().erf().gelu().leaky_relu(0.1),
        y.isnan() + y.isinf() + y.isfinite(),
        Tensor::select(&y.gt(&m), &y.maximum(&v), &y.minimum(&m.t().t())),
        (&y / &m.sum(&[1], true)).pow_scalar(1.5) - y.ne(&v),
    ];
    // An optimizer step: new moments and parameter in one kernel, with constants.
    let m2 = m.mul_scalar(0.9) + y.mul_scalar(0.1);
    let v2 = v.mul_scalar(0.999) + (&y * &y).mul_scalar(0.001);
    let p2 = &m - (&m2 / (v2.sqrt().add_scalar(1e-8))).mul_scalar(0.01);
    // A convolution with a per-channel bias and activation; copies of every kind.
    let conv = (img.conv2d(&k, Conv2dSpec::default()) + &c).relu();
    let copies = [
        x.permute(&[1, 0]),
        x.slice(&[(1, 5), (4, 12)]),
        b.expand(&[8, 16]),
        img.permute(&[0, 2, 3, 1]),
        img.slice(&[(0, 2), (0, 3), (1, 9), (0, 8)]),
    ];
    let mut roots: Vec<&Tensor> = vec![&z, &y, &m2, &v2, &p2, &conv];
    roots.extend(chain.iter());
    roots.extend(copies.iter());
    wgrad_graph::realize_all(&roots).unwrap();
    seen
}

#[test]
fn every_generated_kernel_validates() {
    let seen = captured();
    let (fused, epilogues) = (seen.fused.borrow(), seen.epilogues.borrow());
    assert!(fused.len() >= 3, "{} fused groups", fused.len());
    assert!(epilogues.len() >= 2, "{} epilogues", epilogues.len());
    for (i, f) in fused.iter().enumerate() {
        for lanes in [1, 4] {
            let source = Kernel::Fused { fused: f, lanes }.source();
            let module = validate(&format!("fused group {i}, {lanes} lanes"), &source);
            check_twin(&module, "FusedParams", std::mem::size_of::<FusedParams>());
        }
    }
    // Each product kernel with each epilogue, bound after its own buffers as `push_stored`
    // binds it: out, a, b (or out, window 0, b, windows 1.., and for the convolutions the
    // tap table).
    let mut products = vec![(kernels::MATMUL_VEC4, 4), (kernels::CONV2D, 4)];
    // Each window kernel's module holds only its own window code.
    products.extend(
        kernels::ALL
            .iter()
            .filter(|&&e| kernels::reads_windows(e))
            .map(|&e| (e, if e.name.starts_with("conv") { 12 } else { 11 })),
    );
    for (_, f) in epilogues.iter() {
        for &(entry, first) in &products {
            let source = Kernel::Epilogue {
                entry,
                fused: f,
                first,
            }
            .source();
            let _ = validate(&format!("{} with an epilogue", entry.name), &source);
        }
    }
    let copies = seen.copies.borrow();
    assert!(copies.len() >= 5, "{} copies", copies.len());
    for (view, from, to) in copies.iter() {
        let dims = collapse(view, &from.1, &to.1);
        let mut kernels = vec![
            (dims.clone(), "u32", None),
            (dims.clone(), "f32", Some(&epilogues[0].1)),
        ];
        if let Some((quads, _)) = in_quads(&dims, (from.0, to.0)) {
            kernels.push((quads, "vec4<u32>", None));
        }
        for (dims, word, epilogue) in kernels {
            let source = Kernel::Copy {
                dims: &dims,
                word,
                epilogue,
            }
            .source();
            let module = validate(&format!("copy of {word} over {dims:?}"), &source);
            check_twin(
                &module,
                "GenCopyParams",
                std::mem::size_of::<GenCopyParams>(),
            );
        }
    }
}
