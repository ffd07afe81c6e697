//! Multipart send/receive and the socket options every Switchboard peer sets.

use switchboard_protocol::Frame;

/// Receives every frame of one multipart message, moving each into a [`Frame`].
pub fn recv_frames(socket: &zmq::Socket, flags: i32) -> zmq::Result<Vec<Frame>> {
    let mut frames = Vec::with_capacity(8);
    loop {
        let mut frame = Frame::new();
        socket.recv(&mut frame, flags)?;
        let more = frame.get_more();
        frames.push(frame);
        if !more {
            return Ok(frames);
        }
    }
}

/// A message over the frame-count or byte limit. Its remaining frames were read and
/// discarded; only the first few are kept, to know whom to answer.
#[derive(Debug)]
pub struct Oversized {
    /// The first frames (up to 5: envelope, delimiter, signature, function, header).
    pub head: Vec<Frame>,
    /// How many frames the message had.
    pub frames: usize,
    /// Its total size in bytes.
    pub bytes: usize,
}

/// A message received within the limits.
#[derive(Debug)]
pub struct Received {
    /// Its frames.
    pub frames: Vec<Frame>,
    /// Its size in bytes, all frames together.
    pub bytes: usize,
}

/// Receives one multipart message on a `ROUTER` socket, refusing more than `max_frames`
/// frames or `max_bytes` bytes in all (the whole message is always consumed). The limits
/// count what the peer sent: the routing identity the socket puts in front is not counted
/// (it is kept, as the first frame). `expected_frames`
/// sizes the frame vector up front (e.g. the size of the previous message), so that a
/// message of hundreds of frames is not moved from vector to growing vector.
pub fn recv_frames_bounded(
    socket: &zmq::Socket,
    flags: i32,
    max_frames: usize,
    max_bytes: usize,
    expected_frames: usize,
) -> zmq::Result<Result<Received, Oversized>> {
    const HEAD: usize = 5;
    let mut frames = Vec::with_capacity(expected_frames.clamp(8, max_frames.max(8)));
    let (mut count, mut bytes, mut over) = (0usize, 0usize, false);
    let mut identity = true;
    loop {
        let mut frame = Frame::new();
        socket.recv(&mut frame, if identity { flags } else { 0 })?;
        let more = frame.get_more();
        if !std::mem::take(&mut identity) {
            count += 1;
            bytes = bytes.saturating_add(frame.len());
        }
        over |= count > max_frames || bytes > max_bytes;
        if !over || frames.len() < HEAD {
            frames.push(frame);
        }
        if !more {
            break;
        }
    }
    if over {
        frames.truncate(HEAD);
        return Ok(Err(Oversized {
            head: frames,
            frames: count,
            bytes,
        }));
    }
    Ok(Ok(Received { frames, bytes }))
}

/// Sends frames as one multipart message. Frames are moved, never copied.
pub fn send_frames(socket: &zmq::Socket, frames: Vec<Frame>, flags: i32) -> zmq::Result<()> {
    let last = frames.len().saturating_sub(1);
    for (i, frame) in frames.into_iter().enumerate() {
        let more = if i < last { zmq::SNDMORE } else { 0 };
        socket.send(frame, flags | more)?;
    }
    Ok(())
}

/// Sends a multipart message without blocking, or hands the frames back untouched
/// when the socket cannot take it now (`EAGAIN`: no connection, or the queue is full).
///
/// Only the first frame is copied: ZeroMQ accepts or refuses a message on its first
/// part, and once that is in, the remaining parts always follow.
pub fn try_send_frames(
    socket: &zmq::Socket,
    frames: Vec<Frame>,
) -> Result<(), (zmq::Error, Vec<Frame>)> {
    let Some(first) = frames.first() else {
        return Ok(());
    };
    let more = if frames.len() > 1 { zmq::SNDMORE } else { 0 };
    if let Err(e) = socket.send(&first[..], zmq::DONTWAIT | more) {
        return Err((e, frames));
    }
    let last = frames.len() - 1;
    for (i, frame) in frames.into_iter().enumerate().skip(1) {
        let more = if i < last { zmq::SNDMORE } else { 0 };
        // Cannot refuse after the first part; an error here means the socket is closing.
        if let Err(e) = socket.send(frame, zmq::DONTWAIT | more) {
            return Err((e, Vec::new()));
        }
    }
    Ok(())
}

/// Options applied to every socket so that exit never hangs and peers cannot flood memory.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// How long unsent messages are kept after close, in milliseconds.
    pub linger_ms: i32,
    /// Largest message accepted from a peer, in bytes; larger ones disconnect it. `-1` is unlimited.
    pub max_message_bytes: i64,
    /// Messages queued per peer in each direction before sends fail or block.
    pub high_water_mark: i32,
    /// How long a new connection may take to complete its handshake, in milliseconds.
    pub handshake_ms: i32,
    /// Most frames in one message (a full batch of 1000 calls needs about 2 010).
    pub max_frames: usize,
    /// Most bytes in one message, all frames together.
    pub max_total_bytes: usize,
}

impl Default for SocketLimits {
    fn default() -> Self {
        SocketLimits {
            linger_ms: 1000,
            max_message_bytes: 64 * 1024 * 1024,
            high_water_mark: 10_000,
            handshake_ms: 5_000,
            max_frames: 2_048,
            max_total_bytes: 64 * 1024 * 1024,
        }
    }
}

impl SocketLimits {
    /// Applies the limits to a socket (before bind or connect).
    pub fn apply(&self, socket: &zmq::Socket) -> zmq::Result<()> {
        socket.set_linger(self.linger_ms)?;
        socket.set_maxmsgsize(self.max_message_bytes)?;
        socket.set_sndhwm(self.high_water_mark)?;
        socket.set_rcvhwm(self.high_water_mark)?;
        socket.set_handshake_ivl(self.handshake_ms)?;
        Ok(())
    }
}

/// The endpoints a comma-separated list names (`tcp://a:5555,tcp://b:5555`), in order,
/// trimmed, without empty entries or duplicates: how the worker and the client take
/// several brokers in one setting.
pub fn endpoint_list(list: &str) -> Vec<String> {
    let mut endpoints: Vec<String> = Vec::new();
    for endpoint in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if !endpoints.iter().any(|e| e == endpoint) {
            endpoints.push(endpoint.to_owned());
        }
    }
    endpoints
}

#[cfg(test)]
mod endpoint_list_tests {
    use super::endpoint_list;

    #[test]
    fn splits_trims_and_drops_empty_and_repeated_entries() {
        assert_eq!(
            endpoint_list(" tcp://a:1 ,,tcp://b:2,tcp://a:1, "),
            vec!["tcp://a:1".to_owned(), "tcp://b:2".to_owned()]
        );
        assert!(endpoint_list(" , ").is_empty());
    }
}
