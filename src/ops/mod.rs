//! The operations listener: Prometheus metrics, health endpoints and the live status page,
//! on one address (`--metrics-addr` / `ECOM_METRICS_ADDR`, `127.0.0.1:9464` by default).
//!
//! Owns: the HTTP listener and its routes:
//!
//! | path | answers |
//! | --- | --- |
//! | `/metrics` | Prometheus text format ([`exporter`]) |
//! | `/healthz` | `200 ok`: the process is alive and its runtime answers |
//! | `/readyz` | `200 ready`, or `503` with the reason ([`Readiness`]) |
//! | `/status.json` | the counters now and their recent history ([`status`]) |
//! | `/` | the status page: one self-contained HTML file that polls `/status.json` |
//!
//! Must never: slow the pipeline down or take it down, or let one client keep the probes
//! out. Every handler only reads atomics. What bounds the clients, and why:
//!
//! - accept never waits: a new connection is admitted at once, and at a bound the least
//!   recently active connection is closed to make room ([`admission`]: 256 in all, 32 per
//!   client address). A probe is the newest connection, so it gets in whatever the other
//!   clients hold;
//! - a client has [`HEADER_TIMEOUT`] to send each request head, the first and every later one
//!   on a keep-alive connection (hyper starts the timer as soon as the connection is idle), so
//!   half a head or an idle keep-alive connection is closed after it, even when nobody needs
//!   its place;
//! - each connection's read and write buffers are capped at [`MAX_BUF`], so memory is
//!   bounded by about `MAX_CONNECTIONS × 2 × MAX_BUF` plus the responses being written, and
//!   file descriptors by [`MAX_CONNECTIONS`] + 1 (a newcomer waiting for the connection it
//!   replaces to close) plus the listener's own.
//!
//! Keep-alive stays on: the status page polls every second on one connection, and a
//! scraper reuses its connection as long as it asks more often than [`HEADER_TIMEOUT`].
//!
//! hyper 1 is used directly (with hyper-util's tokio glue): five fixed GET routes need no
//! router framework, and hyper is in the dependency tree for the Pub/Sub client anyway.

pub mod admission;
pub mod exporter;
pub mod status;

use crate::health::Readiness;
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The default listener address (design §5).
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

pub use admission::{MAX_CONNECTIONS, MAX_PER_PEER};

/// How long a client may take to send a request head, and how long a keep-alive connection
/// may wait for its next request. A probe or scraper sends its head in one packet; the status
/// page asks every second. Short, so that connections nobody uses go away by themselves.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection's read (and write-queue) buffer cap, hyper's ~400 KiB by default. A GET's
/// head fits in a few hundred bytes; a browser's with cookies in a few KiB. A longer head is
/// answered `431` and the connection closed.
pub const MAX_BUF: usize = 16 * 1024;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is taken, not local, or not permitted. The OS error is the source, so
    /// `{:#}` prints it once, after this line.
    #[error("invalid setting --metrics-addr (ECOM_METRICS_ADDR): cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running listener. Dropping it stops accepting connections.
#[must_use = "dropping the server stops it"]
pub struct OpsServer {
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

impl OpsServer {
    /// The address actually bound (with port 0, the port the system chose).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        self.accept.abort();
        self.sampler.abort();
    }
}

/// What every request handler reads.
struct Shared {
    identity: status::Identity,
    stats: Arc<Stats>,
    readiness: Arc<Readiness>,
    history: status::History,
}

/// Binds `addr` and serves the routes above until the returned [`OpsServer`] is dropped.
/// `identity` heads the status page.
///
/// When `shutdown` fires it marks `readiness` as shutting down while it keeps serving, so probes see `503` during the drain and the final counters
/// can still be scraped. Must be called inside a tokio runtime (the actix System is one).
pub async fn serve(
    addr: SocketAddr,
    stats: Arc<Stats>,
    readiness: Arc<Readiness>,
    shutdown: Shutdown,
    identity: status::Identity,
) -> Result<OpsServer, ServeError> {
    let bind_err = |source| ServeError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    exporter::install();
    let shared = Arc::new(Shared {
        identity,
        history: status::History::default(),
        stats,
        readiness,
    });
    let sampler = tokio::spawn(sample(shared.clone(), shutdown));
    let accept = tokio::spawn(accept(listener, shared));
    tracing::info!(addr = %local_addr, "operations listener: /metrics /healthz /readyz /status.json /");
    Ok(OpsServer {
        local_addr,
        accept,
        sampler,
    })
}

/// Records the status page's history once a second, and turns readiness off at shutdown.
async fn sample(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(status::SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            _ = tick.tick() => shared.history.record(&shared.stats),
            _ = shutdown.wait(), if !shutting_down => {
                shutting_down = true;
                shared.readiness.begin_shutdown();
                tracing::info!("shutting down: /readyz answers 503 from now on");
            }
        }
    }
}

/// Accepts every connection as it comes (a client left in the kernel's backlog is a probe
/// that times out) and serves each on a task of its own.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let admission = admission::Admission::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Per-connection errors (e.g. the client reset) and fd exhaustion both pass;
                // a short pause keeps the latter from spinning.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Makes room at a bound; waits only for an evicted connection's socket to close.
        let Some(ticket) = admission.admit(peer.ip()).await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let conn = ticket.conn().clone();
            let service = hyper::service::service_fn(move |req| {
                conn.touch();
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&req, &shared)) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_BUF);
            let serving = http.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                biased;
                () = ticket.conn().evicted() => {
                    tracing::debug!(%peer, "operations connection closed to make room");
                }
                result = serving => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "operations connection ended with an error");
                    }
                }
            }
            // The socket is closed (dropped with `serving`) before the ticket frees its slot.
            drop(ticket);
        });
    }
}

fn route(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/metrics" => match exporter::render(&shared.stats, &shared.readiness) {
            Some(body) => reply(StatusCode::OK, exporter::CONTENT_TYPE, body),
            None => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "another metrics recorder is installed in this process\n",
            ),
        },
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match shared.readiness.check(&shared.stats) {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{reason}\n")),
        },
        "/status.json" => {
            let body = status::render(
                &shared.identity,
                &shared.stats,
                &shared.readiness,
                &shared.history,
            );
            reply(StatusCode::OK, "application/json", body)
        }
        "/" | "/index.html" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status::PAGE.to_string(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body.to_string())
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    // Live data: a cached answer would be a wrong answer.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
