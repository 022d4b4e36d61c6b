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
    #[cfg(unix)]
    if args.ends_with_its_reader() {
        // SAFETY: called before any thread starts; restores the default action of SIGPIPE
        // (Rust ignores it), so a closed stdout ends the command instead of a panic.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vibesync: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
