//! `vibesync`: the command line. Thin: parse flags, call the library crates.

mod cli;
mod geonodes;
mod logging;
mod restore_cli;
mod service;
mod welcome;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vibesync: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
