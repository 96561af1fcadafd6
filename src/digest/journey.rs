//! The customer-journey stage a complaint touches, from a documented keyword map that a
//! watch's configuration can extend.
//!
//! Default stages, in journey order ([`DEFAULT_STAGES`] lists every keyword):
//! - `discovery`: finding and judging the offer before buying: price, ads, listings,
//!   comparisons (ZMOT/FMOT).
//! - `purchase`: checkout, payment, orders, coupons, subscriptions and billing.
//! - `delivery_setup`: getting the product and getting started: shipping, packages,
//!   installation, setup, accounts and log-in.
//! - `use`: owning and using it: bugs, crashes, battery, quality, speed (SMOT).
//! - `support`: asking for help: customer service, refunds, returns, warranty (service
//!   recovery).
//!
//! Matching: case-insensitive, on whole words (the tokenizer of
//! [`super::drivers::tokenize`]), within one sentence; a keyword of several words matches
//! those words in sequence. Each keyword word also matches its regular inflections:
//! `-s`, `-es`, `-ed`, `-d`, `-ing`, a final `e` dropped before `-ing`/`-ed`, and a final
//! consonant doubled after a short vowel (`ship` matches `ships`, `shipped`, `shipping`;
//! `price` matches `prices`, `priced`, `pricing`). Irregular forms are listed as keywords
//! of their own (`broke`, `paid`, `bought`).
//!
//! Extension: [`JourneyMap::with_extra`] takes a map from stage name to keywords (the
//! watch's configuration); keywords are added to an existing stage, or make a new stage
//! placed after the default ones (new stages in name order). Stage names are lowercased and
//! spaces or dashes become underscores (`"Delivery setup"` is `delivery_setup`).

use std::collections::BTreeMap;

use super::drivers::tokenize;

/// The default stages and their keywords, in journey order.
pub const DEFAULT_STAGES: &[(&str, &[&str])] = &[
    (
        "discovery",
        &[
            "price",
            "expensive",
            "overpriced",
            "cost",
            "cheap",
            "cheaper",
            "ad",
            "advert",
            "advertisement",
            "advertising",
            "find",
            "search",
            "compare",
            "comparison",
            "alternative",
            "competitor",
            "listing",
            "description",
            "misleading",
            "false advertising",
            "not as described",
            "free trial",
            "value for money",
            "not worth",
            "worth the money",
            "rip off",
            "ripoff",
            "scam",
        ],
    ),
    (
        "purchase",
        &[
            "checkout",
            "check out",
            "payment",
            "pay",
            "paid",
            "order",
            "coupon",
            "promo code",
            "discount code",
            "voucher",
            "card",
            "credit card",
            "charge",
            "billing",
            "bill",
            "invoice",
            "purchase",
            "in app purchase",
            "buy",
            "bought",
            "cart",
            "basket",
            "paypal",
            "transaction",
            "subscription",
            "subscribe",
            "declined",
            "overcharged",
            "double charged",
        ],
    ),
    (
        "delivery_setup",
        &[
            "delivery",
            "deliver",
            "shipping",
            "ship",
            "arrive",
            "arrival",
            "late",
            "package",
            "parcel",
            "courier",
            "tracking",
            "never arrived",
            "wrong item",
            "missing parts",
            "install",
            "installation",
            "setup",
            "set up",
            "login",
            "log in",
            "sign in",
            "sign up",
            "signup",
            "register",
            "registration",
            "account",
            "activate",
            "activation",
            "onboarding",
            "password",
            "verification code",
            "pair",
            "download",
        ],
    ),
    (
        "use",
        &[
            "broken",
            "break",
            "broke",
            "crash",
            "bug",
            "buggy",
            "glitch",
            "freeze",
            "frozen",
            "battery",
            "drain",
            "quality",
            "slow",
            "lag",
            "laggy",
            "stopped working",
            "stop working",
            "not working",
            "doesn't work",
            "does not work",
            "won't load",
            "error",
            "fail",
            "failure",
            "defective",
            "faulty",
            "leak",
            "noise",
            "noisy",
            "overheat",
            "disconnect",
            "update",
            "feature",
            "performance",
            "flimsy",
            "unusable",
            "useless",
        ],
    ),
    (
        "support",
        &[
            "support",
            "refund",
            "customer service",
            "customer support",
            "customer care",
            "reply",
            "respond",
            "response",
            "no response",
            "agent",
            "return",
            "warranty",
            "money back",
            "complaint",
            "complain",
            "contact",
            "help desk",
            "helpdesk",
            "ticket",
            "replacement",
            "exchange",
            "representative",
            "call center",
            "on hold",
            "chargeback",
            "cancel",
        ],
    ),
];

/// One stage and its keywords, each keyword as its words with their accepted forms.
#[derive(Debug, Clone, PartialEq)]
struct StageKeywords {
    name: String,
    keywords: Vec<String>,
    /// Per keyword: per word, the accepted forms.
    patterns: Vec<Vec<Vec<String>>>,
}

impl StageKeywords {
    fn new(name: String) -> Self {
        StageKeywords {
            name,
            keywords: Vec::new(),
            patterns: Vec::new(),
        }
    }

    fn add(&mut self, keyword: &str) {
        let words: Vec<String> = tokenize(keyword)
            .into_iter()
            .flatten()
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            return;
        }
        let normal = words.join(" ");
        if self.keywords.contains(&normal) {
            return;
        }
        self.patterns
            .push(words.iter().map(|w| inflections(w)).collect());
        self.keywords.push(normal);
    }

    /// The length in words of the longest keyword found in the sentences, if any.
    fn longest_match(&self, sentences: &[Vec<String>]) -> Option<usize> {
        let mut best: Option<usize> = None;
        for pattern in &self.patterns {
            let len = pattern.len();
            let found = sentences.iter().any(|s| {
                s.len() >= len
                    && s.windows(len).any(|window| {
                        window
                            .iter()
                            .zip(pattern)
                            .all(|(word, forms)| forms.iter().any(|f| f == word))
                    })
            });
            if found {
                best = best.max(Some(len));
            }
        }
        best
    }
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// A word and its regular inflections (see the module documentation).
pub fn inflections(word: &str) -> Vec<String> {
    let mut forms = vec![word.to_string()];
    if word.chars().count() < 2 || !word.chars().all(char::is_alphabetic) {
        return forms;
    }
    let chars: Vec<char> = word.chars().collect();
    let last = chars[chars.len() - 1];
    for suffix in ["s", "es", "ed", "ing"] {
        forms.push(format!("{word}{suffix}"));
    }
    if last == 'e' {
        let stem: String = chars[..chars.len() - 1].iter().collect();
        forms.push(format!("{word}d"));
        forms.push(format!("{stem}ing"));
    }
    if last == 'y' && chars.len() > 2 && !is_vowel(chars[chars.len() - 2]) {
        let stem: String = chars[..chars.len() - 1].iter().collect();
        forms.push(format!("{stem}ies"));
        forms.push(format!("{stem}ied"));
    }
    // Short final syllable: consonant, vowel, consonant (not w, x, y) doubles.
    if chars.len() >= 3 {
        let (a, b) = (chars[chars.len() - 3], chars[chars.len() - 2]);
        if !is_vowel(a) && is_vowel(b) && !is_vowel(last) && !matches!(last, 'w' | 'x' | 'y') {
            forms.push(format!("{word}{last}ed"));
            forms.push(format!("{word}{last}ing"));
        }
    }
    forms
}

/// Normal form of a stage name: lowercased, spaces and dashes as underscores.
pub fn normalize_stage(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// A stage name in words for emails: `delivery_setup` is "delivery and setup", other
/// underscores become spaces.
pub fn display_name(stage: &str) -> String {
    match stage {
        "delivery_setup" => "delivery and setup".to_string(),
        other => other.replace('_', " "),
    }
}

/// Stages of the customer journey with their keywords.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyMap {
    stages: Vec<StageKeywords>,
}

impl Default for JourneyMap {
    /// The map of [`DEFAULT_STAGES`].
    fn default() -> Self {
        let stages = DEFAULT_STAGES
            .iter()
            .map(|(name, keywords)| {
                let mut stage = StageKeywords::new(name.to_string());
                for k in *keywords {
                    stage.add(k);
                }
                stage
            })
            .collect();
        JourneyMap { stages }
    }
}

impl JourneyMap {
    /// The default map extended by configuration: each entry's keywords are added to the
    /// stage of that name, or form a new stage after the default ones. Empty keywords and
    /// stage names are ignored.
    pub fn with_extra(extra: &BTreeMap<String, Vec<String>>) -> Self {
        let mut map = JourneyMap::default();
        // Merge entries that normalise to the same stage, in name order.
        let mut merged: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (name, keywords) in extra {
            let name = normalize_stage(name);
            if name.is_empty() {
                continue;
            }
            merged
                .entry(name)
                .or_default()
                .extend(keywords.iter().map(String::as_str));
        }
        for (name, keywords) in merged {
            let index = match map.stages.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    map.stages.push(StageKeywords::new(name));
                    map.stages.len() - 1
                }
            };
            for k in keywords {
                map.stages[index].add(k);
            }
        }
        map.stages.retain(|s| !s.keywords.is_empty());
        map
    }

    /// Stage names in journey order.
    pub fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name.as_str()).collect()
    }

    /// The keywords of a stage (normalised: lowercased words joined by one space).
    pub fn keywords(&self, stage: &str) -> Option<&[String]> {
        let stage = normalize_stage(stage);
        self.stages
            .iter()
            .find(|s| s.name == stage)
            .map(|s| s.keywords.as_slice())
    }

    /// Every stage whose keywords occur in the text, in journey order, each once.
    pub fn stages(&self, text: &str) -> Vec<&str> {
        let sentences = tokenize(text);
        self.stages
            .iter()
            .filter(|s| s.longest_match(&sentences).is_some())
            .map(|s| s.name.as_str())
            .collect()
    }

    /// The one stage a driver term (a word or phrase) belongs to: the stage with the longest
    /// keyword found in the term; ties go to the earlier stage in journey order. `None` when
    /// no keyword occurs in it.
    pub fn stage_of_term(&self, term: &str) -> Option<&str> {
        let sentences = tokenize(term);
        let mut best: Option<(usize, &str)> = None;
        for stage in &self.stages {
            if let Some(len) = stage.longest_match(&sentences) {
                if best.is_none_or(|(b, _)| len > b) {
                    best = Some((len, stage.name.as_str()));
                }
            }
        }
        best.map(|(_, name)| name)
    }

    /// The stage of a driver: [`Self::stage_of_term`] when the term names one, else the
    /// stage found in most of the texts that contain the term (ties: journey order), if
    /// at least half of them name a stage.
    pub fn stage_of_driver<'t>(
        &self,
        term: &str,
        texts: impl IntoIterator<Item = &'t str>,
    ) -> Option<&str> {
        if let Some(stage) = self.stage_of_term(term) {
            return Some(stage);
        }
        let mut counts = vec![0usize; self.stages.len()];
        let mut total = 0usize;
        for text in texts {
            total += 1;
            for name in self.stages(text) {
                if let Some(i) = self.stages.iter().position(|s| s.name == name) {
                    counts[i] += 1;
                }
            }
        }
        let (best, &count) = counts
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))?;
        (count > 0 && count * 2 >= total).then(|| self.stages[best].name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_stages_for_sample_sentences() {
        let map = JourneyMap::default();
        assert_eq!(
            map.stage_names(),
            vec!["discovery", "purchase", "delivery_setup", "use", "support"]
        );
        let cases: &[(&str, &[&str])] = &[
            ("Way too expensive compared to the others", &["discovery"]),
            ("Saw your ads everywhere", &["discovery"]),
            ("The coupon did not work at checkout", &["purchase"]),
            ("Payment failed twice", &["purchase", "use"]),
            ("The package arrived late and damaged", &["delivery_setup"]),
            ("Could not sign up with my email", &["delivery_setup"]),
            ("It keeps crashing since the update", &["use"]),
            ("The app stopped working after a week", &["use"]),
            ("Battery drains in two hours", &["use"]),
            (
                "Customer service never replied, I want my money back",
                &["support"],
            ),
            (
                "Ordered online, it shipped late, crashed on day one, and support ignored me",
                &["purchase", "delivery_setup", "use", "support"],
            ),
            ("Lovely colours and a nice logo", &[]),
        ];
        for (text, expected) in cases {
            assert_eq!(&map.stages(text), expected, "{text}");
        }
    }

    #[test]
    fn whole_words_only() {
        let map = JourneyMap::default();
        // "ad" is not in "added" or "read", "bug" is not in "debug", "late" not in "latest".
        assert!(map
            .stages("I added it and read the latest debug notes")
            .is_empty());
        // Multi-word phrases must be contiguous, within one sentence.
        assert!(map.stages("We set the table. Up next: dinner").is_empty());
        assert_eq!(map.stages("hard to set up the hub"), vec!["delivery_setup"]);
        assert_eq!(map.stages("It's Not Working!!"), vec!["use"]);
    }

    #[test]
    fn inflections_cover_regular_forms() {
        let f = inflections("ship");
        for w in ["ship", "ships", "shipped", "shipping"] {
            assert!(f.contains(&w.to_string()), "{w}");
        }
        let f = inflections("price");
        for w in ["prices", "priced", "pricing"] {
            assert!(f.contains(&w.to_string()), "{w}");
        }
        let f = inflections("reply");
        assert!(f.contains(&"replied".to_string()) && f.contains(&"replies".to_string()));
        assert!(!inflections("ad").contains(&"added".to_string()));
    }

    #[test]
    fn stage_of_driver_terms() {
        let map = JourneyMap::default();
        assert_eq!(map.stage_of_term("battery drain"), Some("use"));
        assert_eq!(map.stage_of_term("refund"), Some("support"));
        assert_eq!(map.stage_of_term("late delivery"), Some("delivery_setup"));
        assert_eq!(map.stage_of_term("credit card"), Some("purchase"));
        // The longest keyword wins: "customer service" (2 words) over "service"-less matches.
        assert_eq!(map.stage_of_term("customer service"), Some("support"));
        // "not working" (use) is longer than nothing else; "stopped working" too.
        assert_eq!(map.stage_of_term("stopped working"), Some("use"));
        assert_eq!(map.stage_of_term("lovely colours"), None);
        let texts = [
            "waited three weeks, the delivery was a joke",
            "waited forever for the courier",
            "waited and waited",
        ];
        assert_eq!(
            map.stage_of_driver("waited", texts.iter().copied()),
            Some("delivery_setup")
        );
        assert_eq!(map.stage_of_driver("waited", ["waited", "waited"]), None);
    }

    #[test]
    fn configuration_extends_and_adds_stages() {
        let mut extra = BTreeMap::new();
        extra.insert(
            "use".to_string(),
            vec!["Wi-Fi drops".to_string(), " ".to_string()],
        );
        extra.insert(
            "Delivery-Setup".to_string(),
            vec!["click and collect".to_string()],
        );
        extra.insert(
            "loyalty".to_string(),
            vec!["points".to_string(), "rewards program".to_string()],
        );
        extra.insert("  ".to_string(), vec!["ignored".to_string()]);
        extra.insert("empty".to_string(), vec![]);
        let map = JourneyMap::with_extra(&extra);
        assert_eq!(
            map.stage_names(),
            vec![
                "discovery",
                "purchase",
                "delivery_setup",
                "use",
                "support",
                "loyalty"
            ]
        );
        assert_eq!(
            map.stages("the wifi drops... no wait, the Wi-Fi drops hourly"),
            vec!["use"]
        );
        assert_eq!(
            map.stages("Click and collect was a mess"),
            vec!["delivery_setup"]
        );
        assert_eq!(map.stages("my points vanished"), vec!["loyalty"]);
        assert_eq!(map.stage_of_term("rewards program"), Some("loyalty"));
        assert!(map
            .keywords("loyalty")
            .unwrap()
            .contains(&"rewards program".to_string()));
        assert!(map
            .keywords("use")
            .unwrap()
            .contains(&"wi fi drops".to_string()));
        // Defaults are still there.
        assert_eq!(map.stages("refund please"), vec!["support"]);
        assert_eq!(
            JourneyMap::with_extra(&BTreeMap::new()),
            JourneyMap::default()
        );
        assert_eq!(display_name("delivery_setup"), "delivery and setup");
        assert_eq!(display_name("loyalty"), "loyalty");
    }
}
