//! Lexicon sentiment: a port of VADER 3.3.2 (Hutto & Gilbert; word list and emoji list
//! MIT-licensed, embedded from `models/vader_lexicon.tsv` and `models/vader_emoji.tsv`).
//! Rules kept: negation ("not good", "never disappointed"), boosters and dampeners
//! ("very", "slightly"), ALL-CAPS emphasis, "but" (what follows weighs more), "least",
//! "no", punctuation emphasis, and emoji (scored through their descriptions, since the
//! MiniLM vocabulary maps emoji to [UNK]). It needs no model files.

use std::collections::HashMap;
use std::sync::OnceLock;

use anyhow::Result;

use super::Analyzer;
use crate::domain::{Label, Sentiment};

const B_INCR: f32 = 0.293;
const B_DECR: f32 = -0.293;
const C_INCR: f32 = 0.733;
const N_SCALAR: f32 = -0.74;

const LEXICON: &str = include_str!("../../models/vader_lexicon.tsv");
const EMOJI: &str = include_str!("../../models/vader_emoji.tsv");
/// Emoji scored from how people used them (Emoji Sentiment Ranking); VADER's own route,
/// through the emoji's name, misses many ("pouting face" carries no valence).
const EMOJI_RANKING: &str = include_str!("../../models/emoji_sentiment.tsv");
/// Scale from the ranking's -1..1 to VADER's -4..4 valences.
const EMOJI_SCALE: f32 = 4.0;

const NEGATE: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

const BOOST_UP: &[&str] = &[
    "absolutely",
    "amazingly",
    "awfully",
    "completely",
    "considerable",
    "considerably",
    "decidedly",
    "deeply",
    "effing",
    "enormous",
    "enormously",
    "entirely",
    "especially",
    "exceptional",
    "exceptionally",
    "extreme",
    "extremely",
    "fabulously",
    "flipping",
    "flippin",
    "frackin",
    "fracking",
    "fricking",
    "frickin",
    "frigging",
    "friggin",
    "fully",
    "fuckin",
    "fucking",
    "fuggin",
    "fugging",
    "greatly",
    "hella",
    "highly",
    "hugely",
    "incredible",
    "incredibly",
    "intensely",
    "major",
    "majorly",
    "more",
    "most",
    "particularly",
    "purely",
    "quite",
    "really",
    "remarkably",
    "so",
    "substantially",
    "thoroughly",
    "total",
    "totally",
    "tremendous",
    "tremendously",
    "uber",
    "unbelievably",
    "unusually",
    "utter",
    "utterly",
    "very",
];

const BOOST_DOWN: &[&str] = &[
    "almost",
    "barely",
    "hardly",
    "just enough",
    "kind of",
    "kinda",
    "kindof",
    "kind-of",
    "less",
    "little",
    "marginal",
    "marginally",
    "occasional",
    "occasionally",
    "partly",
    "scarce",
    "scarcely",
    "slight",
    "slightly",
    "somewhat",
    "sort of",
    "sorta",
    "sortof",
    "sort-of",
];

const SPECIAL_CASES: &[(&str, f32)] = &[
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("bus stop", 0.0),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
    ("beating heart", 3.5),
];

struct Tables {
    lexicon: HashMap<String, f32>,
    emoji: HashMap<char, String>,
    ranked: HashMap<char, f32>,
    booster: HashMap<&'static str, f32>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let lexicon = LEXICON
            .lines()
            .filter_map(|l| {
                let (w, v) = l.split_once('\t')?;
                Some((w.to_string(), v.trim().parse().ok()?))
            })
            .collect();
        let emoji = EMOJI
            .lines()
            .filter_map(|l| {
                let (e, d) = l.split_once('\t')?;
                let mut chars = e.chars();
                let c = chars.next()?;
                // Only single-character emoji are looked up character by character.
                chars.next().is_none().then(|| (c, d.trim().to_string()))
            })
            .collect();
        let ranked = EMOJI_RANKING
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (e, v) = l.split_once('\t')?;
                let mut chars = e.chars();
                let c = chars.next()?;
                chars.next().is_none().then_some(())?;
                Some((c, v.trim().parse::<f32>().ok()? * EMOJI_SCALE))
            })
            .collect();
        let booster = BOOST_UP
            .iter()
            .map(|w| (*w, B_INCR))
            .chain(BOOST_DOWN.iter().map(|w| (*w, B_DECR)))
            .collect();
        Tables {
            lexicon,
            emoji,
            ranked,
            booster,
        }
    })
}

/// VADER's scores for one text.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scores {
    /// Normalised sum of valences, -1 to 1.
    pub compound: f32,
    pub pos: f32,
    pub neg: f32,
    pub neu: f32,
    /// Compound score of the emoji in the text alone (0 when there are none).
    pub emoji: f32,
    /// Whether a negation word appears.
    pub negated: bool,
}

fn is_upper(s: &str) -> bool {
    // Python's str.isupper: at least one cased character and no lowercase one.
    let mut cased = false;
    for c in s.chars() {
        if c.is_lowercase() {
            return false;
        }
        if c.is_uppercase() {
            cased = true;
        }
    }
    cased
}

fn strip_punct(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    if stripped.chars().count() <= 2 {
        token
    } else {
        stripped
    }
}

fn is_negation(word: &str) -> bool {
    NEGATE.contains(&word) || word.contains("n't")
}

fn normalize(score: f32) -> f32 {
    (score / (score * score + 15.0).sqrt()).clamp(-1.0, 1.0)
}

/// Takes emoji out of the text: those with a usage score become valences of their own,
/// the others are replaced by their description, as VADER does. Returns the text, the
/// emoji valences, and the descriptions alone.
fn expand_emoji(text: &str, t: &Tables) -> (String, Vec<f32>, String) {
    let mut out = String::with_capacity(text.len() + 16);
    let mut valences = Vec::new();
    let mut described = String::new();
    let mut prev_space = true;
    for c in text.chars() {
        if let Some(v) = t.ranked.get(&c) {
            valences.push(*v);
            out.push(' ');
            prev_space = true;
        } else if let Some(desc) = t.emoji.get(&c) {
            if !prev_space {
                out.push(' ');
            }
            out.push_str(desc);
            described.push_str(desc);
            described.push_str(" . ");
            prev_space = false;
        } else {
            out.push(c);
            prev_space = c == ' ';
        }
    }
    (out, valences, described)
}

/// Scores a text with VADER's rules.
pub fn scores(text: &str) -> Scores {
    let t = tables();
    let (expanded, emoji_valences, described) = expand_emoji(text, t);
    let mut s = score_text(expanded.trim(), &emoji_valences, t);
    if !emoji_valences.is_empty() || !described.is_empty() {
        s.emoji = score_text(&described, &emoji_valences, t).compound;
    }
    s
}

fn score_text(text: &str, extra: &[f32], t: &Tables) -> Scores {
    let words: Vec<&str> = text.split_whitespace().map(strip_punct).collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let caps = words.iter().filter(|w| is_upper(w)).count();
    let cap_diff = caps > 0 && caps < words.len();
    let in_lex = |w: &str| t.lexicon.contains_key(w);
    let mut negated = false;

    let mut sentiments: Vec<f32> = Vec::with_capacity(words.len());
    for (i, item) in words.iter().enumerate() {
        let low = lower[i].as_str();
        negated |= is_negation(low);
        if t.booster.contains_key(low)
            || (low == "kind" && lower.get(i + 1).map(String::as_str) == Some("of"))
        {
            sentiments.push(0.0);
            continue;
        }
        let Some(&base) = t.lexicon.get(low) else {
            sentiments.push(0.0);
            continue;
        };
        let mut valence = base;
        if low == "no" && i + 1 < words.len() && in_lex(&lower[i + 1]) {
            valence = 0.0;
        }
        if (i > 0 && lower[i - 1] == "no")
            || (i > 1 && lower[i - 2] == "no")
            || (i > 2 && lower[i - 3] == "no" && (lower[i - 1] == "or" || lower[i - 1] == "nor"))
        {
            valence = base * N_SCALAR;
        }
        if is_upper(item) && cap_diff {
            valence += if valence > 0.0 { C_INCR } else { -C_INCR };
        }
        for start in 0..3 {
            if i <= start {
                break;
            }
            let prev = i - (start + 1);
            if in_lex(&lower[prev]) {
                continue;
            }
            let mut scalar = 0.0;
            if let Some(&b) = t.booster.get(lower[prev].as_str()) {
                scalar = if valence < 0.0 { -b } else { b };
                if is_upper(words[prev]) && cap_diff {
                    scalar += if valence > 0.0 { C_INCR } else { -C_INCR };
                }
            }
            if start == 1 {
                scalar *= 0.95;
            } else if start == 2 {
                scalar *= 0.9;
            }
            valence += scalar;
            valence = negation_check(valence, &lower, start, i);
            if start == 2 {
                valence = special_idioms(valence, &lower, i, t);
            }
        }
        // "least": "the least good" reverses, "at least good" does not.
        if i > 0 && lower[i - 1] == "least" && !in_lex("least") {
            let guarded = i > 1 && (lower[i - 2] == "at" || lower[i - 2] == "very");
            if !guarded {
                valence *= N_SCALAR;
            }
        }
        sentiments.push(valence);
    }

    // "but": what comes before counts half, what follows one and a half.
    if let Some(bi) = lower.iter().position(|w| w == "but") {
        for (si, s) in sentiments.iter_mut().enumerate() {
            if si < bi {
                *s *= 0.5;
            } else if si > bi {
                *s *= 1.5;
            }
        }
    }

    sentiments.extend_from_slice(extra);
    if sentiments.is_empty() {
        return Scores {
            negated,
            ..Default::default()
        };
    }
    let ep = text.matches('!').count().min(4) as f32 * 0.292;
    let qm = match text.matches('?').count() {
        0 | 1 => 0.0,
        n @ 2..=3 => n as f32 * 0.18,
        _ => 0.96,
    };
    let emphasis = ep + qm;
    let mut sum: f32 = sentiments.iter().sum();
    if sum > 0.0 {
        sum += emphasis;
    } else if sum < 0.0 {
        sum -= emphasis;
    }
    let compound = normalize(sum);
    let (mut pos, mut neg, mut neu) = (0.0f32, 0.0f32, 0.0f32);
    for &s in &sentiments {
        if s > 0.0 {
            pos += s + 1.0;
        } else if s < 0.0 {
            neg += s - 1.0;
        } else {
            neu += 1.0;
        }
    }
    if pos > neg.abs() {
        pos += emphasis;
    } else if pos < neg.abs() {
        neg -= emphasis;
    }
    let total = pos + neg.abs() + neu;
    Scores {
        compound,
        pos: (pos / total).abs(),
        neg: (neg / total).abs(),
        neu: (neu / total).abs(),
        emoji: 0.0,
        negated,
    }
}

fn negation_check(valence: f32, w: &[String], start: usize, i: usize) -> f32 {
    match start {
        0 => {
            if is_negation(&w[i - 1]) {
                return valence * N_SCALAR;
            }
        }
        1 => {
            if w[i - 2] == "never" && (w[i - 1] == "so" || w[i - 1] == "this") {
                return valence * 1.25;
            } else if w[i - 2] == "without" && w[i - 1] == "doubt" {
                return valence;
            } else if is_negation(&w[i - 2]) {
                return valence * N_SCALAR;
            }
        }
        _ => {
            let so = |x: &str| x == "so" || x == "this";
            if w[i - 3] == "never" && (so(&w[i - 2]) || so(&w[i - 1])) {
                return valence * 1.25;
            } else if w[i - 3] == "without" && (w[i - 2] == "doubt" || w[i - 1] == "doubt") {
                return valence;
            } else if is_negation(&w[i - 3]) {
                return valence * N_SCALAR;
            }
        }
    }
    valence
}

fn special_idioms(mut valence: f32, w: &[String], i: usize, t: &Tables) -> f32 {
    let seqs = [
        format!("{} {}", w[i - 1], w[i]),
        format!("{} {} {}", w[i - 2], w[i - 1], w[i]),
        format!("{} {}", w[i - 2], w[i - 1]),
        format!("{} {} {}", w[i - 3], w[i - 2], w[i - 1]),
        format!("{} {}", w[i - 3], w[i - 2]),
    ];
    let special = |s: &str| SPECIAL_CASES.iter().find(|(k, _)| *k == s).map(|(_, v)| *v);
    if let Some(v) = seqs.iter().find_map(|s| special(s)) {
        valence = v;
    }
    if i + 1 < w.len() {
        if let Some(v) = special(&format!("{} {}", w[i], w[i + 1])) {
            valence = v;
        }
    }
    if i + 2 < w.len() {
        if let Some(v) = special(&format!("{} {} {}", w[i], w[i + 1], w[i + 2])) {
            valence = v;
        }
    }
    for n in [&seqs[3], &seqs[4], &seqs[2]] {
        if let Some(b) = t.booster.get(n.as_str()) {
            valence += b;
        }
    }
    valence
}

/// Label from a compound score, with VADER's usual ±0.05 neutral band.
pub fn label_of(compound: f32) -> Label {
    if compound >= 0.05 {
        Label::Positive
    } else if compound <= -0.05 {
        Label::Negative
    } else {
        Label::Neutral
    }
}

/// The lexicon-only analyzer (`--model lexicon`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LexiconAnalyzer;

impl LexiconAnalyzer {
    pub fn score_one(text: &str) -> Sentiment {
        let s = scores(text);
        let label = label_of(s.compound);
        // Confidence grows with the distance from the neutral band's edges.
        let confidence = match label {
            Label::Neutral => 1.0 - s.compound.abs() / 0.05 * 0.5,
            _ => 0.5 + 0.5 * s.compound.abs(),
        };
        Sentiment {
            label,
            score: s.compound,
            confidence: confidence.clamp(0.0, 1.0),
        }
    }
}

impl Analyzer for LexiconAnalyzer {
    fn model_id(&self) -> &str {
        "lexicon"
    }

    fn model_version(&self) -> &str {
        "vader-3.3.2"
    }

    fn analyze(&self, texts: &[&str]) -> Result<Vec<Sentiment>> {
        Ok(texts.iter().map(|t| Self::score_one(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> f32 {
        scores(text).compound
    }

    #[test]
    fn matches_vader_reference_examples() {
        // Values printed by the reference implementation (vaderSentiment 3.3.2).
        for (text, want) in [
            ("VADER is smart, handsome, and funny.", 0.8316),
            ("VADER is smart, handsome, and funny!", 0.8439),
            ("VADER is very smart, handsome, and funny.", 0.8545),
            ("The book was good.", 0.4404),
            ("The book was kind of good.", 0.3832),
            ("A really bad, horrible book.", -0.8211),
            ("At least it isn't a horrible book.", 0.431),
        ] {
            assert!(
                (c(text) - want).abs() < 0.002,
                "{text}: {} vs {want}",
                c(text)
            );
        }
    }

    #[test]
    fn negation_flips_polarity() {
        assert!(c("good") > 0.3);
        assert!(c("not good") < -0.2);
        assert!(c("never disappointed") > 0.2);
        assert!(c("disappointed") < -0.2);
        assert!(scores("it isn't bad").negated);
    }

    #[test]
    fn but_weighs_what_follows() {
        let s = c("good but overpriced");
        let plain = c("good and overpriced");
        assert!(s < plain, "{s} vs {plain}");
        assert!(c("The design is nice but the lid is terrible") < -0.3);
        assert!(c("Expensive but absolutely worth it, love it") > 0.5);
    }

    #[test]
    fn caps_and_boosters_intensify() {
        assert!(
            c("The kettle is GREAT, love the design") > c("The kettle is great, love the design")
        );
        assert!(c("very bad") < c("bad"));
        assert!(c("slightly bad") > c("bad"));
    }

    #[test]
    fn emoji_count() {
        let s = scores("😡😡");
        assert!(s.compound < -0.3, "{s:?}");
        assert!(s.emoji < -0.3);
        assert!(scores("Arrived today 😍").compound > 0.3);
        assert_eq!(scores("no emoji here").emoji, 0.0);
    }

    #[test]
    fn edge_cases_do_not_panic() {
        assert_eq!(c(""), 0.0);
        assert_eq!(c("   "), 0.0);
        let long = "terrible ".repeat(2000);
        assert!(c(&long) < -0.9);
        let _ = c("¿Qué tal? Très bien! 日本語のテキスト");
        let _ = c("&amp; &lt;b&gt; no");
        let _ = c("! ? ... :) :( <3");
    }
}
