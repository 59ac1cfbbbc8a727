// Helpers shared by every kernel family; prepended to each family's source when it is loaded
// (crates/device/src/shaders.rs), so a family file may call them.

// i / d without integer division, which CPU adapters run one lane at a time: below 2^24 the
// f32 quotient is within one of the true one and a correction step makes it exact.
fn quot(i: u32, d: u32) -> u32 {
    if (i >= 16777216u) {
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

