//! The MiniLM encoder written with candle tensor ops, so it can be fine-tuned with
//! candle's autograd: embeddings, self-attention + GELU feed-forward layers with their
//! layer norms, attention mask, mean pooling and L2 normalisation, as
//! `candle_transformers::models::bert::BertModel` computes them (a test checks both
//! agree).
//!
//! LoRA: chosen linear projections of every layer ([`Target`]: query, key, value,
//! attention output, feed-forward in and out) get a low-rank update
//! `W + (alpha / r) · B · A` (rank 32, alpha 32). `A` starts small and random (seeded),
//! `B` at zero, so training starts from the base encoder. Only `A`, `B` and the head are
//! trained; the base weights stay frozen. [`Bert::merge`] folds the update into plain
//! weights, so inference runs the unchanged encoder at its usual speed.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};

pub const RANK: usize = 32;
pub const ALPHA: f64 = 32.0;

/// The shape of a BERT encoder (from its config.json).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Dims {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

/// The base weights of a BERT encoder, by their safetensors names.
#[derive(Clone)]
pub struct Bert {
    pub dims: Dims,
    pub weights: HashMap<String, Tensor>,
}

/// A linear projection of every layer that LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Query,
    Key,
    Value,
    AttentionOutput,
    Intermediate,
    Output,
}

impl Target {
    pub const ALL: [Target; 6] = [
        Target::Query,
        Target::Key,
        Target::Value,
        Target::AttentionOutput,
        Target::Intermediate,
        Target::Output,
    ];
    /// The original recipe's targets.
    pub const QUERY_VALUE: [Target; 2] = [Target::Query, Target::Value];

    /// Its name in adapter files, manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Query => "query",
            Target::Key => "key",
            Target::Value => "value",
            Target::AttentionOutput => "attention_output",
            Target::Intermediate => "intermediate",
            Target::Output => "output",
        }
    }

    /// The weight it updates, as named in the encoder's safetensors.
    fn weight(self) -> &'static str {
        match self {
            Target::Query => "attention.self.query",
            Target::Key => "attention.self.key",
            Target::Value => "attention.self.value",
            Target::AttentionOutput => "attention.output.dense",
            Target::Intermediate => "intermediate.dense",
            Target::Output => "output.dense",
        }
    }

    /// (inputs, outputs) of the projection.
    fn shape(self, d: &Dims) -> (usize, usize) {
        match self {
            Target::Intermediate => (d.hidden_size, d.intermediate_size),
            Target::Output => (d.intermediate_size, d.hidden_size),
            _ => (d.hidden_size, d.hidden_size),
        }
    }

    /// `all`, or names separated by commas (`query,value`).
    pub fn parse_list(s: &str) -> Result<Vec<Target>> {
        if s.trim() == "all" {
            return Ok(Target::ALL.to_vec());
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let t = Target::ALL
                .into_iter()
                .find(|t| t.name() == part)
                .with_context(|| {
                    format!(
                        "unknown LoRA target {part:?} (expected all, or some of {})",
                        Target::ALL.map(Target::name).join(", ")
                    )
                })?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        anyhow::ensure!(!out.is_empty(), "no LoRA target given");
        // Canonical order, so the same set always gives the same seeded start.
        out.sort_by_key(|t| Target::ALL.iter().position(|a| a == t));
        Ok(out)
    }
}

/// The low-rank update of one projection of one layer.
pub struct Update {
    pub layer: usize,
    pub target: Target,
    /// A (rank x inputs).
    pub a: Var,
    /// B (outputs x rank).
    pub b: Var,
}

/// The trainable low-rank updates: one per adapted projection per layer, layer by
/// layer.
pub struct Adapter {
    pub rank: usize,
    pub alpha: f64,
    pub updates: Vec<Update>,
}

fn layer_key(i: usize, what: &str) -> String {
    format!("encoder.layer.{i}.{what}")
}

/// `x W^T + b` for `x` of shape (.., in).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let inp = dims[dims.len() - 1];
    let rows = x.elem_count() / inp;
    let y = x.reshape((rows, inp))?.matmul(&w.t()?)?.broadcast_add(b)?;
    let mut out = dims;
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    y.reshape(out)
}

/// A linear layer with a LoRA update: `x W^T + b + scale · (x A^T) B^T`.
pub fn lora_linear(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    a: &Tensor,
    bb: &Tensor,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let base = linear(x, w, b)?;
    let dims = x.dims().to_vec();
    let inp = dims[dims.len() - 1];
    let rows = x.elem_count() / inp;
    let delta = (x.reshape((rows, inp))?.matmul(&a.t()?)?.matmul(&bb.t()?)? * scale)?;
    let delta = delta.reshape(base.shape())?;
    base + delta
}

fn layer_norm(x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let h = x.dim(D::Minus1)? as f64;
    let mean = (x.sum_keepdim(D::Minus1)? / h)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = (xc.sqr()?.sum_keepdim(D::Minus1)? / h)?;
    xc.broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(g)?
        .broadcast_add(b)
}

impl Bert {
    /// Loads the weights (float 32) and the config of the encoder in `dir`.
    pub fn load(dir: &Path) -> Result<Bert> {
        let dims: Dims = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).context("cannot read config.json")?,
        )
        .context("config.json is not a BERT configuration")?;
        let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
            .context("cannot read model.safetensors")?
            .into_iter()
            .filter(|(k, _)| !k.ends_with("position_ids"))
            .map(|(k, t)| {
                Ok((
                    k.trim_start_matches("bert.").to_string(),
                    t.to_dtype(DType::F32)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Bert { dims, weights })
    }

    /// A small random BERT for tests, seeded.
    pub fn random(dims: Dims, seed: u64, dtype: DType) -> Result<Bert> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut weights = HashMap::new();
        let h = dims.hidden_size;
        let mut put = |name: String, shape: Vec<usize>, kind: u8| -> Result<()> {
            let n: usize = shape.iter().product();
            let v: Vec<f64> = (0..n)
                .map(|_| match kind {
                    0 => rng.gen_range(-0.3..0.3),
                    1 => 1.0 + rng.gen_range(-0.1..0.1),
                    _ => rng.gen_range(-0.05..0.05),
                })
                .collect();
            let t = Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dtype)?;
            weights.insert(name, t);
            Ok(())
        };
        put(
            "embeddings.word_embeddings.weight".into(),
            vec![dims.vocab_size, h],
            0,
        )?;
        put(
            "embeddings.position_embeddings.weight".into(),
            vec![dims.max_position_embeddings, h],
            0,
        )?;
        put(
            "embeddings.token_type_embeddings.weight".into(),
            vec![dims.type_vocab_size, h],
            0,
        )?;
        put("embeddings.LayerNorm.weight".into(), vec![h], 1)?;
        put("embeddings.LayerNorm.bias".into(), vec![h], 2)?;
        for i in 0..dims.num_hidden_layers {
            for p in [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
            ] {
                put(layer_key(i, &format!("{p}.weight")), vec![h, h], 0)?;
                put(layer_key(i, &format!("{p}.bias")), vec![h], 2)?;
            }
            put(
                layer_key(i, "intermediate.dense.weight"),
                vec![dims.intermediate_size, h],
                0,
            )?;
            put(
                layer_key(i, "intermediate.dense.bias"),
                vec![dims.intermediate_size],
                2,
            )?;
            put(
                layer_key(i, "output.dense.weight"),
                vec![h, dims.intermediate_size],
                0,
            )?;
            put(layer_key(i, "output.dense.bias"), vec![h], 2)?;
            for p in ["attention.output.LayerNorm", "output.LayerNorm"] {
                put(layer_key(i, &format!("{p}.weight")), vec![h], 1)?;
                put(layer_key(i, &format!("{p}.bias")), vec![h], 2)?;
            }
        }
        Ok(Bert { dims, weights })
    }

    fn w(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.weights
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no weight {name}")))
    }

    /// Hidden states (n, len, hidden) for token ids (n, len) and a 0/1 mask (n, len),
    /// with the adapter's update when given.
    pub fn forward(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        adapter: Option<&Adapter>,
    ) -> candle_core::Result<Tensor> {
        let (n, len) = ids.dims2()?;
        let d = &self.dims;
        let h = d.hidden_size;
        let heads = d.num_attention_heads;
        let hd = h / heads;
        let eps = d.layer_norm_eps;
        let word = self
            .w("embeddings.word_embeddings.weight")?
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((n, len, h))?;
        let pos = self
            .w("embeddings.position_embeddings.weight")?
            .narrow(0, 0, len)?;
        let typ = self
            .w("embeddings.token_type_embeddings.weight")?
            .narrow(0, 0, 1)?;
        let x = word.broadcast_add(&pos)?.broadcast_add(&typ)?;
        let mut x = layer_norm(
            &x,
            self.w("embeddings.LayerNorm.weight")?,
            self.w("embeddings.LayerNorm.bias")?,
            eps,
        )?;
        let dtype = x.dtype();
        // (n, 1, 1, len): 0 where a token is real, the most negative number where padded.
        let bias = ((mask.ones_like()? - mask)?.to_dtype(dtype)? * f64::from(f32::MIN))?
            .reshape((n, 1, 1, len))?;
        let scale = adapter.map(|a| a.alpha / a.rank as f64).unwrap_or(0.0);
        for i in 0..d.num_hidden_layers {
            let p = |s: &str| self.w(&layer_key(i, s));
            let proj = |x: &Tensor, t: Target| -> candle_core::Result<Tensor> {
                let w = p(&format!("{}.weight", t.weight()))?;
                let b = p(&format!("{}.bias", t.weight()))?;
                match adapter.and_then(|a| a.get(i, t)) {
                    Some(u) => lora_linear(x, w, b, u.a.as_tensor(), u.b.as_tensor(), scale),
                    None => linear(x, w, b),
                }
            };
            let q = proj(&x, Target::Query)?;
            let k = proj(&x, Target::Key)?;
            let v = proj(&x, Target::Value)?;
            let split = |t: Tensor| -> candle_core::Result<Tensor> {
                t.reshape((n, len, heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (split(q)?, split(k)?, split(v)?);
            let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n, len, h))?;
            let attn = proj(&ctx, Target::AttentionOutput)?;
            let x1 = layer_norm(
                &(attn + &x)?,
                p("attention.output.LayerNorm.weight")?,
                p("attention.output.LayerNorm.bias")?,
                eps,
            )?;
            let inter = proj(&x1, Target::Intermediate)?.gelu_erf()?;
            let out = proj(&inter, Target::Output)?;
            x = layer_norm(
                &(out + &x1)?,
                p("output.LayerNorm.weight")?,
                p("output.LayerNorm.bias")?,
                eps,
            )?;
        }
        Ok(x)
    }

    /// Mean-pooled, L2-normalised sentence embeddings (n, hidden).
    pub fn embed(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        adapter: Option<&Adapter>,
    ) -> candle_core::Result<Tensor> {
        let hidden = self.forward(ids, mask, adapter)?;
        mean_pool_normalise(&hidden, mask)
    }

    /// The weights with the adapter folded in: `W + (alpha / r) · B · A` for every
    /// adapted projection.
    pub fn merge(&self, adapter: &Adapter) -> Result<Bert> {
        let mut out = self.clone();
        let scale = adapter.alpha / adapter.rank as f64;
        for u in &adapter.updates {
            let key = layer_key(u.layer, &format!("{}.weight", u.target.weight()));
            let w = self.w(&key)?;
            let delta = (u.b.as_tensor().matmul(u.a.as_tensor())? * scale)?.to_dtype(w.dtype())?;
            out.weights.insert(key, (w + delta)?);
        }
        Ok(out)
    }
}

/// Mean over the real tokens, then L2 normalisation.
pub fn mean_pool_normalise(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = (mean.sqr()?.sum_keepdim(1)? + 1e-24)?.sqrt()?;
    mean.broadcast_div(&norm)
}

impl Adapter {
    /// A fresh adapter on `targets` of every layer: A uniform in ±1/sqrt(inputs)
    /// (seeded, drawn layer by layer in target order), B zero.
    pub fn new(
        dims: &Dims,
        rank: usize,
        alpha: f64,
        seed: u64,
        dtype: DType,
        targets: &[Target],
    ) -> Result<Adapter> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut updates = Vec::new();
        for layer in 0..dims.num_hidden_layers {
            for &target in targets {
                let (inp, outp) = target.shape(dims);
                let bound = 1.0 / (inp as f64).sqrt();
                let v: Vec<f64> = (0..rank * inp)
                    .map(|_| rng.gen_range(-bound..bound))
                    .collect();
                let a = Var::from_tensor(
                    &Tensor::from_vec(v, (rank, inp), &Device::Cpu)?.to_dtype(dtype)?,
                )?;
                let b = Var::zeros((outp, rank), dtype, &Device::Cpu)?;
                updates.push(Update {
                    layer,
                    target,
                    a,
                    b,
                });
            }
        }
        Ok(Adapter {
            rank,
            alpha,
            updates,
        })
    }

    /// The update of `target` in `layer`, if that projection is adapted.
    pub fn get(&self, layer: usize, target: Target) -> Option<&Update> {
        self.updates
            .iter()
            .find(|u| u.layer == layer && u.target == target)
    }

    /// The adapted projections, in order.
    pub fn targets(&self) -> Vec<Target> {
        Target::ALL
            .into_iter()
            .filter(|t| self.updates.iter().any(|u| u.target == *t))
            .collect()
    }

    /// Name and variable of every trainable tensor, in a fixed order.
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut out = Vec::new();
        for u in &self.updates {
            let name = u.target.name();
            out.push((format!("layer.{}.{name}.lora_a", u.layer), &u.a));
            out.push((format!("layer.{}.{name}.lora_b", u.layer), &u.b));
        }
        out
    }

    /// Reads an adapter from tensors named as [`Adapter::named_vars`] (any float type):
    /// whichever projections it has, the same ones in every layer.
    pub fn from_tensors(
        map: &HashMap<String, Tensor>,
        layers: usize,
        alpha: f64,
    ) -> Result<Adapter> {
        let get = |k: String| -> Result<Var> {
            let t = map.get(&k).with_context(|| format!("adapter has no {k}"))?;
            Ok(Var::from_tensor(&t.to_dtype(DType::F32)?)?)
        };
        let targets: Vec<Target> = Target::ALL
            .into_iter()
            .filter(|t| map.contains_key(&format!("layer.0.{}.lora_a", t.name())))
            .collect();
        anyhow::ensure!(!targets.is_empty(), "adapter has no LoRA update");
        let mut updates = Vec::new();
        for layer in 0..layers {
            for &target in &targets {
                let name = target.name();
                updates.push(Update {
                    layer,
                    target,
                    a: get(format!("layer.{layer}.{name}.lora_a"))?,
                    b: get(format!("layer.{layer}.{name}.lora_b"))?,
                });
            }
        }
        let rank = updates[0].a.dim(0)?;
        Ok(Adapter {
            rank,
            alpha,
            updates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn tiny_dims() -> Dims {
        Dims {
            vocab_size: 40,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 24,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }

    fn batch(dtype: DType) -> (Tensor, Tensor) {
        let ids = Tensor::new(&[[1u32, 5, 9, 3, 2, 0], [1, 7, 2, 0, 0, 0]], &Device::Cpu).unwrap();
        let mask = Tensor::new(
            &[[1f32, 1., 1., 1., 1., 0.], [1., 1., 1., 0., 0., 0.]],
            &Device::Cpu,
        )
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
        (ids, mask)
    }

    /// Gives B random values, so the update is not zero.
    fn perturb(ad: &Adapter, seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for b in ad.updates.iter().map(|u| &u.b) {
            let v: Vec<f64> = (0..b.elem_count())
                .map(|_| rng.gen_range(-0.2..0.2))
                .collect();
            let t = Tensor::from_vec(v, b.shape(), &Device::Cpu)
                .unwrap()
                .to_dtype(b.dtype())
                .unwrap();
            b.set(&t).unwrap();
        }
    }

    #[test]
    fn merged_and_unmerged_forward_agree() {
        for targets in [&Target::QUERY_VALUE[..], &Target::ALL[..]] {
            merged_and_unmerged_agree_on(targets);
        }
    }

    fn merged_and_unmerged_agree_on(targets: &[Target]) {
        let bert = Bert::random(tiny_dims(), 3, DType::F32).unwrap();
        let ad = Adapter::new(&bert.dims, 4, 8.0, 5, DType::F32, targets).unwrap();
        assert_eq!(ad.updates.len(), targets.len() * 2);
        perturb(&ad, 6);
        let (ids, mask) = batch(DType::F32);
        let unmerged = bert.embed(&ids, &mask, Some(&ad)).unwrap();
        let merged = bert.merge(&ad).unwrap().embed(&ids, &mask, None).unwrap();
        let base = bert.embed(&ids, &mask, None).unwrap();
        let diff = (&unmerged - &merged)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "{targets:?}");
        let moved = (&unmerged - &base)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(
            moved.to_scalar::<f32>().unwrap() > 1e-3,
            "the update changes nothing"
        );
    }

    #[test]
    fn lora_gradients_match_finite_differences() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut t = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
        };
        let x = t(&[2, 3, 5]);
        let w = t(&[4, 5]);
        let b = t(&[4]);
        let a = Var::from_tensor(&t(&[2, 5])).unwrap();
        let bb = Var::from_tensor(&t(&[4, 2])).unwrap();
        let f = |a: &Tensor, bb: &Tensor| -> Tensor {
            lora_linear(&x, &w, &b, a, bb, 1.5)
                .unwrap()
                .tanh()
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let grads = f(a.as_tensor(), bb.as_tensor()).backward().unwrap();
        for (var, which) in [(&a, 0), (&bb, 1)] {
            let g: Vec<f64> = grads
                .get(var)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base: Vec<f64> = var.flatten_all().unwrap().to_vec1().unwrap();
            for (j, gj) in g.iter().enumerate() {
                let eps = 1e-6;
                let mut plus = base.clone();
                plus[j] += eps;
                let mut minus = base.clone();
                minus[j] -= eps;
                let shape = var.shape().clone();
                let mk = |v: Vec<f64>| Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap();
                let (fp, fm) = if which == 0 {
                    (f(&mk(plus), bb.as_tensor()), f(&mk(minus), bb.as_tensor()))
                } else {
                    (f(a.as_tensor(), &mk(plus)), f(a.as_tensor(), &mk(minus)))
                };
                let num =
                    (fp.to_scalar::<f64>().unwrap() - fm.to_scalar::<f64>().unwrap()) / (2.0 * eps);
                assert!(
                    (num - gj).abs() < 1e-6 * (1.0 + num.abs()),
                    "{which}[{j}]: {num} vs {gj}"
                );
            }
        }
    }

    #[test]
    fn gradients_reach_every_adapter_tensor_through_the_encoder() {
        let bert = Bert::random(tiny_dims(), 3, DType::F64).unwrap();
        let ad = Adapter::new(&bert.dims, 4, 8.0, 5, DType::F64, &Target::ALL).unwrap();
        perturb(&ad, 6);
        let (ids, mask) = batch(DType::F64);
        let loss = bert
            .embed(&ids, &mask, Some(&ad))
            .unwrap()
            .sum_keepdim(1)
            .unwrap();
        let loss = loss.narrow(1, 0, 1).unwrap().sum_all().unwrap();
        let emb = bert.embed(&ids, &mask, Some(&ad)).unwrap();
        let loss = (emb.narrow(1, 0, 3).unwrap().sum_all().unwrap() + loss).unwrap();
        let grads = loss.backward().unwrap();
        for (name, v) in ad.named_vars() {
            let g = grads
                .get(v)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let n = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(n > 0.0, "{name}: zero gradient");
        }
    }

    #[test]
    fn targets_parse_and_round_trip_through_tensors() {
        assert_eq!(Target::parse_list("all").unwrap(), Target::ALL.to_vec());
        assert_eq!(
            Target::parse_list("value, query,value").unwrap(),
            Target::QUERY_VALUE.to_vec()
        );
        let err = Target::parse_list("query,ffn").unwrap_err().to_string();
        assert!(err.contains("\"ffn\""), "{err}");
        assert!(Target::parse_list(" , ").is_err());

        let dims = tiny_dims();
        let targets = Target::parse_list("key,intermediate,output").unwrap();
        let ad = Adapter::new(&dims, 4, 8.0, 5, DType::F32, &targets).unwrap();
        perturb(&ad, 7);
        let map: HashMap<String, Tensor> = ad
            .named_vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        let back = Adapter::from_tensors(&map, dims.num_hidden_layers, 8.0).unwrap();
        assert_eq!(back.targets(), targets);
        assert_eq!(back.rank, 4);
        let u = back.get(1, Target::Intermediate).unwrap();
        assert_eq!(u.a.dims(), [4, dims.hidden_size]);
        assert_eq!(u.b.dims(), [dims.intermediate_size, 4]);
        assert_eq!(
            back.get(1, Target::Output).unwrap().a.dims(),
            [4, dims.intermediate_size]
        );
        assert!(back.get(0, Target::Query).is_none());
    }

    /// candle-transformers' BertModel on the same weights.
    fn reference(bert: &Bert) -> candle_transformers::models::bert::BertModel {
        let d = &bert.dims;
        let config: candle_transformers::models::bert::Config =
            serde_json::from_value(serde_json::json!({
                "vocab_size": d.vocab_size,
                "hidden_size": d.hidden_size,
                "num_hidden_layers": d.num_hidden_layers,
                "num_attention_heads": d.num_attention_heads,
                "intermediate_size": d.intermediate_size,
                "hidden_act": "gelu",
                "hidden_dropout_prob": 0.0,
                "max_position_embeddings": d.max_position_embeddings,
                "type_vocab_size": d.type_vocab_size,
                "initializer_range": 0.02,
                "layer_norm_eps": d.layer_norm_eps,
                "pad_token_id": 0,
                "position_embedding_type": "absolute",
            }))
            .unwrap();
        let vb =
            candle_nn::VarBuilder::from_tensors(bert.weights.clone(), DType::F32, &Device::Cpu);
        candle_transformers::models::bert::BertModel::load(vb, &config).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn forward_matches_candle_bert_on_a_tiny_random_model() {
        let bert = Bert::random(tiny_dims(), 11, DType::F32).unwrap();
        let (ids, mask) = batch(DType::F32);
        let ours = bert.forward(&ids, &mask, None).unwrap();
        let theirs = reference(&bert)
            .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
            .unwrap();
        // Padded positions differ in nothing that is pooled; compare the real tokens.
        let m = mask.unsqueeze(2).unwrap();
        let d = max_diff(
            &ours.broadcast_mul(&m).unwrap(),
            &theirs.broadcast_mul(&m).unwrap(),
        );
        assert!(d < 1e-4, "{d}");
    }

    #[test]
    fn forward_matches_candle_bert_on_the_minilm_encoder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let bert = Bert::load(&dir).expect("the encoder files (scripts/fetch-models.sh)");
        let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let texts = [
            "The battery easily lasts a full day, but the charger stopped working.",
            "Loved it!",
            "Worst purchase ever, do not buy.",
        ];
        let encs: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| tok.encode(*t, true).unwrap().get_ids().to_vec())
            .map(|ids| ids.into_iter().take_while(|&i| i != 0).collect())
            .collect();
        let len = encs.iter().map(Vec::len).max().unwrap();
        let mut ids = vec![0u32; texts.len() * len];
        let mut mask = vec![0f32; texts.len() * len];
        for (r, e) in encs.iter().enumerate() {
            ids[r * len..r * len + e.len()].copy_from_slice(e);
            mask[r * len..r * len + e.len()].fill(1.0);
        }
        let ids = Tensor::from_vec(ids, (texts.len(), len), &Device::Cpu).unwrap();
        let mask = Tensor::from_vec(mask, (texts.len(), len), &Device::Cpu).unwrap();
        let ours = bert.embed(&ids, &mask, None).unwrap();
        let hidden = reference(&bert)
            .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
            .unwrap();
        let theirs = mean_pool_normalise(&hidden, &mask).unwrap();
        let d = max_diff(&ours, &theirs);
        assert!(d < 1e-4, "{d}");
    }
}
