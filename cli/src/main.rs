//! `rpod`: a podman-style command line over the `rpod` library. It parses flags, calls the
//! facade and prints; it never reaches past the facade.

#![deny(unsafe_code)]

mod commands;
mod ctr;
mod global;
mod image;
mod network;
mod output;
mod pod;
mod run;
mod tty;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for rpod's own failures (podman's convention).
const EXIT_RPOD_ERROR: u8 = 125;

fn main() -> ExitCode {
    // Files rpod and the conmon/runc it starts create are never group- or world-writable,
    // whatever umask the caller has (podman sets the same).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => EXIT_RPOD_ERROR,
                _ => EXIT_RPOD_ERROR,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Err(e) = init_logging(&cli.global.log_level) {
        eprintln!("Error: {e:#}");
        return ExitCode::from(EXIT_RPOD_ERROR);
    }
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("Error: {}", error_text(&e));
            ExitCode::from(EXIT_RPOD_ERROR)
        }
    }
}

/// The error and its causes, each cause added only if the text so far does not already say it
/// (library errors usually include their source in their own message).
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !text.contains(&s) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&s);
        }
    }
    text
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = match level {
        "trace" | "debug" | "info" | "warn" | "error" => level.to_owned(),
        "warning" => "warn".to_owned(),
        "fatal" | "panic" => "error".to_owned(),
        other => anyhow::bail!(
            "invalid --log-level {other:?}: use one of trace, debug, info, warn, error, fatal, panic"
        ),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
    Ok(())
}
