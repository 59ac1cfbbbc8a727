//! Host writes: small ones are gathered until the next submission and copied into place there,
//! large ones go through the queue at once. Whatever the mix, every buffer must hold what was
//! written to it last, and work recorded before a write must see the contents before it.

mod common;

use common::{bytes, floats};
use wgrad_device::{Context, GpuBackend};
use wgrad_graph::op::{DType, Op, UnaryOp};
use wgrad_graph::{Arg, Backend, Launch};

fn backend() -> Option<GpuBackend> {
    match Context::shared() {
        Ok(ctx) => Some(GpuBackend::new(ctx)),
        Err(e) if std::env::var("WGRAD_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("WGRAD_REQUIRE_GPU=1 but no GPU adapter could be opened: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED (no GPU adapter): {e}");
            None
        }
    }
}

/// Fails at the first value that differs (the vectors are long).
fn assert_same(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "length");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("value {i}: got {}, want {}", got[i], want[i]);
    }
}

/// `n` values starting at `start`, one apart.
fn ramp(start: f32, n: usize) -> Vec<f32> {
    (0..n).map(|i| start + i as f32).collect()
}

#[test]
fn many_small_writes_each_land_in_their_buffer() {
    let Some(be) = backend() else { return };
    // Writes of up to 64 KiB are gathered, up to 8 MiB at a time: 150 rounds gather 9.8 MB, so
    // some writes submit the ones before them. Every tenth round adds a write too large to
    // gather.
    let sizes = [1usize, 3, 64, 1000, 16_384, 100_000];
    let mut written = Vec::new();
    for round in 0..150 {
        for (k, &n) in sizes.iter().enumerate() {
            if n == 100_000 && round % 10 != 0 {
                continue;
            }
            let id = be.alloc(n * 4).unwrap();
            let values = ramp((round * 100 + k) as f32 * 1000.0, n);
            be.write(id, &bytes(&values)).unwrap();
            written.push((id, values));
        }
    }
    for (id, values) in &written {
        assert_same(&floats(&be.read(*id, values.len() * 4).unwrap()), values);
    }
}

#[test]
fn the_last_write_to_a_buffer_wins_whatever_its_size() {
    let Some(be) = backend() else { return };
    let big = 20_000; // 80 KB: written through the queue, not gathered
    let id = be.alloc(big * 4).unwrap();
    let read = |n: usize| floats(&be.read(id, n * 4).unwrap());

    // Gathered, then gathered again.
    be.write(id, &bytes(&[1.0, 2.0])).unwrap();
    be.write(id, &bytes(&[3.0, 4.0])).unwrap();
    assert_eq!(read(2), [3.0, 4.0]);

    // Gathered, then a large write: the large one must land after.
    be.write(id, &bytes(&[5.0; 4])).unwrap();
    let large = ramp(-7.0, big);
    be.write(id, &bytes(&large)).unwrap();
    assert_same(&read(big), &large);

    // A large write, then a gathered one over its first values.
    be.write(id, &bytes(&large)).unwrap();
    be.write(id, &bytes(&[9.0, 10.0, 11.0])).unwrap();
    let got = read(big);
    assert_eq!(got[..3], [9.0, 10.0, 11.0]);
    assert_same(&got[3..], &large[3..]);
}

#[test]
fn recorded_work_reads_what_was_there_before_a_later_write() {
    let Some(be) = backend() else { return };
    let n = 5;
    let (x, y) = (be.alloc(n * 4).unwrap(), be.alloc(n * 4).unwrap());
    let arg = |buffer: usize| Arg {
        buffer,
        shape: &[5],
        dtype: DType::F32,
    };
    let neg = Op::Unary(UnaryOp::Neg);
    be.write(x, &bytes(&ramp(1.0, n))).unwrap();
    // y = -x is recorded, not yet submitted; then x is overwritten.
    be.exec(&Launch::Op {
        op: &neg,
        inputs: &[arg(x)],
        out: &arg(y),
    })
    .unwrap();
    be.write(x, &bytes(&ramp(100.0, n))).unwrap();
    // And once more with the write and the work in the other order, in one submission.
    let z = be.alloc(n * 4).unwrap();
    be.exec(&Launch::Op {
        op: &neg,
        inputs: &[arg(x)],
        out: &arg(z),
    })
    .unwrap();
    be.flush().unwrap();
    let negated = |v: Vec<f32>| v.into_iter().map(|v| -v).collect::<Vec<_>>();
    assert_eq!(floats(&be.read(y, n * 4).unwrap()), negated(ramp(1.0, n)));
    assert_eq!(floats(&be.read(z, n * 4).unwrap()), negated(ramp(100.0, n)));
    assert_eq!(floats(&be.read(x, n * 4).unwrap()), ramp(100.0, n));
}

#[test]
fn gathered_writes_survive_their_buffer_being_handed_out_again() {
    let Some(be) = backend() else { return };
    // Written, freed and taken again before anything is submitted: the second owner's write
    // is the one that stays.
    let a = be.alloc(16).unwrap();
    be.write(a, &bytes(&[1.0, 2.0, 3.0, 4.0])).unwrap();
    be.free(a);
    let b = be.alloc(16).unwrap();
    assert_eq!(a, b, "the pool hands out the buffer just freed");
    be.write(b, &bytes(&[5.0, 6.0])).unwrap();
    assert_eq!(floats(&be.read(b, 8).unwrap()), [5.0, 6.0]);
}
