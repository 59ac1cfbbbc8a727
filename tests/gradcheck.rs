//! Finite-difference checks of every differentiable primitive's backward rule, on the CPU
//! backend, independent of both backends' kernels.

mod common;

use common::*;
use wgrad::Tensor;

#[test]
fn unary_rules() {
    gradcheck("neg", &[f(&[5])], |x| x[0].neg());
    gradcheck("exp", &[f(&[5])], |x| x[0].exp());
    gradcheck("log", &[pos(&[5])], |x| x[0].log());
    gradcheck("sqrt", &[pos(&[5])], |x| x[0].sqrt());
    gradcheck("abs", &[nz(&[6])], |x| x[0].abs());
    gradcheck("sign", &[nz(&[4])], |x| x[0].sign() * &x[0]);
    gradcheck("relu", &[nz(&[6])], |x| x[0].relu());
    gradcheck("sigmoid", &[range(&[6], -4.0, 4.0)], |x| x[0].sigmoid());
    gradcheck("tanh", &[range(&[6], -2.0, 2.0)], |x| x[0].tanh());
    gradcheck("erf", &[range(&[6], -2.0, 2.0)], |x| x[0].erf());
    gradcheck("gelu", &[range(&[6], -3.0, 3.0)], |x| x[0].gelu());
    gradcheck("leaky_relu", &[nz(&[6])], |x| x[0].leaky_relu(0.2));
}

#[test]
fn binary_rules() {
    gradcheck("add", &[f(&[2, 3]), f(&[3])], |x| &x[0] + &x[1]);
    gradcheck("sub", &[f(&[2, 3]), f(&[2, 1])], |x| &x[0] - &x[1]);
    gradcheck("mul", &[f(&[2, 3]), f(&[1, 3])], |x| &x[0] * &x[1]);
    gradcheck("div", &[f(&[2, 3]), pos(&[3])], |x| &x[0] / &x[1]);
    gradcheck("pow", &[pos(&[4]), f(&[4])], |x| x[0].pow(&x[1]));
    gradcheck("maximum", &[distinct(&[3, 4]), distinct(&[4])], |x| {
        x[0].maximum(&x[1])
    });
    gradcheck("minimum", &[distinct(&[3, 4]), distinct(&[3, 1])], |x| {
        x[0].minimum(&x[1])
    });
    gradcheck("where", &[nz(&[3, 4]), f(&[3, 4]), f(&[4])], |x| {
        Tensor::select(&x[0].gt(&x[0].zeros_like()), &x[1], &x[2])
    });
}

#[test]
fn reduction_and_matmul_rules() {
    gradcheck("sum", &[f(&[3, 4, 2])], |x| x[0].sum(&[0, 2], false));
    gradcheck("max", &[distinct(&[3, 5])], |x| x[0].max(&[1], true));
    gradcheck("matmul", &[f(&[3, 4]), f(&[4, 2])], |x| x[0].matmul(&x[1]));
    for (ta, tb) in [(true, false), (false, true), (true, true)] {
        let a = if ta { [2, 4, 3] } else { [2, 3, 4] };
        let b = if tb { [5, 4] } else { [4, 5] };
        gradcheck(
            &format!("matmul_t{}{}", ta as u8, tb as u8),
            &[f(&a), f(&b)],
            move |x| x[0].matmul_t(&x[1], ta, tb),
        );
    }
    gradcheck(
        "matmul_batched_broadcast",
        &[f(&[2, 3, 4]), f(&[4, 2])],
        |x| x[0].matmul(&x[1]),
    );
}

#[test]
fn layout_rules() {
    gradcheck("reshape", &[f(&[2, 3])], |x| {
        x[0].reshape(&[3, 2]) * &x[0].reshape(&[3, 2])
    });
    gradcheck("permute", &[f(&[2, 3, 2])], |x| x[0].permute(&[1, 2, 0]));
    gradcheck("expand", &[f(&[3, 1])], |x| x[0].expand(&[2, 3, 4]));
    gradcheck("slice", &[f(&[4, 5])], |x| x[0].slice(&[(1, 3), (2, 5)]));
    gradcheck("pad", &[f(&[2, 2])], |x| x[0].pad(&[1, 0], &[0, 2]));
    gradcheck("concat", &[f(&[2, 2]), f(&[2, 3])], |x| {
        Tensor::concat(&[&x[0], &x[1]], 1)
    });
    gradcheck("gather", &[f(&[4, 3]), idx(&[5], 4)], |x| {
        x[0].gather(&x[1])
    });
    gradcheck("scatter_add", &[f(&[5, 3]), idx(&[5], 4)], |x| {
        x[0].scatter_add(&x[1], 4)
    });
}

#[test]
fn composite_rules() {
    gradcheck("log_softmax", &[f(&[3, 4])], |x| x[0].log_softmax(-1));
    gradcheck("softmax", &[f(&[3, 4])], |x| x[0].softmax(0));
    gradcheck("cross_entropy", &[f(&[4, 3]), idx(&[4], 3)], |x| {
        wgrad::cross_entropy(&x[0], &x[1])
    });
    gradcheck("bce_with_logits", &[f(&[5]), range(&[5], 0.0, 1.0)], |x| {
        wgrad::bce_with_logits(&x[0], &x[1])
    });
    gradcheck("mse", &[f(&[2, 3]), f(&[2, 3])], |x| {
        wgrad::mse_loss(&x[0], &x[1])
    });
}

#[test]
fn gradient_through_non_differentiable_op_is_a_clear_error() {
    let dev = wgrad::cpu();
    let x = Tensor::param(&dev, &[1.0, -2.0, 3.0], &[3]).unwrap();
    let loss = x.argmax(0, false).cast(wgrad::DType::F32).sum_all();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loss.backward()))
        .expect_err("backward through argmax must fail");
    let msg = err.downcast_ref::<String>().expect("panic message");
    assert!(
        msg.contains("not differentiable") && msg.contains("argmax"),
        "{msg}"
    );

    // A gradient that reaches one parameter but not another names the blocking op.
    let w = Tensor::param(&dev, &[0.5, 0.5, 0.5], &[3]).unwrap();
    let loss = (&w * x.gt(&x.zeros_like())).sum_all();
    let g = loss.backward();
    assert_eq!(g.wrt(&w).to_vec().unwrap(), vec![1.0, 0.0, 1.0]);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.wrt(&x).clone()))
        .expect_err("x has no gradient");
    let msg = err.downcast_ref::<String>().expect("panic message");
    assert!(msg.contains("gt"), "{msg}");
}

/// Hand-computed case: d/dx Σ (x·x) = 2x, and a broadcast bias gets the column sums.
#[test]
fn hand_computed_gradients() {
    let dev = wgrad::cpu();
    let x = Tensor::param(&dev, &[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let b = Tensor::param(&dev, &[10.0, 20.0], &[2]).unwrap();
    let y = (&x * &x + &b).sum_all();
    let g = y.backward();
    assert_eq!(y.item().unwrap(), 1.0 + 4.0 + 9.0 + 16.0 + 60.0);
    assert_eq!(g.wrt(&x).to_vec().unwrap(), vec![2.0, 4.0, 6.0, 8.0]);
    assert_eq!(g.wrt(&b).to_vec().unwrap(), vec![2.0, 2.0]);
}
