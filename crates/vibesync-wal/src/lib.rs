//! The VibeSync write-ahead log. See docs/WAL.md.
pub mod record;
pub use record::{LineError, Phase, Record, RecordDraft, GENESIS_PREV, SCHEMA_VERSION};
