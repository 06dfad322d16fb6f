//! Threads of background work: processing the log and the work it causes (the state store's
//! checkpoints).

/// Lowers the calling thread's scheduling priority (nice 10) on Linux, where a thread has its own.
///
/// Processing is background work: what it owes is bounded lag, not latency, while requests
/// (evaluation, assignment, ingest) are waited on by users. When the cores are busy the
/// scheduler now serves requests first and processing catches up in the gaps; when they are
/// not, nice makes no difference. Lag stays visible in `/metrics`, and ingest still answers
/// 429 past its lag limit, so processing cannot fall behind without bound.
pub(crate) fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; failure only leaves the
    // priority as it was.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, 10);
    }
}
