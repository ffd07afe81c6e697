//! The stop flag every long-running loop takes as a parameter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::wake::Waker;

/// A cloneable flag: set once to ask loops to stop. Loops look at it between waits; a
/// loop that registered a [`Waker`] is also woken at once when [`Shutdown::trigger`] sets
/// it (a signal handler sets only the flag: loops then notice within their longest
/// wait, 100 ms).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    wakers: Arc<Mutex<Vec<Waker>>>,
}

impl Shutdown {
    /// A flag that is not yet set.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every holder to stop, and wakes the loops that asked to be woken.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for waker in wakers.iter() {
            waker.wake();
        }
    }

    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Wakes `waker` when the flag is set through [`Shutdown::trigger`] (at once if it is
    /// set already).
    pub fn wake_on_trigger(&self, waker: Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_triggered() {
            waker.wake();
        }
        wakers.push(waker);
    }

    /// The underlying flag, for `signal_hook::flag::register`.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake::waker;

    #[test]
    fn a_trigger_wakes_the_registered_loops() {
        let shutdown = Shutdown::new();
        let (wake, receiver) = waker().unwrap();
        shutdown.wake_on_trigger(wake);
        let mut items = [receiver.poll_item()];
        assert_eq!(zmq::poll(&mut items, 0).unwrap(), 0, "not yet");
        shutdown.clone().trigger();
        assert!(shutdown.is_triggered());
        assert_eq!(zmq::poll(&mut items, 1000).unwrap(), 1, "woken");
    }
}
