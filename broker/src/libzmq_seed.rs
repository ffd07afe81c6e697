//! An unpredictable start for libzmq's routing-id counter.
//!
//! A `ROUTER` socket names each peer that did not choose a routing id `00` + a 32-bit
//! counter, and libzmq aborts the whole process (an assertion in `add_out_pipe`) when the
//! next generated id is one a peer already chose for itself. The counter starts at two
//! `rand()` draws made when the socket is created, and libzmq 4.3 never seeds `rand()`:
//! every broker's first peer was `00 6b8b4567`, so one client that claimed the next id
//! could kill the broker. Seeding `rand()` from the operating system's random source
//! before any socket exists makes the counter's start a 32-bit secret. (The broker never
//! shows routing ids to anyone either: `system.workers` lists registration numbers.)

/// Seeds the C library's `rand()` from the OS random source. Call before creating any
/// ZeroMQ socket; calling it again is harmless.
pub(crate) fn seed_routing_ids() {
    // Without an OS random source, the clock and the process id still vary per run.
    let seed = getrandom::u32().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        nanos ^ std::process::id().rotate_left(16)
    });
    #[allow(unsafe_code)]
    // SAFETY: srand only stores the seed in the C library's generator state (glibc guards
    // it with a lock); it takes no pointer and has no other effect.
    unsafe {
        libc::srand(seed);
    }
}
