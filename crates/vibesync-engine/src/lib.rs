//! Pure decision logic of the daemon: no sockets, no files, no clocks of its own.
//!
//! Layout:
//! - [`register`]: what a `register` / `tombstone` request does to the registry — per-item
//!   statuses and the STEP payloads to write — given a read-only view of current records.
//!
//! Invariant: every function here is deterministic in its inputs, so the daemon's behaviour
//! can be tested without I/O and replayed from the WAL.

pub mod register;
