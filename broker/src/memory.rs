//! Giving memory back to the operating system after a flood of queued calls drains.
//!
//! The allocator keeps freed memory for reuse, so a broker that once queued 100 000
//! calls would keep that resident set forever. After a drain the poll loop asks glibc
//! to return free pages (`malloc_trim`). It is one of the two `unsafe` calls of the project
//! (the other seeds `rand()`, in `libzmq_seed`).

/// Returns free heap pages to the operating system (glibc only; a no-op elsewhere).
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers
    // from us and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
