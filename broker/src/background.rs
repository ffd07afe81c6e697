//! [`Background`]: a named helper thread that runs until its owner drops it.

use std::thread::JoinHandle;

use switchboard_transport::Shutdown;

/// A thread that loops while its stop flag is unset; dropping it sets the flag and joins.
pub(crate) struct Background {
    stop: Shutdown,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts `body` on a thread called `name`; `body` must return soon after its flag is set.
    pub(crate) fn spawn(
        name: &str,
        body: impl FnOnce(Shutdown) + Send + 'static,
    ) -> std::io::Result<Background> {
        let stop = Shutdown::new();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || body(flag))?;
        Ok(Background {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.trigger();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
