// Helpers shared by every kernel family; prepended to each family's source when it is loaded
// (crates/device/src/shaders.rs), so a family file may call them.

// i / d without integer division, which CPU adapters run one lane at a time. Below 2^22 the
// f32 quotient (WGSL allows 2.5 ulp of error) is within one of the true one, and one
// correction step makes it exact.
fn quot(i: u32, d: u32) -> u32 {
    if (i >= 4194304u) {
        return i / d;
    }
    var q = u32(f32(i) / f32(d));
    if (q * d > i) {
        q -= 1u;
    } else if ((q + 1u) * d <= i) {
        q += 1u;
    }
    return q;
}

// Through a variable, so that the bitcast is not a constant expression: browsers' compilers
// refuse a constant infinity or NaN.
fn inf() -> f32 {
    var bits = 0x7f800000u;
    return bitcast<f32>(bits);
}

fn nan() -> f32 {
    var bits = 0x7fc00000u;
    return bitcast<f32>(bits);
}

// NaN and infinity by their bits: compilers may assume that no float is NaN, and then fold
// `x != x` to false (lavapipe does), but not a test of the bits.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn is_inf(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u;
}

// 1.0 or 0.0: a comparison's result, false when either operand is NaN (IEEE's rule).
fn flag(c: bool) -> f32 {
    return select(0.0, 1.0, c);
}

// Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7.
fn erf_f(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-x * x);
    return select(-y, y, x >= 0.0);
}

// x^y with C's rules for negative bases (integer exponents only), zero and NaN (x^0 and
// 1^y are 1 even for NaN; otherwise NaN in, NaN out, which log2 of NaN need not give).
fn pow_f(x: f32, y: f32) -> f32 {
    if (y == 0.0 || x == 1.0) {
        return 1.0;
    }
    if (is_nan(x) || is_nan(y)) {
        return nan();
    }
    if (x == 0.0) {
        return select(0.0, inf(), y < 0.0);
    }
    let m = exp2(y * log2(abs(x)));
    if (x > 0.0) {
        return m;
    }
    if (fract(y) != 0.0) {
        return nan();
    }
    return select(m, -m, abs(y) % 2.0 == 1.0);
}

// ---- the math of every elementwise op, shared by elementwise.wgsl and fused kernels ----

fn f_neg(x: f32) -> f32 { return -x; }
fn f_exp(x: f32) -> f32 { return exp(x); }
// log of 0 is -inf and of a negative number NaN, as on the CPU.
fn f_log(x: f32) -> f32 { return select(select(log(x), -inf(), x == 0.0), nan(), x < 0.0); }
fn f_sqrt(x: f32) -> f32 { return select(sqrt(x), nan(), x < 0.0); }
fn f_abs(x: f32) -> f32 { return abs(x); }
// NaN stays NaN, as in PyTorch (WGSL leaves `sign` and `max` of NaN to the implementation).
fn f_sign(x: f32) -> f32 { return select(sign(x), x, is_nan(x)); }
fn f_relu(x: f32) -> f32 { return select(max(x, 0.0), x, is_nan(x)); }
// Stable for large |x|: only exp of a non-positive number is taken.
fn f_sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    let s = 1.0 / (1.0 + e);
    return select(e * s, s, x >= 0.0);
}
fn f_tanh(x: f32) -> f32 {
    let t = exp(-2.0 * abs(x));
    let y = (1.0 - t) / (1.0 + t);
    return select(-y, y, x >= 0.0);
}
fn f_erf(x: f32) -> f32 { return erf_f(x); }
fn f_gelu(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_f(x * 0.70710678118654752)); }
fn f_leaky_relu(x: f32, slope: f32) -> f32 { return select(slope * x, x, x > 0.0); }
fn f_add(a: f32, b: f32) -> f32 { return a + b; }
fn f_sub(a: f32, b: f32) -> f32 { return a - b; }
fn f_mul(a: f32, b: f32) -> f32 { return a * b; }
fn f_div(a: f32, b: f32) -> f32 { return a / b; }
fn f_pow(a: f32, b: f32) -> f32 { return pow_f(a, b); }
// Either operand NaN: NaN (PyTorch's maximum and minimum propagate it).
fn f_maximum(a: f32, b: f32) -> f32 { return select(max(a, b), a + b, is_nan(a) || is_nan(b)); }
fn f_minimum(a: f32, b: f32) -> f32 { return select(min(a, b), a + b, is_nan(a) || is_nan(b)); }
fn f_eq(a: f32, b: f32) -> f32 { return flag(a == b && !is_nan(a) && !is_nan(b)); }
fn f_ne(a: f32, b: f32) -> f32 { return flag(a != b || is_nan(a) || is_nan(b)); }
fn f_lt(a: f32, b: f32) -> f32 { return flag(a < b && !is_nan(a) && !is_nan(b)); }
fn f_le(a: f32, b: f32) -> f32 { return flag(a <= b && !is_nan(a) && !is_nan(b)); }
fn f_gt(a: f32, b: f32) -> f32 { return flag(a > b && !is_nan(a) && !is_nan(b)); }
fn f_ge(a: f32, b: f32) -> f32 { return flag(a >= b && !is_nan(a) && !is_nan(b)); }
fn f_isnan(x: f32) -> f32 { return flag(is_nan(x)); }
fn f_isinf(x: f32) -> f32 { return flag(is_inf(x)); }
fn f_isfinite(x: f32) -> f32 { return flag((bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u); }
fn f_where(c: f32, a: f32, b: f32) -> f32 { return select(b, a, c != 0.0 || is_nan(c)); }
