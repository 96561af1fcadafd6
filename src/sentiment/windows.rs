//! Long texts scored by windows: a text longer than the window the fine-tuned encoder
//! was trained at (128 tokens with [CLS] and [SEP]) is cut into chunks of whole
//! sentences that fit in it, every chunk is scored, and the chunks' class probabilities
//! are combined into one result for the text.

use std::ops::Range;

use anyhow::Result;

use super::encoder::{Span, Tokens};
use super::head::CLASSES;

/// Window, in tokens, [CLS] and [SEP] included: the length `zmot train --fine-tune`
/// cuts texts to.
pub const WINDOW: usize = 128;
/// Tokens of text in a window.
pub const BUDGET: usize = WINDOW - 2;

/// How a text longer than the window is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongTexts {
    /// One pass over its first quarter and last three quarters of 256 tokens.
    HeadTail,
    /// Windows, probabilities averaged weighted by the windows' token counts.
    Mean,
    /// Windows, as `Mean` with the last window's weight doubled (reviews often end with
    /// the verdict).
    MeanLastDouble,
    /// Windows, the last window half of the result, the others' token-weighted mean the
    /// other half.
    LastHalf,
    /// Windows, the probabilities of the window the model is surest about.
    MaxConfidence,
}

/// The strategy the MiniLM analyzers use: the best binary accuracy on 1,000 held-out
/// whole IMDB reviews for both `minilm-head` and `minilm-lora`
/// (`zmot eval --long-reviews 1000`, README).
pub const DEFAULT: LongTexts = LongTexts::Mean;

impl LongTexts {
    pub const ALL: [LongTexts; 5] = [
        LongTexts::HeadTail,
        LongTexts::Mean,
        LongTexts::MeanLastDouble,
        LongTexts::LastHalf,
        LongTexts::MaxConfidence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LongTexts::HeadTail => "head+tail 256",
            LongTexts::Mean => "windows, mean",
            LongTexts::MeanLastDouble => "windows, mean, last x2",
            LongTexts::LastHalf => "windows, last = 1/2",
            LongTexts::MaxConfidence => "windows, max confidence",
        }
    }

    /// Short tag appended to the model version when long texts are scored by windows.
    pub fn tag(self) -> Option<&'static str> {
        match self {
            LongTexts::HeadTail => None,
            LongTexts::Mean => Some("w128-mean"),
            LongTexts::MeanLastDouble => Some("w128-last2"),
            LongTexts::LastHalf => Some("w128-lasthalf"),
            LongTexts::MaxConfidence => Some("w128-maxconf"),
        }
    }
}

fn is_terminal(token: &str) -> bool {
    matches!(token, "." | "!" | "?")
}

/// Windows of a text: consecutive token ranges covering all its tokens in order, each
/// at most `budget` tokens, made of whole sentences (a sentence ends after a run of
/// `.`, `!` or `?`). A sentence longer than `budget` is cut into pieces of at most
/// `budget` tokens, at a word's start when one is in reach.
pub fn windows(text: &str, spans: &[Span], budget: usize) -> Vec<Range<usize>> {
    let budget = budget.max(1);
    let n = spans.len();
    // Sentences, then the pieces of the long ones.
    let mut units: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    for i in 0..n {
        let tok = |k: usize| text.get(spans[k].start..spans[k].end).unwrap_or("");
        let end_here = is_terminal(tok(i)) && (i + 1 == n || !is_terminal(tok(i + 1)));
        if end_here || i + 1 == n {
            let mut s = start;
            while i + 1 - s > budget {
                let limit = s + budget;
                let cut = (s + 1..=limit)
                    .rev()
                    .find(|&k| spans[k].word_start)
                    .unwrap_or(limit);
                units.push(s..cut);
                s = cut;
            }
            units.push(s..i + 1);
            start = i + 1;
        }
    }
    // Whole sentences packed in order while they fit.
    let mut out: Vec<Range<usize>> = Vec::new();
    for u in units {
        match out.last_mut() {
            Some(last) if u.end - last.start <= budget => last.end = u.end,
            _ => out.push(u),
        }
    }
    out
}

/// The text of a window: from its first token's start to its last token's end.
pub fn window_text<'a>(text: &'a str, spans: &[Span], r: &Range<usize>) -> &'a str {
    if r.is_empty() {
        return "";
    }
    &text[spans[r.start].start..spans[r.end - 1].end]
}

/// One result from the windows' probabilities and token counts, in text order.
pub fn combine(parts: &[([f32; CLASSES], usize)], how: LongTexts) -> [f32; CLASSES] {
    let weighted = |weights: &[f32]| -> [f32; CLASSES] {
        let total: f32 = weights.iter().sum();
        let mut p = [0f32; CLASSES];
        for ((q, _), w) in parts.iter().zip(weights) {
            for c in 0..CLASSES {
                p[c] += q[c] * w / total.max(f32::MIN_POSITIVE);
            }
        }
        p
    };
    let counts: Vec<f32> = parts.iter().map(|&(_, n)| n.max(1) as f32).collect();
    match (how, parts) {
        (_, []) => [0.0, 1.0, 0.0],
        (_, [(p, _)]) => *p,
        (LongTexts::HeadTail | LongTexts::Mean, _) => weighted(&counts),
        (LongTexts::MeanLastDouble, _) => {
            let mut w = counts;
            if let Some(last) = w.last_mut() {
                *last *= 2.0;
            }
            weighted(&w)
        }
        (LongTexts::LastHalf, _) => {
            let rest: f32 = counts[..counts.len() - 1].iter().sum();
            let mut w: Vec<f32> = counts[..counts.len() - 1]
                .iter()
                .map(|c| c / rest)
                .collect();
            w.push(1.0);
            weighted(&w)
        }
        (LongTexts::MaxConfidence, _) => {
            let conf = |p: &[f32; CLASSES]| p.iter().copied().fold(f32::MIN, f32::max);
            // The first of equally sure windows.
            let mut best = &parts[0].0;
            for (p, _) in &parts[1..] {
                if conf(p) > conf(best) {
                    best = p;
                }
            }
            *best
        }
    }
}

/// What is scored for a batch of texts: the pieces (text, token ids without [CLS] and
/// [SEP]) and which pieces belong to which text.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    pub pieces: Vec<(&'a str, Vec<u32>)>,
    pub owners: Vec<Range<usize>>,
}

/// One piece per text of at most [`BUDGET`] tokens (the text itself), windows for the
/// longer ones.
pub fn plan<'a>(texts: &[&'a str], tokenize: impl Fn(&str) -> Result<Tokens>) -> Result<Plan<'a>> {
    let mut plan = Plan::default();
    for &t in texts {
        let Tokens { ids, spans } = tokenize(t)?;
        let first = plan.pieces.len();
        if ids.len() <= BUDGET {
            plan.pieces.push((t, ids));
        } else {
            for r in windows(t, &spans, BUDGET) {
                plan.pieces
                    .push((window_text(t, &spans, &r), ids[r.clone()].to_vec()));
            }
        }
        plan.owners.push(first..plan.pieces.len());
    }
    Ok(plan)
}

/// Class probabilities per text: its pieces' probabilities (`scored`, one per piece of
/// `plan`, in order) combined. A text's result depends only on its own pieces, so not
/// on the batch it came in.
pub fn gather(plan: &Plan<'_>, scored: &[[f32; CLASSES]], how: LongTexts) -> Vec<[f32; CLASSES]> {
    plan.owners
        .iter()
        .map(|r| {
            // A window of emoji or punctuation alone is all [UNK] to the encoder.
            let worded: Vec<usize> = r
                .clone()
                .filter(|&k| super::has_words(plan.pieces[k].0))
                .collect();
            let keep = if worded.is_empty() {
                r.clone().collect()
            } else {
                worded
            };
            let parts: Vec<([f32; CLASSES], usize)> = keep
                .into_iter()
                .map(|k| (scored[k], plan.pieces[k].1.len()))
                .collect();
            combine(&parts, how)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words and punctuation marks as tokens, as BERT's pre-tokeniser cuts them; a word
    /// longer than 6 letters is two tokens, the second a "##" piece.
    fn tokenize(text: &str) -> Result<Tokens> {
        let mut spans = Vec::new();
        let mut word: Option<usize> = None;
        let flush = |from: usize, to: usize, spans: &mut Vec<Span>| {
            spans.push(Span {
                start: from,
                end: (from + 6).min(to),
                word_start: true,
            });
            if to > from + 6 {
                spans.push(Span {
                    start: from + 6,
                    end: to,
                    word_start: false,
                });
            }
        };
        for (i, c) in text.char_indices() {
            if c.is_alphanumeric() {
                word.get_or_insert(i);
                continue;
            }
            if let Some(w) = word.take() {
                flush(w, i, &mut spans);
            }
            if !c.is_whitespace() {
                spans.push(Span {
                    start: i,
                    end: i + c.len_utf8(),
                    word_start: true,
                });
            }
        }
        if let Some(w) = word {
            flush(w, text.len(), &mut spans);
        }
        let ids = spans.iter().map(|s| s.start as u32).collect();
        Ok(Tokens { ids, spans })
    }

    /// A stand-in for the model: positive as the share of "good" among good and bad.
    fn score(pieces: &[(&str, Vec<u32>)]) -> Vec<[f32; CLASSES]> {
        pieces
            .iter()
            .map(|(t, _)| {
                let good = t.matches("good").count() as f32;
                let bad = t.matches("bad").count() as f32;
                let pos = (good + 0.5) / (good + bad + 1.0);
                [0.9 * (1.0 - pos), 0.1, 0.9 * pos]
            })
            .collect()
    }

    fn long_review() -> String {
        let mut s = String::new();
        for i in 0..12 {
            s.push_str(&format!(
                "Sentence {i} says the film was good and then bad and then good again, really. "
            ));
        }
        // A run-on sentence longer than the window, with long words cut in two tokens.
        for i in 0..70 {
            s.push_str(&format!("extraordinarily{i} good "));
        }
        s.push_str("Wow!!! The ending was bad?");
        s
    }

    #[test]
    fn long_texts_are_cut_into_whole_sentences_within_the_window() {
        let text = long_review();
        let toks = tokenize(&text).unwrap();
        assert!(toks.spans.len() > 2 * BUDGET);
        let ws = windows(&text, &toks.spans, BUDGET);
        assert!(ws.len() >= 3);
        // Every token once, in order, every window within the budget.
        assert_eq!(ws[0].start, 0);
        assert_eq!(ws.last().unwrap().end, toks.spans.len());
        for pair in ws.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert!(ws.iter().all(|w| !w.is_empty() && w.len() <= BUDGET));
        let texts: Vec<&str> = ws
            .iter()
            .map(|w| window_text(&text, &toks.spans, w))
            .collect();
        // Windows end at a sentence's end, except in the run-on sentence.
        assert!(texts[0].ends_with("really."), "{}", texts[0]);
        assert!(texts[0].starts_with("Sentence 0 "));
        assert!(texts.last().unwrap().ends_with("The ending was bad?"));
        // No word is cut in the run-on sentence.
        assert!(ws.iter().all(|w| toks.spans[w.start].word_start));
        // Every sentence is in a window, in order, whole.
        let joined = texts.join(" ");
        assert_eq!(
            joined.split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>()
        );
        for i in 0..12 {
            let sentence = format!(
                "Sentence {i} says the film was good and then bad and then good again, really."
            );
            assert_eq!(texts.iter().filter(|t| t.contains(&sentence)).count(), 1);
        }
        // "Wow!!!" ends its sentence after the whole run of marks.
        assert!(texts
            .iter()
            .any(|t| t.ends_with("Wow!!! The ending was bad?")));
    }

    #[test]
    fn short_texts_are_one_piece_and_results_ignore_the_batch() {
        let long = long_review();
        let short = "A good kettle.";
        let other = "bad bad bad. ".repeat(60);
        let alone = plan(&[long.as_str()], tokenize).unwrap();
        let mixed = plan(&[short, long.as_str(), other.as_str(), short], tokenize).unwrap();
        assert_eq!(mixed.owners.len(), 4);
        assert_eq!(mixed.owners[0].len(), 1);
        assert_eq!(mixed.pieces[mixed.owners[0].start].0, short);
        assert!(mixed.owners[1].len() >= 3);
        for how in LongTexts::ALL {
            let a = gather(&alone, &score(&alone.pieces), how);
            let m = gather(&mixed, &score(&mixed.pieces), how);
            assert_eq!(a[0], m[1], "{how:?}");
            assert_eq!(m[0], m[3]);
            // A short text's result is its own piece's.
            assert_eq!(m[0], score(&[(short, vec![])])[0]);
            assert!((m[1].iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn combinations_weigh_windows_as_described() {
        let neg = [0.8, 0.1, 0.1];
        let pos = [0.1, 0.1, 0.8];
        let parts = [(neg, 90), (pos, 30)];
        let mean = combine(&parts, LongTexts::Mean);
        assert!((mean[0] - (0.8 * 0.75 + 0.1 * 0.25)).abs() < 1e-6);
        let last2 = combine(&parts, LongTexts::MeanLastDouble);
        assert!((last2[2] - (0.1 * 0.6 + 0.8 * 0.4)).abs() < 1e-6);
        let half = combine(&parts, LongTexts::LastHalf);
        assert!((half[2] - 0.45).abs() < 1e-6);
        let sure = combine(
            &[(neg, 90), ([0.05, 0.05, 0.9], 10)],
            LongTexts::MaxConfidence,
        );
        assert_eq!(sure, [0.05, 0.05, 0.9]);
    }
}
