//! Background work behind the log: the stores derived from the WAL (the audit, the registry's
//! write-behind) run on threads at a lower scheduling priority, so that on a busy machine the
//! threads a person or a client waits for (sessions, sync actors, the registrar, the WAL
//! writer) run first. Such a thread is never on an acknowledgement path: what it falls behind
//! on is in the WAL, and boot catches it up (docs/WAL.md §8).

/// Niceness of the background threads (Linux: 0 is the default, 19 the lowest priority). At
/// 10 a background thread gets about a tenth of a core that ingest keeps busy, so it never
/// stops; a starved one makes fewer, larger writes, each of which costs about what a small
/// one does (docs/BENCHMARKS.md).
pub const BACKGROUND_NICE: i32 = 10;

/// Lower the calling thread's priority to [`BACKGROUND_NICE`], never raise it (Linux:
/// `setpriority` on the thread id affects that thread only). Best effort: a failure is logged and changes
/// nothing; elsewhere it does nothing. `what` names the thread in the log.
pub fn lower_thread_priority(what: &str) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls with no pointers; `gettid` cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
        // Never raised: a daemon started under `nice` keeps its lower priority.
        let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
        if now < BACKGROUND_NICE && unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "{what}: could not lower the thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = what;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's niceness.
    fn niceness() -> i32 {
        // SAFETY: plain syscalls with no pointers.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
        unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }
    }

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = niceness();
        let lowered = std::thread::spawn(|| {
            lower_thread_priority("test");
            niceness()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, BACKGROUND_NICE.max(before), "the background thread runs at the background priority");
        assert_eq!(niceness(), before, "the thread that spawned it keeps its own");
    }
}
