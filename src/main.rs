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
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
