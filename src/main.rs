//! The `jit-broker` binary: parse the command line, run it, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = jit_broker::cli::Cli::parse();
    match jit_broker::app::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole cause chain once.
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
