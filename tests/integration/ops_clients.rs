//! The operations listener under hostile and ordinary clients (issue 23): probes answer
//! while a thousand connections send half a request head and a thousand more sit idle on
//! keep-alive, 10,000 connection attempts leave its sockets bounded, and a keep-alive
//! scraper is still served on one connection.
//!
//! The listener runs in process on loopback; clients come from many 127.x.y.z addresses (all
//! of 127/8 is loopback on Linux) so that both the per-address bound and the global one are
//! reached. "Answers within 5 s" is a client timeout whose expiry fails the test, never a
//! measured duration. RESILIENCE.md has the figures of a manual run.

use crate::ops::get_async;
use ecom_stream::health::Readiness;
use ecom_stream::ops::{self, OpsServer, HEADER_TIMEOUT, MAX_CONNECTIONS};
use ecom_stream::shutdown::Shutdown;
use ecom_stream::telemetry::Stats;
use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long any one client step may take before the test fails: far above a loaded
/// machine's worst, far below what a client starved by the old listener waited.
const PATIENCE: Duration = Duration::from_secs(5);

/// The listener's connections, plus the newcomer that waits for the one it replaces to close.
const MOST_SOCKETS: usize = MAX_CONNECTIONS + 1;

/// The request head every client starts; the half-head clients stop before its blank line.
fn head(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: ops\r\nUser-Agent: ops-clients-test\r\n")
}

async fn start() -> OpsServer {
    ops::serve(
        "127.0.0.1:0".parse().expect("an address"),
        Arc::new(Stats::default()),
        Arc::new(Readiness::new()),
        Shutdown::never(),
        ops::status::Identity::named("test"),
    )
    .await
    .expect("serve")
}

/// The `i`th loopback source address of `net` (127.net.x.y), away from 127.0.0.1, the
/// probes' own.
fn source(net: u8, i: usize) -> IpAddr {
    assert!(net > 0 && i < 250 * 250, "source({net}, {i})");
    IpAddr::V4(Ipv4Addr::new(
        127,
        net,
        (i / 250) as u8,
        (i % 250) as u8 + 1,
    ))
}

/// Raises this process's soft limit on open files to `need` (within the hard limit): the
/// clients and the listener's sockets share it here.
fn ensure_fd_limit(need: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if limit.rlim_cur >= need {
        return;
    }
    assert!(
        limit.rlim_max >= need,
        "this test needs {need} open files; the hard limit is {} (raise `ulimit -Hn`)",
        limit.rlim_max
    );
    limit.rlim_cur = need;
    // SAFETY: as above.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(set, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// Connects from `from` to `addr`, failing the test if the handshake does not complete.
async fn connect_from(from: IpAddr, addr: SocketAddr, what: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    tokio::time::timeout(PATIENCE, socket.connect(addr))
        .await
        .unwrap_or_else(|_| panic!("{what}: no connection within {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("{what}: connect {addr}: {e}"))
}

/// Sends `GET path` on a kept-alive connection and reads exactly one response:
/// (status, whether the server said it will close, body).
async fn ask(stream: &mut TcpStream, path: &str, what: &str) -> (u16, bool, String) {
    let exchange = async {
        stream
            .write_all(format!("{}\r\n", head(path)).as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{what}: send: {e}"));
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let (head_len, body_len) = loop {
            let n = stream
                .read(&mut buf)
                .await
                .unwrap_or_else(|e| panic!("{what}: read: {e}"));
            assert!(n > 0, "{what}: closed before a whole response: {raw:?}");
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or_else(|| panic!("{what}: no content-length: {head}"));
                break (end + 4, len);
            }
        };
        while raw.len() < head_len + body_len {
            let n = stream
                .read(&mut buf)
                .await
                .unwrap_or_else(|e| panic!("{what}: read body: {e}"));
            assert!(n > 0, "{what}: closed mid-body");
            raw.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&raw[..head_len]).to_ascii_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{what}: not an HTTP response: {head}"));
        let closing = head.contains("\r\nconnection: close");
        let body = String::from_utf8_lossy(&raw[head_len..]).into_owned();
        (status, closing, body)
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer to GET {path} within {PATIENCE:?}"))
}

/// A fresh connection from 127.0.0.1 asking `path` once, answered within [`PATIENCE`].
async fn probe(addr: SocketAddr, path: &str) -> (u16, String) {
    tokio::time::timeout(PATIENCE, get_async(addr, path))
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no answer within {PATIENCE:?}"))
}

/// The listener's accepted sockets still open in this process: the socket inodes among
/// /proc/self/fd whose local port is the listener's (the clients' local ports are
/// ephemeral ones), so other tests' files and this test's clients do not count.
fn server_sockets(addr: SocketAddr) -> usize {
    let inodes: HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = format!("{:04X}", addr.port());
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            cols.len() > 9
                && cols[1].rsplit(':').next() == Some(port.as_str())
                && cols[3] != "0A" // LISTEN: the listener itself
                && cols[9].parse().is_ok_and(|inode: u64| inodes.contains(&inode))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_a_thousand_idle_and_a_thousand_half_head_connections_are_open() {
    const EACH: usize = 1_000;
    ensure_fd_limit(8_192);
    let server = start().await;
    let addr = server.local_addr();

    // A thousand clients from a thousand addresses make one keep-alive request each and
    // then sit idle, holding their connections.
    let mut idle = Vec::with_capacity(EACH);
    for i in 0..EACH {
        let what = format!("idle client {i}");
        let mut stream = connect_from(source(1, i), addr, &what).await;
        let (status, closing, body) = ask(&mut stream, "/healthz", &what).await;
        assert_eq!(
            (status, closing, body.as_str()),
            (200, false, "ok\n"),
            "{what}"
        );
        idle.push(stream);
    }
    // A thousand more, from the probes' own address, send half a request head and stop.
    let mut slow = Vec::with_capacity(EACH);
    for i in 0..EACH {
        let what = format!("half-head client {i}");
        let mut stream = connect_from(Ipv4Addr::LOCALHOST.into(), addr, &what).await;
        stream
            .write_all(head("/metrics").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{what}: send: {e}"));
        slow.push(stream);
    }

    // The probes are answered at once, with the clients still holding their sockets.
    assert_eq!(probe(addr, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(probe(addr, "/readyz").await, (200, "ready\n".to_string()));
    // The listener made room by closing the quietest connections: its sockets stay bounded.
    let open = server_sockets(addr);
    assert!(
        open <= MOST_SOCKETS,
        "{open} sockets open on the listener, more than {MOST_SOCKETS}"
    );
    drop((idle, slow));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connection_attempts_leave_the_listeners_sockets_bounded() {
    const ATTEMPTS: usize = 10_000;
    /// Clients this test holds open at once (the oldest is dropped beyond it).
    const HELD: usize = 1_000;
    ensure_fd_limit(8_192);
    let server = start().await;
    let addr = server.local_addr();
    let mut held = VecDeque::with_capacity(HELD);
    let mut most = 0;
    for i in 0..ATTEMPTS {
        let what = format!("connection attempt {i}");
        // Twenty addresses in turn, fifty held from each: both bounds are reached.
        let mut stream = connect_from(source(2, i % 20), addr, &what).await;
        // Half a head: nothing the listener could finish and close by itself.
        stream
            .write_all(head("/").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{what}: send: {e}"));
        if held.len() == HELD {
            held.pop_front();
        }
        held.push_back(stream);
        if i % 500 == 499 {
            let open = server_sockets(addr);
            most = most.max(open);
            assert!(
                open <= MOST_SOCKETS,
                "after {} attempts: {open} sockets open on the listener, more than {MOST_SOCKETS}",
                i + 1
            );
        }
    }
    assert!(
        most > 0,
        "the listener's sockets were never seen: is /proc/net/tcp read right?"
    );
    eprintln!("{ATTEMPTS} attempts: at most {most} sockets open on the listener");
    assert_eq!(probe(addr, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(probe(addr, "/readyz").await, (200, "ready\n".to_string()));
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_scraper_gets_every_answer_on_one_connection() {
    let server = start().await;
    let addr = server.local_addr();
    let mut stream = connect_from(Ipv4Addr::LOCALHOST.into(), addr, "scraper").await;
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/status.json",
        "/",
        "/metrics",
    ] {
        let (status, closing, body) = ask(&mut stream, path, "scraper").await;
        assert_eq!(status, 200, "GET {path}: {body}");
        assert!(
            !closing,
            "GET {path}: the server closed a keep-alive connection"
        );
    }
}

/// Reads until the server closes the connection, failing the test if it is still open
/// well after the header timeout.
async fn closed_by_server(mut stream: TcpStream, what: &str) {
    let patience = HEADER_TIMEOUT * 4;
    let mut buf = [0u8; 1024];
    let read_to_eof = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(patience, read_to_eof)
        .await
        .unwrap_or_else(|_| panic!("{what}: still open after {patience:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_and_half_head_connections_are_closed_by_the_server() {
    let server = start().await;
    let addr = server.local_addr();
    let mut idle = connect_from(Ipv4Addr::LOCALHOST.into(), addr, "idle").await;
    let (status, closing, _) = ask(&mut idle, "/healthz", "idle").await;
    assert_eq!((status, closing), (200, false));
    let mut slow = connect_from(Ipv4Addr::LOCALHOST.into(), addr, "half head").await;
    slow.write_all(head("/healthz").as_bytes())
        .await
        .expect("send half a head");
    // Not a timing assertion: only that the server closes them by itself, well within
    // four times its header timeout.
    tokio::join!(
        closed_by_server(idle, "the idle keep-alive connection"),
        closed_by_server(slow, "the half-head connection"),
    );
}

// ---------------------------------------------------------------------------------------
// The manual measurement behind RESILIENCE.md's figures (not part of the suite)
// ---------------------------------------------------------------------------------------

/// Times the probes of a running listener (`ECOM_OPS_FLOOD_ADDR`, e.g. `demo --serve`'s)
/// while 1,000 clients sit idle after one keep-alive request and 1,000 send half a head,
/// all still holding their sockets.
/// Prints one `RESILIENCE:` line; asserts nothing about time. Run it as RESILIENCE.md says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a manual measurement against a running listener: set ECOM_OPS_FLOOD_ADDR"]
async fn manual_probe_times_under_idle_and_half_head_clients() {
    const EACH: usize = 1_000;
    const ROUNDS: usize = 10;
    /// Long enough to time what the old listener did (10 s slots, more in the backlog).
    const WAIT: Duration = Duration::from_secs(60);
    let addr: SocketAddr = std::env::var("ECOM_OPS_FLOOD_ADDR")
        .expect("ECOM_OPS_FLOOD_ADDR=HOST:PORT of a running listener")
        .parse()
        .expect("ECOM_OPS_FLOOD_ADDR is HOST:PORT");
    ensure_fd_limit(8_192);
    // As in the test above, one after the other; a phase stops at the first client not
    // served within 5 s (the old listener's full slots and backlog).
    let step = |from: IpAddr, request: String, answer: bool| async move {
        let client = async {
            let socket = TcpSocket::new_v4().ok()?;
            socket.bind(SocketAddr::new(from, 0)).ok()?;
            let mut stream = socket.connect(addr).await.ok()?;
            stream.write_all(request.as_bytes()).await.ok()?;
            if answer {
                let mut buf = [0u8; 1024];
                (stream.read(&mut buf).await.ok()? > 0).then_some(())?;
            }
            Some(stream)
        };
        tokio::time::timeout(PATIENCE, client).await.ok().flatten()
    };
    let mut idle = Vec::with_capacity(EACH);
    for i in 0..EACH {
        let Some(stream) = step(source(1, i), format!("{}\r\n", head("/healthz")), true).await
        else {
            break;
        };
        idle.push(stream);
    }
    let mut slow = Vec::with_capacity(EACH);
    for _ in 0..EACH {
        let Some(stream) = step(Ipv4Addr::LOCALHOST.into(), head("/metrics"), false).await else {
            break;
        };
        slow.push(stream);
    }
    let mut times = Vec::new();
    let mut unanswered = 0;
    for _ in 0..ROUNDS {
        for path in ["/healthz", "/readyz"] {
            let asked = std::time::Instant::now();
            match tokio::time::timeout(WAIT, get_async(addr, path)).await {
                Ok((200, _)) => times.push(asked.elapsed()),
                _ => unanswered += 1,
            }
        }
    }
    times.sort();
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    eprintln!(
        "RESILIENCE: ops listener with {} idle keep-alive + {} half-head clients: \
         {} probes answered (min {:.1} ms, median {:.1} ms, max {:.1} ms), {unanswered} not within {WAIT:?}",
        idle.len(),
        slow.len(),
        times.len(),
        ms(times.first()),
        ms(times.get(times.len() / 2)),
        ms(times.last()),
    );
}
