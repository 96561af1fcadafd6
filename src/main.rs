use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let cli = zmot::cli::Cli::parse();
    let default_level = match cli.verbose {
        0 => "zmot=info,warn",
        1 => "zmot=debug,info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ZMOT_LOG").unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    if let Err(e) = zmot::cli::main(cli).await {
        if is_broken_pipe(&e) {
            // The reader stopped early (`zmot mentions --json | head -1`): the output
            // has ended where it was wanted, which is no failure.
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Whether writing to a closed pipe caused the error: the error itself, as the output
/// code returns it (an `io::Error`, directly or through serde_json), not a cause deeper
/// down: a database or mail connection that broke is a failure to report.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let kind = e
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind)
        .or_else(|| {
            e.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
        });
    kind == Some(std::io::ErrorKind::BrokenPipe)
}
