//! The `/metrics` (OpenMetrics text) and `/health` HTTP endpoint, served by `hyper`.
//!
//! One named thread runs a single-threaded Tokio runtime that serves many connections at
//! once, each bounded in time: its request head must arrive within [`HEAD_TIMEOUT`] and the
//! whole exchange end within [`CONNECTION_TIMEOUT`], so a client that trickles one byte a
//! second holds nothing up. At most [`MAX_CONNECTIONS`] are served at a time; more are
//! closed at once. Rendering happens on the broker's poll thread, which owns the state:
//! a request asks for the text over a channel, wakes the poll loop, and waits (bounded).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{bounded, Sender};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use switchboard_transport::wake::Waker;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::background::Background;

/// A request for the current metrics text; the poll thread answers on the sender.
pub(crate) type MetricsRequest = Sender<String>;

/// How long a client may take to send its request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last in all.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker's poll loop may take to render the metrics.
const RENDER_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; more are closed without an answer.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// How often the accept loop checks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// What a request handler needs to ask the poll loop for the metrics.
struct Loop {
    requests: Sender<MetricsRequest>,
    waker: Waker,
}

/// Binds `address` and serves it on a thread until the returned handle is dropped.
pub(crate) fn serve(
    address: &str,
    requests: Sender<MetricsRequest>,
    waker: Waker,
) -> std::io::Result<(SocketAddr, Background)> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let state = Arc::new(Loop { requests, waker });
    let thread = Background::spawn("switchboard-metrics", move |stop| {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    warn!(error = %e, "metrics listener failed");
                    return;
                }
            };
            let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
            while !stop.is_triggered() {
                let (stream, peer) = match tokio::time::timeout(STOP_CHECK, listener.accept()).await
                {
                    Err(_) => continue,
                    Ok(Ok(accepted)) => accepted,
                    Ok(Err(e)) => {
                        warn!(error = %e, "metrics listener failed to accept");
                        tokio::time::sleep(STOP_CHECK).await;
                        continue;
                    }
                };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    debug!(%peer, "too many metrics connections; closing this one");
                    continue;
                };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        answer(request, Arc::clone(&state))
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEAD_TIMEOUT)
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service);
                    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => debug!(%peer, error = %e, "metrics connection failed"),
                        Err(_) => debug!(%peer, "metrics connection too slow; closed"),
                    }
                    drop(slot);
                });
            }
        });
    })?;
    Ok((local, thread))
}

/// Answers one request.
async fn answer(
    request: Request<Incoming>,
    state: Arc<Loop>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            // The wait for the poll loop blocks: keep it off the runtime's only thread.
            let text = tokio::task::spawn_blocking(move || {
                let (reply, text) = bounded(1);
                let sent = state.requests.try_send(reply).is_ok();
                state.waker.wake();
                sent.then(|| text.recv_timeout(RENDER_TIMEOUT).ok())
                    .flatten()
            })
            .await
            .ok()
            .flatten();
            match text {
                Some(text) => (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                None => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "busy\n".to_owned(),
                ),
            }
        }
        (&Method::GET, "/health") => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics\n".to_owned(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    Ok(response)
}
