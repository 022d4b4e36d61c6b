//! Integration tests: real files, real fsync, in temp directories. One test binary.

mod append;
mod common;
mod compaction;
mod reader;
mod recovery;
mod resume;
