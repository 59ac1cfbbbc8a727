//! Weight initialisers drawn from a seeded [`Rng`].

use crate::rng::Rng;

/// How a layer's weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Init {
    /// Glorot (Xavier) uniform: `U(-a, a)`, `a = √(6 / (fan_in + fan_out))` (Keras' default).
    #[default]
    GlorotUniform,
    /// Glorot normal: `N(0, 2 / (fan_in + fan_out))`.
    GlorotNormal,
    /// He (Kaiming) uniform: `U(-a, a)`, `a = √(6 / fan_in)`, for ReLU networks.
    HeUniform,
    /// He normal: `N(0, 2 / fan_in)`.
    HeNormal,
    /// `N(0, std²)`.
    Normal(f32),
    /// Every weight the same value.
    Constant(f32),
}

impl Init {
    /// `n` weights for a layer with the given fan-in and fan-out.
    pub fn sample(self, rng: &mut Rng, fan_in: usize, fan_out: usize, n: usize) -> Vec<f32> {
        let (fi, fo) = (fan_in.max(1) as f32, fan_out.max(1) as f32);
        let uniform = |rng: &mut Rng, a: f32| (0..n).map(|_| rng.range(-a, a)).collect();
        let normal = |rng: &mut Rng, std: f32| (0..n).map(|_| rng.normal() * std).collect();
        match self {
            Init::GlorotUniform => uniform(rng, (6.0 / (fi + fo)).sqrt()),
            Init::GlorotNormal => normal(rng, (2.0 / (fi + fo)).sqrt()),
            Init::HeUniform => uniform(rng, (6.0 / fi).sqrt()),
            Init::HeNormal => normal(rng, (2.0 / fi).sqrt()),
            Init::Normal(std) => normal(rng, std),
            Init::Constant(v) => vec![v; n],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glorot_uniform_stays_in_its_bound_and_fills_it() {
        let w = Init::GlorotUniform.sample(&mut Rng::new(1), 100, 50, 5000);
        let a = (6.0f32 / 150.0).sqrt();
        assert!(w.iter().all(|&x| x.abs() <= a));
        assert!(w.iter().any(|&x| x > 0.9 * a) && w.iter().any(|&x| x < -0.9 * a));
    }

    #[test]
    fn he_normal_has_the_right_variance() {
        let w = Init::HeNormal.sample(&mut Rng::new(2), 200, 10, 20_000);
        let var = w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32;
        assert!((var - 0.01).abs() < 0.001, "variance {var}");
    }
}
