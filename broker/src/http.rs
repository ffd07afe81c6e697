//! A minimal HTTP endpoint for `/metrics` (Prometheus text format) and `/health`.
//!
//! One named thread accepts connections one at a time. Rendering happens on the
//! broker's poll thread, which owns the state: this thread asks for it over a
//! channel, wakes the poll loop, and waits (bounded) for the text.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use std::time::Duration;

use crate::background::Background;
use crossbeam_channel::{bounded, Sender};
use switchboard_protocol::wake::Waker;
use tracing::{debug, warn};

/// A request for the current metrics text; the poll thread answers on the sender.
pub type MetricsRequest = Sender<String>;

/// How long a client may take to send its request, and the broker to render.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// Binds `address` and serves it on a thread until the returned handle is dropped.
pub fn serve(
    address: &str,
    requests: Sender<MetricsRequest>,
    waker: Waker,
) -> std::io::Result<(SocketAddr, Background)> {
    let listener = TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let thread = Background::spawn("switchboard-metrics", move |stop| {
        while !stop.is_triggered() {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if let Err(e) = answer(stream, &requests, &waker) {
                        debug!(%peer, error = %e, "metrics request failed");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    warn!(error = %e, "metrics listener failed");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    })?;
    Ok((local, thread))
}

fn answer(
    mut stream: TcpStream,
    requests: &Sender<MetricsRequest>,
    waker: &Waker,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let (reply, text) = bounded(1);
            let sent = requests.try_send(reply).is_ok();
            waker.wake();
            match sent.then(|| text.recv_timeout(IO_TIMEOUT).ok()).flatten() {
                Some(body) => ("200 OK", "text/plain; version=0.0.4", body),
                None => ("503 Service Unavailable", "text/plain", "busy\n".to_owned()),
            }
        }
        ("GET", "/health") => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}
