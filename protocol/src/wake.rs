//! A waker that lets any thread interrupt a socket thread blocked in `zmq::poll`.
//!
//! ZeroMQ sockets belong to one thread, and `zmq::poll` cannot wait on a
//! channel. Threads that hand work to a socket thread put it on a
//! `crossbeam_channel` and then call [`Waker::wake`], which writes one byte to a
//! local socket pair; the socket thread polls the other end next to its ZeroMQ
//! sockets and drains the channel when it becomes readable. No lock is taken.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// The sending half: cheap to clone, safe to use from any thread.
#[derive(Debug, Clone)]
pub struct Waker {
    stream: Arc<UnixStream>,
}

/// The receiving half, polled by the socket thread.
#[derive(Debug)]
pub struct WakeReceiver {
    stream: UnixStream,
}

/// Creates a connected waker pair.
pub fn waker() -> std::io::Result<(Waker, WakeReceiver)> {
    let (tx, rx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    Ok((
        Waker {
            stream: Arc::new(tx),
        },
        WakeReceiver { stream: rx },
    ))
}

impl Waker {
    /// Makes the receiver readable. A full buffer means a wake-up is already pending.
    pub fn wake(&self) {
        let _ = (&*self.stream).write(&[1]);
    }
}

impl WakeReceiver {
    /// A poll item that becomes readable after [`Waker::wake`].
    pub fn poll_item(&self) -> zmq::PollItem<'static> {
        zmq::PollItem::from_fd(self.stream.as_raw_fd(), zmq::POLLIN)
    }

    /// Consumes pending wake-ups so the next poll blocks again.
    pub fn drain(&self) {
        let mut buf = [0u8; 256];
        loop {
            match (&self.stream).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Ok(_) => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_makes_the_receiver_readable_until_drained() {
        let (waker, receiver) = waker().unwrap();
        let mut items = [receiver.poll_item()];
        assert_eq!(zmq::poll(&mut items, 0).unwrap(), 0);
        for _ in 0..1000 {
            waker.clone().wake();
        }
        assert_eq!(zmq::poll(&mut items, 0).unwrap(), 1);
        receiver.drain();
        let mut items = [receiver.poll_item()];
        assert_eq!(zmq::poll(&mut items, 0).unwrap(), 0);
    }
}
