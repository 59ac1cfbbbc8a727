//! The asynchronous API a browser needs (reads, realisation and optimizer steps that are
//! awaited rather than waited for) gives what the blocking one gives, on both backends,
//! including errors that only a read reports.

mod common;

use pollster::block_on;
use wgrad::nn::{Adam, Dense, Module, Optimizer, Rng, Sequential};
use wgrad::{DType, Tensor};

#[test]
fn asynchronous_reads_match_blocking_ones() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(common::gpu());
    for dev in &devices {
        let x = Tensor::from_slice(dev, &[1.0, -2.0, 3.5, f32::NAN], &[2, 2]).unwrap();
        let y = (&x * 2.0).exp();
        let blocking = y.to_vec().unwrap();
        let awaited = block_on(y.to_vec_async()).unwrap();
        assert_eq!(
            blocking.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            awaited.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{}",
            dev.name()
        );
        let s = x.narrow(0, 0, 1).sum_all();
        assert_eq!(block_on(s.item_async()).unwrap(), -1.0);
        let ids = x.narrow(0, 0, 1).abs().cast(DType::U32);
        assert_eq!(block_on(ids.to_vec_u32_async()).unwrap(), [1, 2]);
        // Realised and run: a later blocking read finds the value computed.
        let z = &x + 1.0;
        block_on(z.realize_async()).unwrap();
        assert!(z.is_realized());
        assert_eq!(z.to_vec().unwrap()[..3], [2.0, -1.0, 4.5]);
        // An index computed on the device past the table's end is an error, awaited too.
        let table = Tensor::from_slice(dev, &[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        let computed = Tensor::from_slice(dev, &[0.0, 9.0], &[2])
            .unwrap()
            .cast(DType::U32);
        let e = block_on(table.gather(&computed).to_vec_async()).unwrap_err();
        assert!(
            matches!(
                e,
                wgrad::Error::Index {
                    op: "gather",
                    index: 9,
                    size: 2
                }
            ),
            "{e} on {}",
            dev.name()
        );
    }
}

#[test]
fn an_awaited_optimizer_step_is_the_blocking_one() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(common::gpu());
    for dev in &devices {
        let run = |awaited: bool| {
            let model = Sequential::new().add(Dense::new(dev, 3, 2, &mut Rng::new(7)).unwrap());
            let mut opt = Adam::new(model.parameters(), 0.1);
            let x = Tensor::from_slice(dev, &[0.5, -1.0, 2.0, 1.0, 0.0, -0.5], &[2, 3]).unwrap();
            let y = Tensor::from_u32(dev, &[1, 0], &[2]).unwrap();
            for _ in 0..3 {
                let loss = wgrad::cross_entropy(&model.forward(&x), &y);
                let grads = loss.backward();
                if awaited {
                    block_on(opt.step_async(&grads, &[&loss])).unwrap();
                } else {
                    opt.step_with(&grads, &[&loss]).unwrap();
                }
            }
            model.parameters()[0].to_vec().unwrap()
        };
        assert_eq!(run(true), run(false), "{}", dev.name());
    }
}
