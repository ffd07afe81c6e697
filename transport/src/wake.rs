//! A waker that lets any thread interrupt a socket thread blocked in `zmq::poll`.
//!
//! ZeroMQ sockets belong to one thread, and `zmq::poll` cannot wait on a
//! channel. Threads that hand work to a socket thread put it on a
//! `crossbeam_channel` and then call [`Waker::wake`], which writes one byte to a
//! local socket pair; the socket thread polls the other end next to its ZeroMQ
//! sockets and drains the channel when it becomes readable. No lock is taken, and
//! wake-ups coalesce: while one is pending, further calls to `wake` make no system call.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The sending half: cheap to clone, safe to use from any thread.
#[derive(Debug, Clone)]
pub struct Waker {
    stream: Arc<UnixStream>,
    pending: Arc<AtomicBool>,
}

/// The receiving half, polled by the socket thread.
#[derive(Debug)]
pub struct WakeReceiver {
    stream: UnixStream,
    pending: Arc<AtomicBool>,
}

/// Creates a connected waker pair.
pub fn waker() -> std::io::Result<(Waker, WakeReceiver)> {
    let (tx, rx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    let pending = Arc::new(AtomicBool::new(false));
    Ok((
        Waker {
            stream: Arc::new(tx),
            pending: Arc::clone(&pending),
        },
        WakeReceiver {
            stream: rx,
            pending,
        },
    ))
}

impl Waker {
    /// Makes the receiver readable, unless a wake-up is already pending.
    ///
    /// Call it after putting work on the channel: the receiver clears the pending
    /// flag before it drains the channel, so no work is ever left behind.
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            let _ = (&*self.stream).write(&[1]);
        }
    }
}

impl WakeReceiver {
    /// A poll item that becomes readable after [`Waker::wake`].
    pub fn poll_item(&self) -> zmq::PollItem<'static> {
        zmq::PollItem::from_fd(self.stream.as_raw_fd(), zmq::POLLIN)
    }

    /// Consumes pending wake-ups so the next poll blocks again. Call it *before*
    /// draining the channel the wake-ups announce.
    pub fn drain(&self) {
        let mut buf = [0u8; 256];
        loop {
            match (&self.stream).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // Only now: a wake that lands after this writes a fresh byte, and one that
        // landed before it put its work on the channel before the caller drains it.
        self.pending.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesced_wakes_never_strand_work() {
        let (waker, receiver) = waker().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let (waker, tx) = (waker.clone(), tx.clone());
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        tx.send(i).unwrap();
                        waker.wake();
                    }
                })
            })
            .collect();
        let mut received = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while received < 80_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "stranded after {received}"
            );
            let mut items = [receiver.poll_item()];
            zmq::poll(&mut items, 1000).unwrap();
            assert!(
                items[0].is_readable(),
                "no wake-up with {received} of 80000 received"
            );
            receiver.drain();
            while rx.try_recv().is_ok() {
                received += 1;
            }
        }
        for sender in senders {
            sender.join().unwrap();
        }
    }

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
