//! The MiniLM sentence encoder (all-MiniLM-L6-v2: BERT, 6 layers, 384 dimensions) run
//! with candle on the CPU, tokenised with the `tokenizers` crate. Mean pooling over the
//! real tokens, then L2 normalisation, as the model card says.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::Tokenizer;

/// Longest input, in tokens, including [CLS] and [SEP].
pub const MAX_TOKENS: usize = 256;
/// Texts encoded together at most.
const BATCH: usize = 32;
/// Tokens (texts x longest text) encoded together at most.
const BATCH_TOKENS: usize = 2048;
pub const DIM: usize = 384;

/// The files the encoder needs, in the models folder.
pub const FILES: &[&str] = &["model.safetensors", "tokenizer.json", "config.json"];

/// Embeddings with the index of their text.
type Embedded = Vec<(usize, Vec<f32>)>;

/// A token's place in its text: byte span, and whether it starts a word (a "##" piece
/// does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub word_start: bool,
}

/// A text's tokens, without [CLS] and [SEP].
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub spans: Vec<Span>,
}

pub struct Encoder {
    tokenizer: Tokenizer,
    model: BertModel,
    device: Device,
    cls: u32,
    sep: u32,
}

impl Encoder {
    pub fn load(dir: &Path) -> Result<Encoder> {
        Encoder::load_with(dir, None)
    }

    /// The encoder in `dir`, with these weights instead of `model.safetensors` when
    /// given (the fine-tuned encoder with its LoRA update merged).
    pub fn load_with(
        dir: &Path,
        weights: Option<std::collections::HashMap<String, Tensor>>,
    ) -> Result<Encoder> {
        for f in FILES {
            let p = dir.join(f);
            anyhow::ensure!(p.exists(), "missing model file {}", p.display());
        }
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| anyhow::anyhow!("cannot read tokenizer.json: {e}"))?;
        // The shipped tokenizer pads every text to 128 tokens and cuts there; we pad per
        // batch and keep the head and tail of long texts ourselves.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let cls = tokenizer.token_to_id("[CLS]").context("no [CLS] token")?;
        let sep = tokenizer.token_to_id("[SEP]").context("no [SEP] token")?;
        let config: Config = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).context("cannot read config.json")?,
        )
        .context("config.json is not a BERT configuration")?;
        let device = Device::Cpu;
        // SAFETY: the file is mapped read-only and not modified while zmot runs.
        let vb = match weights {
            Some(w) => VarBuilder::from_tensors(w, DType::F32, &device),
            None => unsafe {
                VarBuilder::from_mmaped_safetensors(
                    &[dir.join("model.safetensors")],
                    DType::F32,
                    &device,
                )?
            },
        };
        let model = BertModel::load(vb, &config).context("cannot load the encoder weights")?;
        Ok(Encoder {
            tokenizer,
            model,
            device,
            cls,
            sep,
        })
    }

    /// Token ids with [CLS] and [SEP]. A text longer than [`MAX_TOKENS`] keeps its
    /// beginning and its end (reviews tend to open with the verdict and close with the
    /// conclusion), a quarter and three quarters of the budget.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        self.token_ids_max(text, MAX_TOKENS)
    }

    /// Token ids as [`Encoder::token_ids`], at most `max` of them.
    pub fn token_ids_max(&self, text: &str, max: usize) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenise: {e}"))?;
        let ids = enc.get_ids();
        let budget = max.max(3) - 2;
        let mut out = Vec::with_capacity(ids.len().min(budget) + 2);
        out.push(self.cls);
        if ids.len() <= budget {
            out.extend_from_slice(ids);
        } else {
            let head = budget / 4;
            let tail = budget - head;
            out.extend_from_slice(&ids[..head]);
            out.extend_from_slice(&ids[ids.len() - tail..]);
        }
        out.push(self.sep);
        Ok(out)
    }

    /// The tokens of a text without [CLS] and [SEP], uncut, with their byte spans.
    pub fn tokenize(&self, text: &str) -> Result<Tokens> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenise: {e}"))?;
        let words = enc.get_word_ids();
        let spans = enc
            .get_offsets()
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| Span {
                start,
                end,
                // A "##" piece continues the word before it.
                word_start: i == 0 || words[i].is_none() || words[i] != words[i - 1],
            })
            .collect();
        Ok(Tokens {
            ids: enc.get_ids().to_vec(),
            spans,
        })
    }

    /// Token ids between [CLS] and [SEP], as the encoder reads them (not cut).
    pub fn with_specials(&self, ids: &[u32]) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len() + 2);
        out.push(self.cls);
        out.extend_from_slice(ids);
        out.push(self.sep);
        out
    }

    /// Sentence embeddings (L2-normalised), one per text, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.token_ids(t))
            .collect::<Result<_>>()?;
        self.embed_token_ids(&ids)
    }

    /// Embeddings (L2-normalised) of token id sequences ([CLS] and [SEP] included), one
    /// per sequence, in order.
    ///
    /// Sequences are sorted by length and cut into batches of at most [`BATCH`] texts and
    /// [`BATCH_TOKENS`] tokens (so little padding is computed, and long reviews do not
    /// build huge attention matrices), and the batches run on every core: the matrix
    /// products are parallel already, the rest of a BERT layer is not.
    pub fn embed_token_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| (ids[i].len(), i));
        let mut batches: Vec<&[usize]> = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            // Sorted by length: the last text of a batch is its longest.
            while end < order.len()
                && end - start < BATCH
                && (end - start + 1) * ids[order[end]].len() <= BATCH_TOKENS
            {
                end += 1;
            }
            batches.push(&order[start..end]);
            start = end;
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(batches.len())
            .max(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<Embedded>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| -> Result<Embedded> {
                        let mut out = Vec::new();
                        loop {
                            let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(batch) = batches.get(b) else {
                                return Ok(out);
                            };
                            let embs = self.embed_ids(batch.iter().map(|&i| ids[i].as_slice()))?;
                            out.extend(batch.iter().copied().zip(embs));
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("encoder thread panicked")))
                })
                .collect()
        });
        let mut out = vec![Vec::new(); ids.len()];
        for r in results {
            for (i, e) in r? {
                out[i] = e;
            }
        }
        Ok(out)
    }

    fn embed_ids<'a>(
        &self,
        batch: impl Iterator<Item = &'a [u32]> + Clone,
    ) -> Result<Vec<Vec<f32>>> {
        let n = batch.clone().count();
        let len = batch.clone().map(<[u32]>::len).max().unwrap_or(2);
        let mut input = vec![0u32; n * len];
        let mut mask = vec![0f32; n * len];
        for (r, ids) in batch.enumerate() {
            input[r * len..r * len + ids.len()].copy_from_slice(ids);
            mask[r * len..r * len + ids.len()].fill(1.0);
        }
        let input = Tensor::from_vec(input, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let types = input.zeros_like()?;
        let hidden = self.model.forward(&input, &types, Some(&mask))?;
        let m = mask.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        let unit = mean.broadcast_div(&norm)?;
        Ok(unit.to_vec2::<f32>()?)
    }
}
