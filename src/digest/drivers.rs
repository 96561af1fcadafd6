//! What drives negativity: the words and two-word phrases that are over-represented in
//! this week's negative mentions compared with a baseline.
//!
//! The method is the weighted log-odds ratio with an informative Dirichlet prior of
//! Monroe, Colaresi and Quinn (2008, "Fightin' Words", Political Analysis 16(4)). For a
//! term `w` with count `y_n` in the negative set (total `n_n`) and `y_b` in the baseline
//! (total `n_b`), and a prior `α_w = a·(y_n + y_b)` with `α_0 = a·(n_n + n_b)` (the pooled
//! counts, scaled by `a` = [`DriverOptions::prior_weight`]):
//!
//! ```text
//! δ_w = ln((y_n + α_w) / (n_n + α_0 − y_n − α_w)) − ln((y_b + α_w) / (n_b + α_0 − y_b − α_w))
//! σ²_w ≈ 1 / (y_n + α_w) + 1 / (y_b + α_w)
//! z_w = δ_w / σ_w
//! ```
//!
//! A large positive `z` means the term is much more frequent among negative mentions than
//! in the baseline, with rare terms shrunk towards zero by the prior.
//!
//! Counting and vocabulary:
//! - A count is the number of mentions that contain the term (each mention counts a term
//!   once), so one rant repeating a word does not make it a driver.
//! - Texts are lowercased and cut into words on word boundaries; apostrophes inside words
//!   are kept (`don't`), a trailing `'s` is dropped, curly apostrophes are folded.
//!   URLs, e-mail addresses, `@handles` and tokens without a letter (numbers) are dropped;
//!   `#tags` keep their word. Single letters count as stop words.
//! - Terms are unigrams that are not stop words ([`STOP_WORDS`]) and bigrams of two
//!   adjacent words, neither of which is a stop word, within one sentence (bigrams do not
//!   span `. , ! ? ; :` brackets, quotes, dropped URLs or numbers).
//!
//! Choosing the list: a term needs at least [`DriverOptions::min_mentions`] negative
//! mentions and `z ≥` [`DriverOptions::min_z`]. Candidates are taken in order of `z`
//! (ties by term). A bigram is preferred to its words: a unigram whose mentions are mostly
//! ([`DriverOptions::cover`]) covered by candidate bigrams containing it is replaced, at
//! its rank, by the strongest of those bigrams; a bigram whose mentions are mostly covered
//! by an already chosen bigram sharing a word with it is skipped as redundant.
//!
//! The baseline should be mentions that are not this week's negatives: for example all
//! mentions of the previous weeks, or this period's non-negative mentions. An empty
//! baseline gives no drivers (there is nothing to be over-represented against).

use std::collections::{BTreeSet, HashMap, HashSet};

/// English stop words (the NLTK list, with apostrophe-less contractions and a few fillers
/// common in reviews). Matched after lowercasing; single letters are stop words too.
#[rustfmt::skip]
pub const STOP_WORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "ain", "all", "also", "am", "an",
    "and", "any", "are", "aren", "aren't", "arent", "as", "at", "be", "because", "been",
    "before", "being", "below", "between", "both", "but", "by", "can", "can't", "cant",
    "could", "couldn", "couldn't", "couldnt", "d", "did", "didn", "didn't", "didnt", "do",
    "does", "doesn", "doesn't", "doesnt", "doing", "don", "don't", "dont", "down", "during",
    "each", "etc", "even", "ever", "every", "few", "for", "from", "further", "get", "gets",
    "getting", "go", "goes", "going", "got", "had", "hadn", "hadn't", "has", "hasn",
    "hasn't", "have", "haven", "haven't", "having", "he", "he'd", "he'll", "her", "here",
    "hers", "herself", "him", "himself", "his", "how", "however", "i", "i'd", "i'll", "i'm",
    "i've", "id", "if", "im", "in", "into", "is", "isn", "isn't", "isnt", "it", "it'd",
    "it'll", "it's", "its", "itself", "ive", "just", "ll", "m", "ma", "many", "me",
    "mightn", "mightn't", "more", "most", "much", "mustn", "mustn't", "my", "myself",
    "needn", "needn't", "no", "nor", "not", "now", "o", "of", "off", "on", "once", "only",
    "or", "other", "our", "ours", "ourselves", "out", "over", "own", "re", "really", "s",
    "same", "shan", "shan't", "she", "she'd", "she'll", "she's", "should", "should've",
    "shouldn", "shouldn't", "so", "some", "such", "t", "than", "that", "that'll", "that's",
    "thats", "the", "their", "theirs", "them", "themselves", "then", "there", "there's",
    "these", "they", "they'd", "they'll", "they're", "they've", "this", "those", "though",
    "through", "to", "too", "under", "until", "up", "us", "ve", "very", "was", "wasn",
    "wasn't", "wasnt", "we", "we'd", "we'll", "we're", "we've", "were", "weren", "weren't",
    "what", "what's", "when", "where", "which", "while", "who", "whom", "why", "will",
    "with", "won", "won't", "wont", "would", "wouldn", "wouldn't", "wouldnt", "y", "yet",
    "you", "you'd", "you'll", "you're", "you've", "your", "yours", "yourself", "yourselves",
];

/// Characters that end a sentence (or a clause): no bigram spans them.
const SENTENCE_BREAKS: &[char] = &[
    '.', ',', '!', '?', ';', ':', '(', ')', '[', ']', '{', '}', '"', '|', '\u{201c}', '\u{201d}',
    '\u{2026}', '\u{2013}', '\u{2014}',
];

/// Placeholder for a dropped token (a number) that keeps bigrams from spanning it.
const GAP: &str = "";

/// True for a stop word, a single character, or a dropped token.
pub fn is_stop_word(word: &str) -> bool {
    static SET: std::sync::OnceLock<HashSet<&'static str>> = std::sync::OnceLock::new();
    let set = SET.get_or_init(|| STOP_WORDS.iter().copied().collect());
    word.chars().count() <= 1 || set.contains(word)
}

/// Cuts a text into sentences of lowercased words, as described in the module
/// documentation. Dropped numbers stay as empty strings so that no bigram spans them.
pub fn tokenize(text: &str) -> Vec<Vec<String>> {
    let mut sentences: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    fn end_sentence(current: &mut Vec<String>, sentences: &mut Vec<Vec<String>>) {
        if current.iter().any(|w| !w.is_empty()) {
            sentences.push(std::mem::take(current));
        } else {
            current.clear();
        }
    }
    let lowered = text
        .to_lowercase()
        .replace(['\u{2019}', '\u{2018}', '\u{02bc}', '`'], "'");
    for chunk in lowered.split_whitespace() {
        let bare = chunk.trim_start_matches(|c: char| !c.is_alphanumeric() && c != '@');
        if bare.starts_with("http://")
            || bare.starts_with("https://")
            || bare.starts_with("www.")
            || bare.contains("://")
            || bare.starts_with('@')
            || (bare.contains('@') && bare.contains('.'))
        {
            end_sentence(&mut current, &mut sentences);
            continue;
        }
        let mut word = String::new();
        let mut chars = chunk.chars().peekable();
        let mut prev_alnum = false;
        while let Some(c) = chars.next() {
            if c.is_alphanumeric() {
                word.push(c);
                prev_alnum = true;
                continue;
            }
            let next_alnum = chars.peek().is_some_and(|n| n.is_alphanumeric());
            if c == '\'' && prev_alnum && next_alnum {
                word.push(c);
                prev_alnum = false;
                continue;
            }
            push_word(&mut current, std::mem::take(&mut word));
            prev_alnum = false;
            if SENTENCE_BREAKS.contains(&c) {
                end_sentence(&mut current, &mut sentences);
            }
        }
        push_word(&mut current, word);
    }
    end_sentence(&mut current, &mut sentences);
    sentences
}

fn push_word(sentence: &mut Vec<String>, word: String) {
    if word.is_empty() {
        return;
    }
    let word = word.strip_suffix("'s").map(str::to_string).unwrap_or(word);
    let word = word.trim_matches('\'');
    if word.chars().any(char::is_alphabetic) {
        sentence.push(word.to_string());
    } else {
        sentence.push(GAP.to_string());
    }
}

/// The distinct terms (unigrams and bigrams, as defined in the module documentation) of
/// a text, sorted.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for sentence in tokenize(text) {
        for (i, w) in sentence.iter().enumerate() {
            if is_stop_word(w) {
                continue;
            }
            out.insert(w.clone());
            if let Some(next) = sentence.get(i + 1) {
                if !is_stop_word(next) {
                    out.insert(format!("{w} {next}"));
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Settings of [`find_drivers`].
#[derive(Debug, Clone, PartialEq)]
pub struct DriverOptions {
    /// How many drivers to return at most.
    pub top_k: usize,
    /// A term must occur in at least this many distinct negative mentions.
    pub min_mentions: usize,
    /// A term must reach this z-score (1.96 is the two-sided 95% level).
    pub min_z: f64,
    /// Strength `a` of the informative prior, as a fraction of the pooled counts.
    pub prior_weight: f64,
    /// Share of a term's mentions that, once covered by a preferred bigram, makes it
    /// redundant.
    pub cover: f64,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            top_k: 8,
            min_mentions: 2,
            min_z: 1.96,
            prior_weight: 0.1,
            cover: 0.6,
        }
    }
}

/// A term that drives negativity this week.
#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    /// A word or two-word phrase, lowercased.
    pub term: String,
    /// Negative mentions containing it.
    pub count: usize,
    /// Baseline mentions containing it.
    pub baseline_count: usize,
    /// Weighted log-odds z-score: how strongly it is over-represented.
    pub z: f64,
    /// Index (into the negative texts) of an example mention containing the term: the most
    /// negative one when scores are given, else the first.
    pub example: usize,
}

/// Per-term counts over both sets.
struct Vocabulary {
    /// Term -> sorted indices of the negative mentions containing it.
    negative: HashMap<String, Vec<usize>>,
    /// Term -> number of baseline mentions containing it.
    baseline: HashMap<String, usize>,
}

fn vocabulary<N: AsRef<str>, B: AsRef<str>>(negative: &[N], baseline: &[B]) -> Vocabulary {
    let mut neg: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, text) in negative.iter().enumerate() {
        for term in terms(text.as_ref()) {
            neg.entry(term).or_default().push(i);
        }
    }
    let mut base: HashMap<String, usize> = HashMap::new();
    for text in baseline {
        for term in terms(text.as_ref()) {
            *base.entry(term).or_default() += 1;
        }
    }
    Vocabulary {
        negative: neg,
        baseline: base,
    }
}

/// The weighted log-odds z-score of one term (see the module documentation).
pub fn log_odds_z(y_neg: f64, n_neg: f64, y_base: f64, n_base: f64, prior_weight: f64) -> f64 {
    let alpha = prior_weight * (y_neg + y_base);
    let alpha0 = prior_weight * (n_neg + n_base);
    if alpha <= 0.0 {
        return 0.0;
    }
    let odds_neg = (y_neg + alpha) / (n_neg + alpha0 - y_neg - alpha);
    let odds_base = (y_base + alpha) / (n_base + alpha0 - y_base - alpha);
    let delta = odds_neg.ln() - odds_base.ln();
    let variance = 1.0 / (y_neg + alpha) + 1.0 / (y_base + alpha);
    delta / variance.sqrt()
}

/// The drivers of negativity in `negative` against `baseline`; the first mention containing
/// a term is its example. See [`find_drivers_scored`] to pick the most negative instead.
pub fn find_drivers<N: AsRef<str>, B: AsRef<str>>(
    negative: &[N],
    baseline: &[B],
    options: &DriverOptions,
) -> Vec<Driver> {
    find_drivers_scored(negative, &[], baseline, options)
}

/// Like [`find_drivers`], with a sentiment score per negative mention (same order as
/// `negative`; lower is more negative): each driver's example is its most negative
/// mention (ties: the first). Scores missing at the end of the slice count as 0.
pub fn find_drivers_scored<N: AsRef<str>, B: AsRef<str>>(
    negative: &[N],
    scores: &[f64],
    baseline: &[B],
    options: &DriverOptions,
) -> Vec<Driver> {
    if negative.is_empty() || options.top_k == 0 {
        return Vec::new();
    }
    let vocab = vocabulary(negative, baseline);
    let n_neg: usize = vocab.negative.values().map(Vec::len).sum();
    let n_base: usize = vocab.baseline.values().sum();

    struct Candidate<'a> {
        term: &'a str,
        docs: &'a [usize],
        baseline: usize,
        z: f64,
        bigram: Option<(&'a str, &'a str)>,
    }
    let mut candidates: Vec<Candidate<'_>> = vocab
        .negative
        .iter()
        .filter(|(_, docs)| docs.len() >= options.min_mentions.max(1))
        .filter_map(|(term, docs)| {
            let baseline = vocab.baseline.get(term).copied().unwrap_or(0);
            let z = log_odds_z(
                docs.len() as f64,
                n_neg as f64,
                baseline as f64,
                n_base as f64,
                options.prior_weight,
            );
            (z.is_finite() && z >= options.min_z).then(|| Candidate {
                term,
                docs,
                baseline,
                z,
                bigram: term.split_once(' '),
            })
        })
        .collect();
    candidates.sort_by(|a, b| b.z.total_cmp(&a.z).then_with(|| a.term.cmp(b.term)));

    let covered = |docs: &[usize], by: &[usize]| -> bool {
        let hit = docs.iter().filter(|d| by.binary_search(d).is_ok()).count();
        hit as f64 >= options.cover * docs.len() as f64
    };
    let shares_word =
        |a: (&str, &str), b: (&str, &str)| a.0 == b.0 || a.0 == b.1 || a.1 == b.0 || a.1 == b.1;

    // (candidate, rank z): a bigram chosen in place of a word ranks at the word's z.
    let mut chosen: Vec<(usize, f64)> = Vec::new();
    let mut done: HashSet<usize> = HashSet::new();
    for idx in 0..candidates.len() {
        if chosen.len() >= options.top_k {
            break;
        }
        if done.contains(&idx) {
            continue;
        }
        let c = &candidates[idx];
        let pick = match c.bigram {
            Some(_) => Some(idx),
            None => {
                // Candidate bigrams containing this word, strongest first.
                let containing: Vec<usize> = (0..candidates.len())
                    .filter(|&j| {
                        candidates[j]
                            .bigram
                            .is_some_and(|(a, b)| a == c.term || b == c.term)
                    })
                    .collect();
                let mut union: Vec<usize> = containing
                    .iter()
                    .flat_map(|&j| candidates[j].docs.iter().copied())
                    .collect();
                union.sort_unstable();
                union.dedup();
                if !containing.is_empty() && covered(c.docs, &union) {
                    // The phrase says it better: it takes the word's place.
                    containing.into_iter().find(|j| !done.contains(j))
                } else {
                    Some(idx)
                }
            }
        };
        done.insert(idx);
        let Some(pick) = pick else { continue };
        done.insert(pick);
        let p = &candidates[pick];
        if let Some(pair) = p.bigram {
            let redundant = chosen.iter().any(|&(k, _)| {
                let q = &candidates[k];
                q.bigram.is_some_and(|qp| shares_word(pair, qp)) && covered(p.docs, q.docs)
            });
            if redundant {
                continue;
            }
        }
        chosen.push((pick, c.z.max(p.z)));
    }
    chosen.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| candidates[a.0].term.cmp(candidates[b.0].term))
    });

    chosen
        .into_iter()
        .map(|(k, _)| {
            let c = &candidates[k];
            let score = |i: usize| scores.get(i).copied().unwrap_or(0.0);
            let example = c
                .docs
                .iter()
                .copied()
                .min_by(|&a, &b| score(a).total_cmp(&score(b)).then(a.cmp(&b)))
                .unwrap_or(0);
            Driver {
                term: c.term.to_string(),
                count: c.docs.len(),
                baseline_count: c.baseline,
                z: c.z,
                example,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_keeps_apostrophes_and_drops_noise() {
        let s = tokenize(
            "I DON'T like it… The app’s login fails: see https://x.io/a @acme #Bug 42 times, mail me@x.com",
        );
        assert_eq!(
            s,
            vec![
                vec!["i", "don't", "like", "it"],
                vec!["the", "app", "login", "fails"],
                vec!["see"],
                vec!["bug", "", "times"],
                vec!["mail"],
            ]
        );
    }

    #[test]
    fn terms_skip_stop_words_and_sentence_breaks() {
        let t = terms("The battery drain is awful. Battery, drain! Not working at all");
        assert_eq!(
            t,
            vec!["awful", "battery", "battery drain", "drain", "working"]
        );
        // No bigram across the number or with a stop word at either end.
        assert_eq!(terms("waited 3 weeks"), vec!["waited", "weeks"]);
        assert!(terms("the the of and I a").is_empty());
    }

    #[test]
    fn log_odds_is_zero_for_equal_rates_and_grows_with_evidence() {
        let equal = log_odds_z(10.0, 100.0, 100.0, 1000.0, 0.1);
        assert!(equal.abs() < 1e-9, "{equal}");
        let few = log_odds_z(3.0, 100.0, 0.0, 1000.0, 0.1);
        let many = log_odds_z(30.0, 100.0, 0.0, 1000.0, 0.1);
        assert!(few > 0.0 && many > few, "{few} {many}");
        let under = log_odds_z(1.0, 100.0, 100.0, 1000.0, 0.1);
        assert!(under < 0.0);
        assert_eq!(log_odds_z(0.0, 0.0, 0.0, 0.0, 0.1), 0.0);
    }

    /// A baseline of ordinary mentions and a negative week with two planted complaints.
    fn corpus() -> (Vec<String>, Vec<f64>, Vec<String>) {
        let filler = [
            "the app is fine and the design looks clean",
            "I use this app every day for my notes",
            "works as expected, nice colours and a good price",
            "the new update is okay, the widget is handy",
            "customer for years, the app does what it says",
            "the screen layout is clear and the fonts are readable",
        ];
        let mut baseline = Vec::new();
        for i in 0..300 {
            baseline.push(format!(
                "{} {}",
                filler[i % filler.len()],
                ["", "today", "again"][i % 3]
            ));
        }
        // Everyday words shared with the baseline, in the negatives too.
        baseline.push("battery is fine".to_string());
        baseline.push("asked for a refund once, it was quick".to_string());
        let battery = [
            "battery drain since the last version",
            "Terrible battery drain, phone gets hot",
            "the battery drain is unreal",
            "huge battery drain overnight",
            "Battery drain!!! uninstalling",
            "why such battery drain",
            "massive battery drain after a week",
            "battery drain makes it useless",
        ];
        let refund = [
            "I want a refund",
            "still waiting for my refund",
            "Refund please, this is a scam",
            "no refund after two weeks",
            "they refused a refund",
            "how do I get a refund?",
        ];
        let mut negative = Vec::new();
        let mut scores = Vec::new();
        for (i, text) in battery.iter().enumerate() {
            negative.push(text.to_string());
            scores.push(-0.5 - i as f64 * 0.01);
        }
        for (i, text) in refund.iter().enumerate() {
            negative.push(text.to_string());
            scores.push(if i == 3 { -0.99 } else { -0.6 });
        }
        for i in 0..10 {
            negative.push(filler[i % filler.len()].to_string() + " but not today");
            scores.push(-0.2);
        }
        (negative, scores, baseline)
    }

    #[test]
    fn finds_planted_phrases_above_noise() {
        let (negative, scores, baseline) = corpus();
        let drivers = find_drivers_scored(&negative, &scores, &baseline, &DriverOptions::default());
        let names: Vec<&str> = drivers.iter().map(|d| d.term.as_str()).collect();
        assert!(names.contains(&"battery drain"), "{names:?}");
        assert!(names.contains(&"refund"), "{names:?}");
        // The phrase replaces its words; stop words and filler never show up.
        assert!(!names.contains(&"battery"), "{names:?}");
        assert!(!names.contains(&"drain"), "{names:?}");
        for d in &drivers {
            for w in d.term.split(' ') {
                assert!(!is_stop_word(w), "{} in {names:?}", d.term);
            }
            assert!(
                !d.term.contains("app") && !d.term.contains("design"),
                "{names:?}"
            );
            assert!(d.count >= 2 && d.z >= 1.96);
        }
        let battery = drivers.iter().find(|d| d.term == "battery drain").unwrap();
        assert_eq!(battery.count, 8);
        assert_eq!(battery.baseline_count, 0);
        assert_eq!(battery.example, 7, "the most negative battery mention");
        let refund = drivers.iter().find(|d| d.term == "refund").unwrap();
        assert_eq!((refund.count, refund.baseline_count), (6, 1));
        assert_eq!(refund.example, 11);
        assert!(negative[refund.example].contains("refund"));
        // Nothing else stands out: the filler is as common in the baseline, the words
        // around the planted terms occur once each. "battery" (z above "refund") gave its
        // rank to "battery drain".
        assert_eq!(names, vec!["battery drain", "refund"]);
    }

    #[test]
    fn word_kept_when_a_phrase_covers_few_of_its_mentions() {
        let mut negative = vec!["battery drain again"; 3];
        negative.extend([
            "battery dies by noon",
            "swollen battery",
            "battery life awful",
            "battery overheats",
            "battery gone in hours",
        ]);
        let baseline: Vec<String> = (0..200).map(|i| format!("lovely screen {i}")).collect();
        let drivers = find_drivers(&negative, &baseline, &DriverOptions::default());
        let names: Vec<&str> = drivers.iter().map(|d| d.term.as_str()).collect();
        // "battery drain" covers 3 of the 8 "battery" mentions: both stay, and "drain"
        // (all of whose mentions the phrase covers) gives way.
        assert_eq!(names, vec!["battery", "battery drain"]);
        assert_eq!(drivers[0].count, 8);
    }

    #[test]
    fn deterministic_and_examples_default_to_first() {
        let (negative, _, baseline) = corpus();
        let a = find_drivers(&negative, &baseline, &DriverOptions::default());
        for _ in 0..3 {
            assert_eq!(
                a,
                find_drivers(&negative, &baseline, &DriverOptions::default())
            );
        }
        let battery = a.iter().find(|d| d.term == "battery drain").unwrap();
        assert_eq!(battery.example, 0);
        // Ties in z are broken by term.
        let tie = find_drivers(
            &["zeta alpha", "zeta alpha", "beta gamma", "beta gamma"],
            &["other words here"],
            &DriverOptions {
                top_k: 10,
                min_z: 0.0,
                ..DriverOptions::default()
            },
        );
        let names: Vec<&str> = tie.iter().map(|d| d.term.as_str()).collect();
        assert_eq!(names, vec!["beta gamma", "zeta alpha"]);
        assert_eq!(tie[0].z, tie[1].z);
    }

    #[test]
    fn minimum_count_and_empty_inputs() {
        let opts = DriverOptions::default();
        let one_off = find_drivers(&["the charger exploded"], &["all good"; 50], &opts);
        assert!(one_off.is_empty(), "{one_off:?}");
        assert!(find_drivers::<&str, &str>(&[], &["x"], &opts).is_empty());
        // Nothing to compare against: no drivers.
        assert!(find_drivers(&["refund now", "refund now"], &[] as &[&str], &opts).is_empty());
        let top1 = find_drivers(
            &corpus().0,
            &corpus().2,
            &DriverOptions { top_k: 1, ..opts },
        );
        assert_eq!(top1.len(), 1);
    }
}
