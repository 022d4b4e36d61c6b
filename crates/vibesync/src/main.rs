//! `vibesync`: the command line. Thin: parse flags, call the library crates.

mod cli;
mod geonodes;
mod logging;
mod restore_cli;
mod service;
mod welcome;

use clap::Parser;

/// mimalloc instead of the system allocator (docs/ARCHITECTURE.md, "Dependencies"): the
/// daemon's hot paths allocate many short-lived strings and JSON values from several
/// threads, and glibc's malloc returned freed heap to the kernel only to fault it back in
/// zeroed (docs/BENCHMARKS.md, "Daemon: boot time").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
