//! Resilience suites: kill loop, torn writes, storage faults, hostile wire input,
//! load, and security checks — all against the real binary (or, for most torn-write
//! offsets, the daemon library in-process). docs/RESILIENCE.md describes each suite.
//! Long variants are driven by environment variables set by `scripts/soak`.

pub mod editor;
pub mod inproc;

mod audit;
mod blobs;
mod fences;
mod kill_loop;
mod load;
mod preauth;
mod read_faults;
mod security;
mod step_panic;
mod storage;
mod torn;
mod validation;
mod wire;
