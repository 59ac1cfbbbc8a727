//! Kernel timing: a profiled backend times every dispatch of a flush with the clock asked
//! for (the device's, where the adapter has timestamp queries) and computes the same values.

mod common;

use common::{bytes, floats};
use wgrad_device::{Context, GpuBackend, ProfileClock};
use wgrad_graph::op::{DType, Op, UnaryOp};
use wgrad_graph::{Arg, Backend, Launch};

#[test]
fn every_dispatch_is_timed_on_the_clock_asked_for() {
    let ctx = match Context::shared() {
        Ok(ctx) => ctx,
        Err(e) if std::env::var("WGRAD_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("WGRAD_REQUIRE_GPU=1 but no GPU adapter could be opened: {e}")
        }
        Err(e) => return eprintln!("SKIPPED (no GPU adapter): {e}"),
    };
    for clock in [ProfileClock::Device, ProfileClock::Host] {
        let be = GpuBackend::profiled(ctx.clone(), clock);
        // -(A·B) for A = [[0, 1, 2], [3, 4, 5]] and B = [[1, 0], [0, 1], [1, 1]].
        let (a, b) = (
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            [1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        );
        let ids: Vec<usize> = (0..4).map(|_| be.alloc(16).unwrap()).collect();
        be.write(ids[0], &bytes(&a)).unwrap();
        be.write(ids[1], &bytes(&b)).unwrap();
        let arg = |k: usize, shape: &'static [usize]| Arg {
            buffer: ids[k],
            shape,
            dtype: DType::F32,
        };
        let product = Op::MatMul {
            ta: false,
            tb: false,
        };
        let exec =
            |op: &Op, inputs: &[Arg], out: &Arg| be.exec(&Launch::Op { op, inputs, out }).unwrap();
        exec(
            &product,
            &[arg(0, &[2, 3]), arg(1, &[3, 2])],
            &arg(2, &[2, 2]),
        );
        exec(
            &Op::Unary(UnaryOp::Neg),
            &[arg(2, &[2, 2])],
            &arg(3, &[2, 2]),
        );
        be.flush().unwrap();
        assert_eq!(
            floats(&be.read(ids[3], 16).unwrap()),
            [-2.0, -3.0, -8.0, -9.0]
        );
        // More dispatches than one query set times (2048): negated back and forth.
        let neg = Op::Unary(UnaryOp::Neg);
        for k in 0..2100 {
            let (from, to) = if k % 2 == 0 { (2, 3) } else { (3, 2) };
            exec(&neg, &[arg(from, &[2, 2])], &arg(to, &[2, 2]));
        }
        be.flush().unwrap();
        assert_eq!(
            floats(&be.read(ids[3], 16).unwrap()),
            [-2.0, -3.0, -8.0, -9.0]
        );

        let (times, used) = be.kernel_times();
        let stamps = ctx
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY);
        let want = if stamps { clock } else { ProfileClock::Host };
        assert_eq!(used, Some(want));
        let calls = |stem: &str| {
            let named = times.iter().filter(|t| t.name.starts_with(stem));
            named.map(|t| t.calls).sum::<u32>()
        };
        assert_eq!(
            (calls("matmul"), calls("unary_neg")),
            (1, 2101),
            "{times:?}"
        );
        assert_eq!(times.len(), 2, "{times:?}");
        for t in &times {
            assert!(t.seconds > 0.0 && t.seconds < 10.0, "{clock:?}: {t:?}");
        }
    }
}
