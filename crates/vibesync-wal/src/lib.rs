//! The VibeSync write-ahead log: the source of truth every other store is rebuilt from.
//! See docs/WAL.md for the format, the durability rules and recovery.
//!
//! Layout:
//! - [`record`]: one record and its byte-exact line format (checksum rule).
//! - [`anchor`]: compaction: removing covered segments behind `wal/anchor.json`.
//! - [`chain`]: the hash chain as pure logic.
//! - [`txindex`]: the transaction index (incomplete / unfinalized operations), pure logic.
//! - [`fsutil`]: directory fsync and atomic small-file writes (every store's one copy).
//! - `segment`: segment file naming, listing, quarantine names.
//! - `recovery`: boot recovery (torn tail, corruption, repair) used by [`Wal::open`].
//! - `writer`: the single writer thread (group commit, fdatasync, read-back, poison).
//! - `wal`: the [`Wal`] handle.
//! - [`probe`]: the machine's fdatasync cost, printed beside every durability figure.
//! - [`background`]: the lower priority of the threads that build stores behind the log.
//! - [`reader`]: read-only access for offline tools: [`Reader`], [`read_all`], [`verify`].

pub mod anchor;
pub mod background;
pub mod chain;
mod error;
pub mod fsutil;
pub mod probe;
pub mod reader;
pub mod record;
mod recovery;
mod segment;
pub mod txindex;
mod wal;
mod writer;

pub use anchor::{compact, load_anchor, plan_compaction, Anchor, CompactStop, Compacted, CompactionPlan, ANCHOR_FILE};
pub use chain::{ChainBreak, ChainState};
pub use error::WalError;
pub use reader::{read_all, verify, Entry, Position, Problem, ProblemKind, Reader};
pub use record::{LineError, Outcome, Phase, Record, RecordDraft, RecordHead, GENESIS_PREV, SCHEMA_VERSION};
pub use recovery::{Quarantined, Recovery, Repaired};
pub use segment::{
    file_ts, format_ts, parse_segment_name, quarantine_file_name, segment_file_name, DEFAULT_SEGMENT_BYTES,
};
pub use txindex::{transaction_index, IncompleteTx, TxAnomaly, TxIndex, TxIndexBuilder, UnfinalizedTx};
pub use wal::{segment_stamps, DurableHook, Fault, ResumeAt, SegmentStamp, Wal, WalConfig, WalStats};
