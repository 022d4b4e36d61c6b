//! Integration tests against the real `vibesync` binary: real sockets on port 0, real
//! files and fsync in temporary directories, real git. One test binary (ripgrep style).

mod common;

mod agents;
mod checkpoint;
mod cli;
mod compaction;
mod durability;
mod governance;
mod handshake;
mod ingest;
mod live;
mod not_synced;
mod pipeline;
mod registry;
mod resilience;
mod restore;
mod service;
mod sync;
