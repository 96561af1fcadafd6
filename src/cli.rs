//! The command line: every command a marketer or an operator runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};
use crate::import;
use crate::notify::Mailer;
use crate::pipeline::Pipeline;
use crate::scheduler;
use crate::sentiment::{self, Analyzer};
use crate::store::{MentionQuery, Store};

#[derive(Parser, Debug)]
#[command(
    name = "zmot",
    version,
    about = "Watch what buyers read before they buy: reviews and posts about your brand, \
             scored on this machine, with alerts and weekly digests by email.",
    after_help = "Start with `zmot init`, edit config/zmot.toml, check it with `zmot config check`, \
                  then `zmot run`."
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH, env = "ZMOT_CONFIG")]
    pub config: PathBuf,
    /// More detail in the log (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a commented starter configuration.
    Init {
        /// Where to write it (default: the --config path, so that the other commands
        /// find it).
        path: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the monitor: fetch on schedule, score, store, send email, serve the dashboard.
    /// Stops on Ctrl-C.
    Run,
    /// Serve the dashboard and JSON API alone, without the scheduler.
    Serve,
    /// Fetch now, once, from every enabled source (or the ones named).
    Fetch(FetchArgs),
    /// Add reviews or posts from a CSV or JSON-lines file to a watch.
    Import(ImportArgs),
    /// List stored mentions of a watch, newest first.
    Mentions(MentionsArgs),
    /// Show each source's last fetch, its result and the next run.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Trends of a watch: weekly and daily figures, the buyer's view, health colour.
    Trends {
        #[arg(long)]
        watch: String,
        /// How many ISO weeks, the current one included.
        #[arg(long, default_value_t = 12)]
        weeks: usize,
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the alert rules now and queue the alert emails.
    Check {
        /// Only this watch.
        #[arg(long)]
        watch: Option<String>,
    },
    /// Queue the weekly digest of the week just ended (once per week), or preview it.
    Digest {
        /// Only this watch (default: every watch).
        #[arg(long)]
        watch: Option<String>,
        /// Write the digest to this HTML file (charts beside it) instead of sending it.
        #[arg(long)]
        preview: Option<PathBuf>,
        /// An earlier ISO week, like 2026-W47 (default: the week that ended last).
        #[arg(long)]
        week: Option<String>,
    },
    /// List open alerts and those resolved in the last 14 days.
    Alerts {
        #[arg(long)]
        watch: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Score texts: JSON lines `{"id", "text"}` in, `{"id", "label", "score",
    /// "confidence"}` out, in the same order.
    Analyze {
        /// Read from this file instead of standard input.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Sentiment model (default: the configuration's, else minilm).
        #[arg(long, value_enum)]
        model: Option<config::ModelKind>,
    },
    /// Accuracy, macro-F1 and confusion matrix on labelled JSON lines (`text`, `label`).
    Eval {
        #[arg(required_unless_present = "long_reviews")]
        file: Option<PathBuf>,
        #[arg(long, value_enum)]
        model: Option<config::ModelKind>,
        /// Every variant side by side: lexicon, frozen head, LoRA, LoRA + lexicon fusion.
        #[arg(long, conflicts_with = "model")]
        compare: bool,
        /// Instead of FILE: N whole IMDB reviews never trained on (from --data), scored
        /// by every long-text strategy (head+tail, windows) with minilm-head and
        /// minilm-lora.
        #[arg(long, value_name = "N", conflicts_with_all = ["file", "model", "compare"])]
        long_reviews: Option<usize>,
        /// Folder with the training data (for --long-reviews).
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
    /// Train the sentiment head from the data fetched by scripts/fetch-training-data.sh.
    Train {
        /// Folder with the training data.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Folder with the model files; the head is written here.
        #[arg(long, default_value = "models")]
        models: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Fine-tune the encoder with LoRA (writes models/lora.safetensors and lora.json)
        /// instead of training the head over the frozen encoder.
        #[arg(long)]
        fine_tune: bool,
        /// Fine-tuning: fit the run into this many minutes (fewer steps).
        #[arg(long, requires = "fine_tune")]
        budget_minutes: Option<f64>,
        /// Fine-tuning: train this many batches of 32 (default: one pass).
        #[arg(long, requires = "fine_tune")]
        steps: Option<usize>,
        /// Fine-tuning: longest text in tokens (head and tail kept).
        #[arg(long, requires = "fine_tune", default_value_t = 128)]
        max_tokens: usize,
        /// Write the held-back slice of the training mix (the tenth never trained on) to
        /// this JSON-lines file, for `zmot eval FILE --compare`, and stop.
        #[arg(long, conflicts_with = "fine_tune")]
        export_held_back: Option<PathBuf>,
        /// Fine-tuning: negative and positive examples only, the 2-class baseline (write
        /// it to another --models folder: it replaces the adapter there).
        #[arg(long, requires = "fine_tune")]
        two_class: bool,
        /// Fine-tuning: the projections of every layer that get a LoRA update: `all`, or
        /// some of query, key, value, attention_output, intermediate, output.
        #[arg(long, requires = "fine_tune", default_value = "all")]
        lora_targets: String,
        /// Fine-tuning: LoRA rank (alpha stays 32).
        #[arg(long, requires = "fine_tune", default_value_t = sentiment::lora::RANK)]
        lora_rank: usize,
        /// Fine-tuning: peak learning rate of AdamW.
        #[arg(long, requires = "fine_tune", default_value_t = 1e-3)]
        learning_rate: f64,
        /// Fine-tuning: threads sharing each batch (default: the number of cores). The
        /// result is deterministic for a seed and a number of workers.
        #[arg(long, requires = "fine_tune")]
        workers: Option<usize>,
        /// Fine-tuning: cut sentences (two each) from this many more IMDB reviews, for the
        /// training side only (the held-back slice stays the same).
        #[arg(long, requires = "fine_tune", default_value_t = sentiment::train::EXTRA_IMDB_SENTENCE_REVIEWS)]
        extra_imdb_sentences: usize,
        /// Fine-tuning: add up to this many more tweets of each class, ones the mix did
        /// not take, for the training side only (the held-back slice stays the same).
        #[arg(long, requires = "fine_tune", default_value_t = sentiment::train::EXTRA_TWEETS_PER_CLASS)]
        extra_tweets: usize,
        /// Fine-tuning: cut the extra IMDB sentences only from those whose lexicon score
        /// leans their review's way.
        #[arg(long, requires = "fine_tune")]
        extra_sentences_agreeing: bool,
        /// Label the IMDB sentences in which the lexicon finds no sentiment neutral (in the
        /// mix and its held-back slice too, so with --export-held-back as well).
        #[arg(long)]
        weak_valence_neutral: bool,
        /// Fine-tuning: seed of the adapter's random start and of the batch order
        /// (default: --seed, which also draws the training mix and its held-back slice).
        #[arg(long, requires = "fine_tune")]
        init_seed: Option<u64>,
        /// Fine-tuning: label smoothing, the share of each target spread evenly over the
        /// classes (0 = plain cross-entropy).
        #[arg(long, requires = "fine_tune", default_value_t = 0.0, value_parser = label_smoothing)]
        label_smoothing: f64,
        /// Fine-tuning: weigh each training tweet's loss by its annotators' agreement
        /// (scaled so the tweets keep their total weight).
        #[arg(long, requires = "fine_tune")]
        tweet_confidence_weights: bool,
    },
    /// Measure speed and memory; prints what it measured.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Ingest synthetic mentions into SQLite (a temporary file) and optionally PostgreSQL.
    Ingest {
        /// How many mentions.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Mentions per transaction (a fetched page).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// SQLite URL to use instead of a temporary file.
        #[arg(long)]
        sqlite: Option<String>,
        /// PostgreSQL database URL to measure as well (its tables are created if missing).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Dashboard speed: seeds a store with many mentions across many watches, then times
    /// the overview, a watch page and filtered mentions pages over loopback.
    Web {
        /// How many mentions.
        #[arg(long, default_value_t = 1_000_000)]
        mentions: u64,
        /// Across how many watches.
        #[arg(long, default_value_t = 20)]
        watches: usize,
        /// Timed requests per page (after one warm-up); the median is printed.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// SQLite URL to use instead of a temporary file (seeded only when it holds fewer
        /// mentions than asked for, so a kept file can be measured again).
        #[arg(long)]
        sqlite: Option<String>,
        /// PostgreSQL server URL to measure as well: a fresh database is created on it
        /// and dropped afterwards (a URL naming a `zmot_bench_web_*` database kept by
        /// `--keep` is measured again as it is).
        #[arg(long)]
        postgres: Option<String>,
        /// Keep the temporary SQLite file and the PostgreSQL database.
        #[arg(long)]
        keep: bool,
    },
    /// Weekly digest: seeds one watch with many mentions over some weeks, then times the
    /// digest of the last full week and of a past week, with peak memory.
    Digest {
        /// How many mentions.
        #[arg(long, default_value_t = 200_000)]
        mentions: u64,
        /// Over how many weeks before now.
        #[arg(long, default_value_t = 8)]
        weeks: i64,
        /// SQLite URL to use instead of a temporary file (seeded only when it holds fewer
        /// mentions than asked for, so a kept file can be measured again).
        #[arg(long)]
        sqlite: Option<String>,
        /// PostgreSQL server URL to measure as well: a fresh database is created on it
        /// and dropped afterwards.
        #[arg(long)]
        postgres: Option<String>,
        /// Keep the temporary SQLite file and the PostgreSQL database.
        #[arg(long)]
        keep: bool,
    },
    /// Sentiment: texts per second and peak memory, batch 1 and 32, short to long texts.
    Sentiment {
        /// Only this model (default: lexicon, minilm-head and minilm).
        #[arg(long, value_enum)]
        model: Option<config::ModelKind>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate every value and print what is wrong, with file and line.
    Check,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Only this watch.
    #[arg(long)]
    pub watch: Option<String>,
    /// Only this source (by name).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The file: .csv, or JSON lines (one object per line).
    pub file: PathBuf,
    /// The watch these mentions belong to.
    #[arg(long)]
    pub watch: String,
    /// Name of the source to file them under.
    #[arg(long, default_value = "import")]
    pub source: String,
    /// File format (guessed from the extension when absent).
    #[arg(long, value_enum)]
    pub format: Option<import::Format>,
}

#[derive(Args, Debug)]
pub struct MentionsArgs {
    #[arg(long)]
    pub watch: String,
    /// Only mentions published on or after this date (2026-11-01 or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Loads the configuration or explains what is wrong.
pub fn load_config(path: &Path) -> Result<Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Opens the store and brings watches and sources in line with the configuration.
pub async fn open_store(config: &Config) -> Result<Store> {
    let store = Store::connect(&config.database.url, config.database.max_connections).await?;
    store.sync_config(config).await?;
    Ok(store)
}

/// Loads the sentiment model, or explains why mentions will be stored unscored.
pub fn load_analyzer(config: &Config) -> Option<Arc<dyn Analyzer>> {
    match sentiment::load(&config.sentiment) {
        Ok(a) => Some(Arc::from(a)),
        Err(e) => {
            tracing::warn!("sentiment is off: {e:#}");
            None
        }
    }
}

pub async fn main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { path, force } => init(path.as_deref().unwrap_or(&cli.config), force),
        Command::Config(ConfigCommand::Check) => config_check(&cli.config),
        Command::Run => run(&cli.config).await,
        Command::Serve => serve(&cli.config).await,
        Command::Fetch(args) => fetch(&cli.config, args).await,
        Command::Import(args) => import_file(&cli.config, args).await,
        Command::Mentions(args) => mentions(&cli.config, args).await,
        Command::Status { json } => status(&cli.config, json).await,
        Command::Bench(BenchCommand::Ingest {
            count,
            batch,
            sqlite,
            postgres,
        }) => crate::bench::run_ingest(count, batch, sqlite, postgres).await,
        Command::Bench(BenchCommand::Web {
            mentions,
            watches,
            runs,
            sqlite,
            postgres,
            keep,
        }) => crate::bench::run_web(mentions, watches, runs.max(1), sqlite, postgres, keep).await,
        Command::Bench(BenchCommand::Digest {
            mentions,
            weeks,
            sqlite,
            postgres,
            keep,
        }) => crate::bench::run_digest(mentions, weeks.max(1), sqlite, postgres, keep).await,
        Command::Bench(BenchCommand::Sentiment { model, seconds }) => {
            let settings = sentiment_settings(&cli.config)?;
            let kinds = match model {
                Some(m) => vec![m],
                None => vec![
                    config::ModelKind::Lexicon,
                    config::ModelKind::MinilmHead,
                    config::ModelKind::Minilm,
                ],
            };
            let mut loaded = Vec::new();
            for kind in kinds {
                crate::bench::reset_peak_rss();
                let a = sentiment::load(&config::SentimentSettings {
                    model: kind,
                    ..settings.clone()
                })?;
                println!(
                    "{}: loaded, peak RSS {:.1} MiB",
                    a.model_id(),
                    crate::bench::peak_rss_mib().unwrap_or(f64::NAN)
                );
                loaded.push(a);
            }
            let named: Vec<(&str, &dyn Analyzer)> =
                loaded.iter().map(|a| (a.model_id(), a.as_ref())).collect();
            sentiment::commands::bench(&named, seconds)
        }
        Command::Trends { watch, weeks, json } => trends(&cli.config, &watch, weeks, json).await,
        Command::Check { watch } => check(&cli.config, watch.as_deref()).await,
        Command::Digest {
            watch,
            preview,
            week,
        } => {
            digest(
                &cli.config,
                watch.as_deref(),
                preview.as_deref(),
                week.as_deref(),
            )
            .await
        }
        Command::Alerts { watch, json } => alerts(&cli.config, watch.as_deref(), json).await,
        Command::Analyze { input, model } => {
            let analyzer = analyzer_for(&cli.config, model)?;
            let stdout = std::io::stdout().lock();
            let out = std::io::BufWriter::new(stdout);
            let bad = match input {
                Some(p) => {
                    let f = std::fs::File::open(&p)
                        .with_context(|| format!("cannot open {}", p.display()))?;
                    sentiment::commands::analyze(
                        analyzer.as_ref(),
                        std::io::BufReader::new(f),
                        out,
                    )?
                }
                None => {
                    sentiment::commands::analyze(analyzer.as_ref(), std::io::stdin().lock(), out)?
                }
            };
            if bad > 0 {
                eprintln!("{bad} input line(s) could not be scored (see their \"error\")");
            }
            Ok(())
        }
        Command::Eval {
            long_reviews: Some(n),
            data,
            ..
        } => {
            let settings = sentiment_settings(&cli.config)?;
            sentiment::commands::long_reviews(&settings, &data, n)
        }
        Command::Eval {
            file: Some(file),
            compare: true,
            ..
        } => {
            let settings = sentiment_settings(&cli.config)?;
            sentiment::commands::compare(&settings, &file)
        }
        Command::Eval { file, model, .. } => {
            let file = file.context("a labelled file to evaluate")?;
            let analyzer = analyzer_for(&cli.config, model)?;
            let e = sentiment::commands::eval_file(analyzer.as_ref(), &file)?;
            println!("model {} {}", analyzer.model_id(), analyzer.model_version());
            print!("{e}");
            Ok(())
        }
        Command::Train {
            data,
            models,
            seed,
            fine_tune,
            budget_minutes,
            steps,
            max_tokens,
            export_held_back,
            two_class,
            lora_targets,
            lora_rank,
            learning_rate,
            workers,
            extra_imdb_sentences,
            extra_tweets,
            extra_sentences_agreeing,
            weak_valence_neutral,
            init_seed,
            label_smoothing,
            tweet_confidence_weights,
        } => {
            let settings = sentiment::train::TrainSettings {
                data_dir: data,
                models_dir: models,
                seed,
                extra_imdb_sentence_reviews: extra_imdb_sentences,
                extra_tweets_per_class: extra_tweets,
                extra_sentences_agreeing,
                weak_valence_neutral,
                ..Default::default()
            };
            if let Some(out) = export_held_back {
                let n = sentiment::finetune::export_held_back(&settings, &out)?;
                println!("wrote {n} held-back examples to {}", out.display());
                Ok(())
            } else if fine_tune {
                sentiment::finetune::run(
                    &settings,
                    &sentiment::finetune::FineTuneOptions {
                        seed: init_seed.unwrap_or(seed),
                        budget_minutes,
                        steps,
                        max_tokens,
                        two_class,
                        targets: sentiment::lora::Target::parse_list(&lora_targets)?,
                        rank: lora_rank.max(1),
                        learning_rate,
                        workers: fine_tune_workers(workers),
                        label_smoothing,
                        tweet_confidence_weights,
                        ..Default::default()
                    },
                )
            } else {
                sentiment::train::run(&settings)
            }
        }
    }
}

async fn trends(path: &Path, watch: &str, weeks: usize, json: bool) -> Result<()> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let row = store
        .watch_by_name(watch)
        .await?
        .with_context(|| format!("no watch named `{watch}` in {}", path.display()))?;
    let wcfg = config
        .watch(watch)
        .context("watch not in the configuration")?;
    let tz = config::parse_timezone(wcfg.timezone(&config.general)).map_err(anyhow::Error::msg)?;
    let t = crate::trends::watch_trends(
        &store,
        row.id,
        &row.name,
        tz,
        &wcfg.alerts,
        weeks,
        Utc::now(),
    )
    .await?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &t)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: {} ({})",
        t.watch,
        t.health.as_str().to_uppercase(),
        t.reasons.join("; ")
    )?;
    writeln!(
        out,
        "\nBuyer's view (the {} most recent reviews per rated source):",
        wcfg.alerts.buyer_view_size
    )?;
    if t.buyer_views.is_empty() {
        writeln!(out, "  no rated reviews yet")?;
    }
    for v in &t.buyer_views {
        writeln!(
            out,
            "  {:<20} {} reviews, average {}, negative {}{}",
            v.source,
            v.reviews.len(),
            v.average_rating
                .map(|a| format!("{a:.2} stars"))
                .unwrap_or("-".into()),
            v.negative_share
                .map(|s| format!("{:.0}%", s * 100.0))
                .unwrap_or("-".into()),
            v.published
                .as_ref()
                .map(|p| format!(", the source shows {:.2}", p.rating))
                .unwrap_or_default()
        )?;
    }
    writeln!(
        out,
        "\n{:<10} {:>8} {:>6} {:>6} {:>6} {:>9} {:>7} {:>7}",
        "week", "mentions", "neg%", "neu%", "pos%", "sentiment", "stars", "replied"
    )?;
    let pct = |n: i64, d: i64| {
        if d > 0 {
            format!("{:.0}", 100.0 * n as f64 / d as f64)
        } else {
            "-".into()
        }
    };
    for p in &t.weeks {
        let s = &p.stats;
        writeln!(
            out,
            "{:<10} {:>8} {:>6} {:>6} {:>6} {:>9} {:>7} {:>7}",
            p.label,
            s.mentions,
            pct(s.negative, s.scored()),
            pct(s.neutral, s.scored()),
            pct(s.positive, s.scored()),
            s.mean_sentiment
                .map(|v| format!("{v:+.2}"))
                .unwrap_or("-".into()),
            s.mean_rating
                .map(|v| format!("{v:.2}"))
                .unwrap_or("-".into()),
            s.reply_rate()
                .map(|v| format!("{:.0}%", v * 100.0))
                .unwrap_or("-".into()),
        )?;
    }
    Ok(())
}

async fn check(path: &Path, watch: Option<&str>) -> Result<()> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let names: Vec<String> = match watch {
        Some(w) => vec![w.to_string()],
        None => config.watches.iter().map(|w| w.name.clone()).collect(),
    };
    for name in names {
        let r = crate::alerts::check_watch(&store, &config, &name, Utc::now()).await?;
        println!(
            "{name}: {} opened, {} reminded, {} resolved, {} still open{}",
            r.opened,
            r.reminded,
            r.resolved,
            r.persisting,
            if r.email_id.is_some() {
                "; email queued"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn digest(
    path: &Path,
    watch: Option<&str>,
    preview: Option<&Path>,
    week: Option<&str>,
) -> Result<()> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let names: Vec<String> = match watch {
        Some(w) => vec![w.to_string()],
        None => config.watches.iter().map(|w| w.name.clone()).collect(),
    };
    if preview.is_some() && names.len() > 1 {
        bail!("--preview needs --watch");
    }
    for name in names {
        if let Some(out) = preview {
            let now = Utc::now();
            let d = crate::digest::preview(&store, &config, &name, week, now, out).await?;
            println!(
                "{name} {}{}: {} mentions; written to {}",
                d.week,
                if d.to > now {
                    " (not over yet: the week so far)"
                } else {
                    ""
                },
                d.this_week.mentions,
                out.display()
            );
            continue;
        }
        match crate::digest::queue(&store, &config, &name, week, Utc::now()).await? {
            crate::digest::Queued::Queued { email_id } => {
                println!("{name}: digest queued (outbox #{email_id})")
            }
            crate::digest::Queued::AlreadySent => {
                println!("{name}: this week's digest was already queued")
            }
            crate::digest::Queued::Skipped(why) => println!("{name}: skipped, {why}"),
        }
    }
    Ok(())
}

async fn alerts(path: &Path, watch: Option<&str>, json: bool) -> Result<()> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let watch_id = match watch {
        Some(w) => Some(
            store
                .watch_by_name(w)
                .await?
                .with_context(|| format!("no watch named `{w}`"))?
                .id,
        ),
        None => None,
    };
    let list = store
        .alerts(watch_id, Utc::now() - chrono::Duration::days(14))
        .await?;
    if json {
        let mut out = std::io::stdout().lock();
        for a in &list {
            serde_json::to_writer(&mut out, a)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    // Each watch on its clock, a watch no longer in the file on the one it last had.
    let watches = store.watches().await?;
    let zone_of = |watch: &str| match watches.iter().find(|w| w.name == watch) {
        Some(row) => crate::clock::watch_zone(&config, row),
        None => config.watch_zone(watch),
    };
    print!("{}", crate::alerts::format_table(&list, zone_of));
    Ok(())
}

/// The sentiment settings of the configuration file, or, without one (so `zmot analyze`
/// works before `zmot init`), the defaults with the environment's overrides
/// (`ZMOT__SENTIMENT__MODELS_DIR=...`).
fn sentiment_settings(path: &Path) -> Result<config::SentimentSettings> {
    if path.exists() {
        Ok(load_config(path)?.sentiment)
    } else {
        Ok(config::defaults_with_env()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .sentiment)
    }
}

fn analyzer_for(path: &Path, model: Option<config::ModelKind>) -> Result<Box<dyn Analyzer>> {
    let mut settings = sentiment_settings(path)?;
    if let Some(m) = model {
        settings.model = m;
    }
    sentiment::load(&settings)
}

fn init(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it",
            path.display()
        );
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, config::STARTER)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "Wrote {}. Edit the watches, then run `zmot config check`.",
        path.display()
    );
    Ok(())
}

fn config_check(path: &Path) -> Result<()> {
    match config::load(path) {
        Ok(c) => {
            let sources: usize = c.watches.iter().map(|w| w.sources.len()).sum();
            println!(
                "{}: OK ({} watch{}, {} source{}, database {}, email {})",
                path.display(),
                c.watches.len(),
                if c.watches.len() == 1 { "" } else { "es" },
                sources,
                if sources == 1 { "" } else { "s" },
                crate::redact::database_url(&c.database.url),
                match &c.email.smtp {
                    Some(s) => format!("via SMTP {}:{}", s.host, s.port()),
                    None => format!("written to {}/", c.email.outbox_dir.display()),
                }
            );
            Ok(())
        }
        Err(e) => {
            eprint!("{e}");
            std::process::exit(1);
        }
    }
}

async fn run(path: &Path) -> Result<()> {
    let config = Arc::new(load_config(path)?);
    let _lock = single_daemon_lock(&config.database.url)?;
    let store = open_store(&config).await?;
    let analyzer = load_analyzer(&config);
    let mailer = Arc::new(Mailer::from_config(&config.email)?);
    let pipeline = Pipeline::new(store.clone(), config.clone(), analyzer)?;
    let jobs = scheduler::plan(&pipeline).await?;
    tracing::info!(
        database = %crate::redact::database_url(&config.database.url),
        email = %mailer.describe(),
        "zmot is running; stop with Ctrl-C"
    );
    let metrics = Arc::new(crate::health::Metrics::default());
    // Refuse to expose the dashboard beyond loopback without a token, before listening.
    let web = crate::web::WebState::new(store.clone(), config.clone());
    web.check_exposure().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", config.server.listen))?;
    tracing::info!(
        "health and metrics on http://{}/healthz and /metrics",
        listener.local_addr()?
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let token = crate::push::token_from_env(&config.server.token_env);
    if token.is_none() {
        tracing::info!(
            "POST /api/mentions is off: set {} to a secret token to enable it",
            config.server.token_env
        );
    }
    let app = crate::web::app(
        web,
        crate::health::router(store.clone(), metrics.clone())
            .merge(crate::push::router(pipeline.clone(), token)),
    );
    let mut server_stop = rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        })
        .await
    });
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(
            "stop requested: letting running jobs finish (stop again to abandon them now)"
        );
        let _ = tx.send(true);
        shutdown_signal().await;
        tracing::warn!("stop requested again: abandoning running jobs");
        let _ = tx.send(true);
    });
    scheduler::run(
        pipeline,
        mailer,
        jobs,
        scheduler::RunOptions::from_config(&config.general),
        metrics,
        rx,
    )
    .await?;
    server.await??;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn serve(path: &Path) -> Result<()> {
    let config = Arc::new(load_config(path)?);
    let store = open_store(&config).await?;
    let web = crate::web::WebState::new(store.clone(), config.clone());
    web.check_exposure().map_err(anyhow::Error::msg)?;
    let pipeline = Pipeline::new(store.clone(), config.clone(), load_analyzer(&config))?;
    let token = crate::push::token_from_env(&config.server.token_env);
    let metrics = Arc::new(crate::health::Metrics::default());
    let app = crate::web::app(
        web,
        crate::health::router(store.clone(), metrics).merge(crate::push::router(pipeline, token)),
    );
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", config.server.listen))?;
    tracing::info!("dashboard on http://{}/", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// On SQLite only one daemon may use a database file: a second one would fight over
/// the same jobs with no way to share leases safely across machines.
fn single_daemon_lock(url: &str) -> Result<Option<std::fs::File>> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path.starts_with(":memory:") {
        return Ok(None);
    }
    let lock_path = format!("{path}.lock");
    if let Some(parent) = Path::new(&lock_path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {lock_path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `zmot run` is already using {path}; stop it first, \
             or move to PostgreSQL to run several workers"
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).context(format!("cannot lock {lock_path}")),
    }
}

async fn fetch(path: &Path, args: FetchArgs) -> Result<()> {
    let config = Arc::new(load_config(path)?);
    let store = open_store(&config).await?;
    let pipeline = Pipeline::new(store.clone(), config.clone(), load_analyzer(&config))?;
    let watch_id = match &args.watch {
        Some(w) => Some(
            store
                .watch_by_name(w)
                .await?
                .with_context(|| format!("no watch named `{w}` in {}", path.display()))?
                .id,
        ),
        None => None,
    };
    let sources: Vec<_> = store
        .sources(watch_id)
        .await?
        .into_iter()
        .filter(|s| s.enabled && s.kind != crate::store::PUSH_KIND)
        .filter(|s| {
            args.source
                .as_deref()
                .is_none_or(|n| s.name.eq_ignore_ascii_case(n))
        })
        .collect();
    if sources.is_empty() {
        bail!("no enabled source matches; see `zmot status`");
    }
    let mut failed = 0;
    for s in &sources {
        // One source's failure, even the store's, is reported and the others still run.
        let report = match pipeline.fetch_source(s).await {
            Ok(report) => report,
            Err(e) => {
                failed += 1;
                println!("{} / {}: FAILED: {e:#}", s.watch_name, s.name);
                continue;
            }
        };
        match report.result {
            Ok(st) => println!(
                "{} / {}: {} new, {} updated, {} unchanged, {} skipped",
                report.watch, report.source, st.new, st.updated, st.unchanged, report.skipped
            ),
            Err(e) => {
                failed += 1;
                println!(
                    "{} / {}: FAILED ({}): {}",
                    report.watch,
                    report.source,
                    e.kind.as_str(),
                    e.message
                );
            }
        }
    }
    if failed == sources.len() {
        bail!("every source failed");
    }
    Ok(())
}

async fn import_file(path: &Path, args: ImportArgs) -> Result<()> {
    let config = Arc::new(load_config(path)?);
    let store = open_store(&config).await?;
    let watch = store
        .watch_by_name(&args.watch)
        .await?
        .with_context(|| format!("no watch named `{}` in {}", args.watch, path.display()))?;
    let format = args
        .format
        .unwrap_or_else(|| import::Format::from_path(&args.file));
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    // Dates without a time are days on the watch's clock (the one it last had when it is
    // no longer configured, as for the push API).
    let mut parsed = import::parse_reader(file, format, crate::clock::watch_zone(&config, &watch));
    for warning in &parsed.warnings {
        eprintln!("{}: warning: {warning}", args.file.display());
    }
    for bad in &parsed.bad {
        eprintln!("{}:{}: {}", args.file.display(), bad.line, bad.error);
    }
    if parsed.mentions.is_empty() {
        // Nothing to store: exit non-zero, so that a script importing an empty export or
        // a file in the wrong format notices.
        if parsed.bad.is_empty() {
            bail!(
                "nothing to import: {} holds no records",
                args.file.display()
            );
        }
        bail!(
            "nothing imported: every record of {} was rejected ({} problem{} above)",
            args.file.display(),
            parsed.bad.len(),
            if parsed.bad.len() == 1 { "" } else { "s" }
        );
    }
    let repeated = parsed.keep_last_of_repeated();
    let source = store.push_source(watch.id, &args.source).await?;
    let pipeline = Pipeline::new(store.clone(), config.clone(), load_analyzer(&config))?;
    let note = (!parsed.bad.is_empty()).then(|| {
        format!(
            "{} bad record(s) in {}, first at line {}",
            parsed.bad.len(),
            args.file.display(),
            parsed.bad[0].line
        )
    });
    let stats = pipeline
        .ingest_pushed(
            &source,
            parsed.mentions,
            parsed.bad.len() as u64,
            note.as_deref(),
        )
        .await?;
    // Every record is counted once: stored (new, updated, unchanged), dropped as an
    // earlier copy of a later record, or rejected.
    let repeated = match repeated {
        0 => String::new(),
        n => format!(" {n} repeated within the file (the last of each id kept),"),
    };
    println!(
        "Imported into {} / {}: {} new, {} updated, {} unchanged,{repeated} {} rejected.",
        watch.name,
        source.name,
        stats.new,
        stats.updated,
        stats.unchanged,
        parsed.bad.len()
    );
    Ok(())
}

/// `--since`: a day (`2026-11-23`) starts at midnight on the watch's clock (`tz`), the
/// clock the list shows; a time is read as written.
fn parse_since(s: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>> {
    let t =
        import::parse_plausible_time(s, Utc::now()).map_err(|e| anyhow::anyhow!("--since {e}"))?;
    Ok(
        match chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
            Ok(day) => crate::trends::local_midnight(tz, day),
            Err(_) => t,
        },
    )
}

async fn mentions(path: &Path, args: MentionsArgs) -> Result<()> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let watch = store
        .watch_by_name(&args.watch)
        .await?
        .with_context(|| format!("no watch named `{}` in {}", args.watch, path.display()))?;
    // On the watch's clock, each time marked with the zone then in force.
    let tz = crate::clock::watch_zone(&config, &watch);
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, tz))
        .transpose()?;
    let list = store
        .mentions(&MentionQuery {
            watch_id: Some(watch.id),
            since,
            limit: Some(args.limit),
            ..Default::default()
        })
        .await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for m in &list {
            serde_json::to_writer(&mut out, m)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    if list.is_empty() {
        writeln!(out, "No mentions for {} yet.", watch.name)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<22} {:<12} {:<5} {:<9} TEXT",
        "PUBLISHED", "SOURCE", "STARS", "SENTIMENT"
    )?;
    for m in &list {
        let stars = m
            .mention
            .rating
            .map(|r| "*".repeat(r as usize))
            .unwrap_or_default();
        let sentiment = m.sentiment.map(|s| s.label.as_str()).unwrap_or("-");
        let text: String = crate::pipeline::scoring_text(&m.mention)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let short: String = text.chars().take(80).collect();
        writeln!(
            out,
            "{:<22} {:<12} {:<5} {:<9} {}{}",
            crate::clock::minute_zoned(m.mention.published_at, tz),
            truncate(&m.source, 12),
            stars,
            sentiment,
            short,
            if text.chars().count() > 80 { "..." } else { "" }
        )?;
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

async fn status(path: &Path, json: bool) -> Result<()> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let list = store.source_status().await?;
    let tz = config::parse_timezone(&config.general.timezone).map_err(anyhow::Error::msg)?;
    let jobs: Vec<_> = store
        .jobs()
        .await?
        .into_iter()
        .filter(|j| !j.name.starts_with("fetch:"))
        .collect();
    // Emails of the last two weeks that missed someone: a refused address is a wrong
    // or closed mailbox that only a person can fix, so it is shown until then.
    let undelivered = store
        .undelivered_emails(crate::store::now_ms() - 14 * 24 * 3600 * 1000)
        .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "sources": list, "jobs": jobs, "undelivered_emails": undelivered })
            )?
        );
        return Ok(());
    }
    let fmt = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    // Without sources there is still the outbox to show (emails queued before the
    // watches were removed).
    if list.is_empty() {
        println!(
            "No sources configured. Add watches to {}. (Times below in {tz}.)",
            path.display()
        );
    } else {
        println!(
            "{:<16} {:<16} {:<10} {:<16} {:<8} {:>8} {:<16}  (times in {}, unless marked)",
            "WATCH", "SOURCE", "KIND", "LAST RUN", "RESULT", "MENTIONS", "NEXT RUN", tz
        );
    }
    for s in list {
        // A source runs on its watch's clock: its times are shown on it, marked with the
        // zone when that is not the general one.
        let watch_tz = match config.watch(&s.watch) {
            Some(w) => {
                config::parse_timezone(w.timezone(&config.general)).map_err(anyhow::Error::msg)?
            }
            None => tz,
        };
        let fmt = |t: DateTime<Utc>| {
            let local = t.with_timezone(&watch_tz);
            if watch_tz == tz {
                local.format("%Y-%m-%d %H:%M").to_string()
            } else {
                local.format("%Y-%m-%d %H:%M %Z").to_string()
            }
        };
        let (last, result, mut detail) = match &s.last_run {
            None => ("never".to_string(), "-".to_string(), String::new()),
            Some(r) => (
                fmt(r.started_at),
                r.status.clone(),
                match (&r.error_kind, &r.error) {
                    // Errors may quote what a server sent, control characters included.
                    (Some(k), Some(e)) => format!("{k}: {}", crate::domain::without_controls(e)),
                    _ => format!("+{} new, {} updated", r.items_new, r.items_updated),
                },
            ),
        };
        // The fetch job's own error, unless the run already says it (the job table
        // below leaves fetch jobs out).
        if let Some(e) = s.job_error.as_deref().filter(|e| !detail.contains(e)) {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            // It may quote what a source sent, control characters included.
            detail.push_str(&format!(
                "job failed: {}",
                crate::domain::without_controls(e)
            ));
        }
        let next = if !s.enabled {
            "disabled".to_string()
        } else if s.kind == crate::store::PUSH_KIND {
            "(pushed)".to_string()
        } else {
            match s.next_run_at {
                Some(t) => fmt(t),
                None => scheduler::next_after(
                    &std::str::FromStr::from_str(&s.schedule)
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                    watch_tz,
                    Utc::now(),
                )
                .map(fmt)
                .unwrap_or_default(),
            }
        };
        println!(
            "{:<16} {:<16} {:<10} {:<16} {:<8} {:>8} {:<16}  {}",
            truncate(&s.watch, 16),
            truncate(&s.source, 16),
            s.kind,
            last,
            result,
            s.mentions,
            next,
            detail
        );
    }
    if !jobs.is_empty() {
        println!();
        println!(
            "{:<34} {:<16} {:<8} {:<16}",
            "JOB", "LAST RUN", "RESULT", "NEXT RUN"
        );
        for j in jobs {
            println!(
                "{:<34} {:<16} {:<8} {:<16}  {}",
                truncate(&j.name, 34),
                j.last_run_at.map(fmt).unwrap_or_else(|| "never".into()),
                j.last_status.as_deref().unwrap_or("-"),
                j.next_run_at.map(fmt).unwrap_or_default(),
                crate::domain::without_controls(j.last_error.as_deref().unwrap_or(""))
            );
        }
    }
    if !undelivered.is_empty() {
        println!();
        println!("EMAILS THAT MISSED SOMEONE (last 14 days)");
        for e in undelivered {
            let queued = fmt(crate::store::from_ms(e.created_at));
            let state = match e.status.as_str() {
                "sent" => "sent to the others",
                "queued" => "retrying",
                _ => "given up",
            };
            println!(
                "#{:<6} {queued}  {state}: {}",
                e.id,
                truncate(&e.subject, 70)
            );
            for r in &e.refused {
                println!(
                    "        refused {}: {}",
                    crate::domain::without_controls(&r.address),
                    crate::domain::without_controls(&r.reason)
                );
            }
            if e.status != "sent" {
                if let Some(err) = &e.last_error {
                    println!(
                        "        last error: {}",
                        crate::domain::without_controls(err)
                    );
                }
            }
        }
    }
    Ok(())
}

/// The fine-tuning threads, each running its matrix products on one core: candle reads
/// `RAYON_NUM_THREADS` at every product, and it is set here, before any product runs,
/// unless the user set it.
fn fine_tune_workers(asked: Option<usize>) -> usize {
    let workers = asked
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    if workers > 1 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    workers
}

/// `--label-smoothing`: a share of the target, at least 0 and under 1 (at 1 the label
/// would count for nothing).
fn label_smoothing(arg: &str) -> Result<f64, String> {
    let value: f64 = arg.trim().parse().map_err(|e| format!("`{arg}`: {e}"))?;
    if (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{arg}` is not in [0, 1)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn label_smoothing_outside_zero_to_one_is_refused() {
        // `--label-smoothing=V`, so that a negative V is read as the value.
        let parse = |v: &str| {
            let arg = format!("--label-smoothing={v}");
            Cli::try_parse_from(["zmot", "train", "--fine-tune", arg.as_str()])
        };
        for bad in ["1", "1.5", "-0.1", "NaN", "a tenth"] {
            let e = parse(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.to_string().contains("--label-smoothing"), "{e}");
        }
        let Command::Train {
            label_smoothing, ..
        } = parse("0.1").unwrap().command
        else {
            panic!("not train");
        };
        assert_eq!(label_smoothing, 0.1);
    }
}
