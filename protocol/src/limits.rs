//! Every limit of the wire protocol, in one place: what a peer may send and what it must
//! expect. PROTOCOL.md states the same numbers; a peer written from it (in any language)
//! enforces or respects these.
//!
//! Three ways of carrying several calls have three names: a **pipeline** is several calls
//! in one client message, each answered on its own; a **batch** is one `system.batch`
//! call holding many, answered once; **coalescing** is the broker and a worker putting
//! several calls (REQUEST) or replies (REPLY) in one message of the worker protocol.

// Every message.

/// Longest function name accepted, in bytes.
pub const MAX_FUNCTION_NAME_LEN: usize = 255;

/// Most arrays and maps nested in one frame, the frame's outermost one included (a
/// request body `{"args": [[1]]}` nests 3): 64 decode, 65 are a decode error, never a
/// stack overflow. Every decoder of the crate enforces it, whichever library reads the
/// bytes.
pub const MAX_DEPTH: usize = 64;

/// Most MessagePack values in one frame (every scalar, array, map, key and element
/// counts). Decoding into a dynamic [`crate::Value`] costs about 40 bytes per value
/// whatever its encoded size (an empty array is one byte), so this bounds what one
/// request can make a worker allocate: about 40 MiB.
pub const MAX_VALUES: usize = 1 << 20;

/// Most frames before the empty delimiter: the routing identity the broker's ROUTER adds,
/// plus what proxies between the client and the broker add (a DEALER client sends none).
pub const MAX_ENVELOPE_FRAMES: usize = 16;

/// Most bytes in those frames, together. Each call keeps a copy of its envelope until it
/// is answered, so the limit bounds what one pipelined message can make the broker hold.
pub const MAX_ENVELOPE_BYTES: usize = 1024;

// The client protocol: pipelines and batches.

/// Most calls one pipelined message may carry.
pub const MAX_PIPELINED_CALLS: usize = 256;

/// Most replies the broker puts in one message to a pipelining client (replies to the
/// calls of a pipeline may travel grouped).
pub const MAX_PIPELINED_REPLIES: usize = 256;

/// Most calls one batch may carry.
pub const MAX_BATCH_CALLS: usize = 1000;

/// Most `system.*` calls one batch may carry; the others are answered BAD_REQUEST.
pub const MAX_SYSTEM_CALLS_PER_BATCH: usize = 16;

// The worker protocol: coalesced REQUEST and REPLY messages.

/// Most calls one REQUEST or REPLY message may carry.
pub const MAX_COALESCED_CALLS: usize = 256;

/// A sender starts a new message once the bodies of the current one reach this many bytes.
pub const COALESCE_BYTES: usize = 1024 * 1024;

// What a broker accepts in a worker's READY (beyond them: clamped, cut or ignored).

/// Heartbeat intervals a worker may announce are clamped to this range, so that a worker
/// that dies is declared lost within `liveness × 30 s` whatever it announced.
pub const HEARTBEAT_RANGE_MS: (u64, u64) = (10, 30_000);

/// Largest capacity (and inline capacity) a worker may announce; more is clamped.
pub const MAX_CAPACITY: u32 = 10_000;

/// Most functions one worker may host; the rest of its READY is ignored.
pub const MAX_FUNCTIONS_PER_WORKER: usize = 1_024;

/// Most distinct function names the broker hosts at once; new ones beyond are ignored.
pub const MAX_FUNCTIONS: usize = 10_000;

/// Most functions that no worker hosts but that have calls waiting for a worker (callers
/// asked `wait_for_ready`); a call that would add one more is refused OVERLOADED.
pub const MAX_UNHOSTED_FUNCTIONS: usize = 1_024;

/// Longest doc line kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_DOC_BYTES: usize = 1_024;

/// Longest signature kept, in bytes (same).
pub const MAX_SIGNATURE_BYTES: usize = 256;

/// Longest hedge delay a worker may announce for a function, in milliseconds (one hour);
/// more is clamped.
pub const MAX_HEDGE_MS: u64 = 3_600_000;
