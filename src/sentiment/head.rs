//! The classifier on top of the encoder: multinomial logistic regression over the
//! sentence embedding plus lexicon signals (VADER compound, positive and negative
//! shares, emoji score, negation), three classes. Trained by `zmot train`, deterministic
//! for a seed, stored as a small safetensors file.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::encoder::DIM;
use super::lexicon::Scores;
use crate::domain::Label;

/// Lexicon features appended to the embedding.
pub const LEX_FEATURES: usize = 5;
pub const FEATURES: usize = DIM + LEX_FEATURES;
/// negative, neutral, positive
pub const CLASSES: usize = 3;

pub fn class_index(l: Label) -> usize {
    match l {
        Label::Negative => 0,
        Label::Neutral => 1,
        Label::Positive => 2,
    }
}

pub const LABELS: [Label; CLASSES] = [Label::Negative, Label::Neutral, Label::Positive];

/// The feature vector for one text.
pub fn features(embedding: &[f32], lex: &Scores) -> Vec<f32> {
    let mut f = Vec::with_capacity(FEATURES);
    f.extend_from_slice(embedding);
    f.extend_from_slice(&[
        lex.compound,
        lex.pos,
        lex.neg,
        lex.emoji,
        if lex.negated { 1.0 } else { 0.0 },
    ]);
    f
}

#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// CLASSES x FEATURES, row-major.
    pub weights: Vec<f32>,
    pub bias: [f32; CLASSES],
}

impl Head {
    pub fn zeros() -> Head {
        Head {
            weights: vec![0.0; CLASSES * FEATURES],
            bias: [0.0; CLASSES],
        }
    }

    /// Class probabilities.
    pub fn probabilities(&self, x: &[f32]) -> [f32; CLASSES] {
        let mut z = self.bias;
        for (c, zc) in z.iter_mut().enumerate() {
            let w = &self.weights[c * FEATURES..(c + 1) * FEATURES];
            *zc += w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
        }
        softmax(z)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let w = candle_core::Tensor::from_vec(
            self.weights.clone(),
            (CLASSES, FEATURES),
            &candle_core::Device::Cpu,
        )?;
        let b =
            candle_core::Tensor::from_vec(self.bias.to_vec(), CLASSES, &candle_core::Device::Cpu)?;
        let map: HashMap<String, candle_core::Tensor> =
            [("weight".to_string(), w), ("bias".to_string(), b)].into();
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Head> {
        let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let w = map.get("weight").context("head has no weight")?;
        let b = map.get("bias").context("head has no bias")?;
        anyhow::ensure!(
            w.dims() == [CLASSES, FEATURES] && b.dims() == [CLASSES],
            "head shape {:?}/{:?} does not match {CLASSES}x{FEATURES}",
            w.dims(),
            b.dims()
        );
        let bias: Vec<f32> = b.to_vec1()?;
        Ok(Head {
            weights: w.flatten_all()?.to_vec1()?,
            bias: [bias[0], bias[1], bias[2]],
        })
    }
}

fn softmax(z: [f32; CLASSES]) -> [f32; CLASSES] {
    let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e = z.map(|v| (v - m).exp());
    let s: f32 = e.iter().sum();
    e.map(|v| v / s)
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub seed: u64,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f32,
    pub l2: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            seed: 42,
            epochs: 12,
            batch: 64,
            learning_rate: 0.01,
            l2: 1e-4,
        }
    }
}

/// Trains the head with mini-batch Adam on the cross-entropy, classes weighted by their
/// inverse frequency. Single-threaded and seeded: the same data gives the same weights.
pub fn train(x: &[Vec<f32>], y: &[usize], opts: &TrainOptions) -> Head {
    assert_eq!(x.len(), y.len());
    let mut head = Head::zeros();
    let n = x.len().max(1);
    let mut counts = [0usize; CLASSES];
    for &c in y {
        counts[c] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    let class_weight: [f32; CLASSES] = std::array::from_fn(|c| {
        if counts[c] == 0 {
            0.0
        } else {
            n as f32 / (present as f32 * counts[c] as f32)
        }
    });
    let params = CLASSES * FEATURES + CLASSES;
    let (mut m, mut v) = (vec![0f32; params], vec![0f32; params]);
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut step = 0i32;
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut order: Vec<usize> = (0..x.len()).collect();
    let mut grad = vec![0f32; params];
    for _ in 0..opts.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(opts.batch.max(1)) {
            grad.iter_mut().for_each(|g| *g = 0.0);
            let mut wsum = 0.0f32;
            for &i in batch {
                let p = head.probabilities(&x[i]);
                let cw = class_weight[y[i]];
                wsum += cw;
                for c in 0..CLASSES {
                    let d = cw * (p[c] - if c == y[i] { 1.0 } else { 0.0 });
                    let g = &mut grad[c * FEATURES..(c + 1) * FEATURES];
                    for (gj, xj) in g.iter_mut().zip(&x[i]) {
                        *gj += d * xj;
                    }
                    grad[CLASSES * FEATURES + c] += d;
                }
            }
            let scale = 1.0 / wsum.max(1e-6);
            step += 1;
            let lr = opts.learning_rate * (1.0 - b2.powi(step)).sqrt() / (1.0 - b1.powi(step));
            for k in 0..params {
                let w = if k < CLASSES * FEATURES {
                    head.weights[k]
                } else {
                    head.bias[k - CLASSES * FEATURES]
                };
                let mut g = grad[k] * scale;
                if k < CLASSES * FEATURES {
                    g += opts.l2 * w;
                }
                m[k] = b1 * m[k] + (1.0 - b1) * g;
                v[k] = b2 * v[k] + (1.0 - b2) * g * g;
                let upd = lr * m[k] / (v[k].sqrt() + eps);
                if k < CLASSES * FEATURES {
                    head.weights[k] -= upd;
                } else {
                    head.bias[k - CLASSES * FEATURES] -= upd;
                }
            }
        }
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        // Three separable clusters along two feature directions.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        use rand::Rng;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = i % CLASSES;
            let mut f = vec![0f32; FEATURES];
            for v in f.iter_mut() {
                *v = rng.gen_range(-0.05..0.05);
            }
            f[0] += c as f32 - 1.0;
            f[DIM] += (c as f32 - 1.0) * 0.8;
            x.push(f);
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn learns_separable_classes_and_round_trips() {
        let (x, y) = toy(300, 1);
        let head = train(&x, &y, &TrainOptions::default());
        let correct = x
            .iter()
            .zip(&y)
            .filter(|(xi, &yi)| {
                let p = head.probabilities(xi);
                let best = (0..CLASSES).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
                best == yi
            })
            .count();
        assert!(correct >= 290, "{correct}/300");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.safetensors");
        head.save(&path).unwrap();
        assert_eq!(Head::load(&path).unwrap(), head);
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let (x, y) = toy(120, 2);
        let a = train(&x, &y, &TrainOptions::default());
        let b = train(&x, &y, &TrainOptions::default());
        assert_eq!(a, b);
        let c = train(
            &x,
            &y,
            &TrainOptions {
                seed: 7,
                ..Default::default()
            },
        );
        assert_ne!(a, c);
    }

    #[test]
    fn load_rejects_a_wrong_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        let w =
            candle_core::Tensor::zeros((2, 3), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap();
        let map: HashMap<String, candle_core::Tensor> =
            [("weight".to_string(), w.clone()), ("bias".to_string(), w)].into();
        candle_core::safetensors::save(&map, &path).unwrap();
        assert!(Head::load(&path)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
    }
}
