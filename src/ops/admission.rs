//! Who holds a connection to the operations listener, and who makes room for a newcomer.
//!
//! Owns: the table of open connections (peer address, last activity) and its two bounds,
//! [`MAX_CONNECTIONS`] in all and [`MAX_PER_PEER`] per client address. Must never: refuse or
//! delay a new connection because of what other clients do. At a bound, the connection
//! that has been quiet longest (of that address first, else of all) is told to close, and
//! the newcomer is admitted.
//!
//! Why eviction and not a queue: a fixed number of slots that new connections wait for is
//! a slot that any client can hold, by sending half a request head or by sitting idle on a
//! keep-alive connection, and a liveness probe waiting behind them gets the pod restarted.
//! Closing the least recently active connection instead means a probe always gets in: it is
//! the newest connection, and only [`MAX_PER_PEER`] newer ones from its own address (or
//! [`MAX_CONNECTIONS`] from everywhere) could push it out before it is answered, which takes
//! a millisecond. Well-behaved clients lose nothing: a scraper or browser whose idle
//! keep-alive connection was closed opens another on its next request. The per-address
//! bound keeps one noisy client churning its own connections, not everyone else's.
//!
//! The bounds are exact: the caller waits for an evicted connection to be gone before it
//! admits the newcomer into its slot, so open sockets never exceed [`MAX_CONNECTIONS`] + 1,
//! the newcomer itself (that wait is for our own task to drop its socket, never for a
//! client).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Connections open at once. Probes, scrapers and a few browsers need a handful; 256 sockets
/// and their buffers (`MAX_BUF` in `mod.rs`) are a few MiB at most.
pub const MAX_CONNECTIONS: usize = 256;

/// Connections open at once from one client address. A browser opens up to six; behind a
/// port-forward or NAT several clients share an address. Above it, that address's quietest
/// connection makes room, whatever the other addresses hold.
pub const MAX_PER_PEER: usize = 32;

/// At most one warning this often while connections are being evicted.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The open connections and their bounds.
pub(super) struct Admission {
    slots: Arc<Semaphore>,
    /// Ticks once per accept and per request: "least recently active" compares ticks, so
    /// the order is exact however close together events come.
    clock: Arc<AtomicU64>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    open: HashMap<u64, Arc<Conn>>,
    /// Evictions since the last warning, and when that was.
    evicted: u64,
    warned: Option<Instant>,
}

/// One open connection, as its task and the table see it.
pub(super) struct Conn {
    id: u64,
    peer: IpAddr,
    clock: Arc<AtomicU64>,
    /// The clock at the last request (or at accept).
    last_active: AtomicU64,
    evicted: AtomicBool,
    close: Notify,
}

impl Conn {
    /// Marks the connection active now (a request arrived).
    pub(super) fn touch(&self) {
        self.last_active.store(tick(&self.clock), Ordering::Relaxed);
    }

    /// Resolves once the connection has been chosen to make room.
    pub(super) async fn evicted(&self) {
        self.close.notified().await;
    }
}

/// A connection's place in the table: dropping it (after the socket) frees the place.
pub(super) struct Ticket {
    conn: Arc<Conn>,
    admission: Arc<Admission>,
    _slot: OwnedSemaphorePermit,
}

impl Ticket {
    pub(super) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.lock().open.remove(&self.conn.id);
    }
}

fn tick(clock: &AtomicU64) -> u64 {
    clock.fetch_add(1, Ordering::Relaxed)
}

impl Admission {
    pub(super) fn new() -> Arc<Admission> {
        Arc::new(Admission {
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            clock: Arc::new(AtomicU64::new(0)),
            table: Mutex::new(Table::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Held only to read or change the map, never across an await.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `peer`, first making room at either bound. Waits only for
    /// an evicted connection's task to drop its socket. `None` only if the slots were
    /// closed, which nothing does.
    pub(super) async fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Ticket> {
        let peer = peer.to_canonical();
        let made_room = {
            let mut table = self.lock();
            let from_peer = table
                .open
                .values()
                .filter(|c| c.peer == peer && !c.evicted.load(Ordering::Relaxed))
                .count();
            from_peer >= MAX_PER_PEER && table.evict_quietest(Some(peer))
        };
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Every slot is taken: one connection must go. If this address just gave
                // one up, its slot is on the way back already.
                if !made_room {
                    self.lock().evict_quietest(None);
                }
                self.slots.clone().acquire_owned().await.ok()?
            }
        };
        let id = tick(&self.clock);
        let conn = Arc::new(Conn {
            id,
            peer,
            clock: self.clock.clone(),
            last_active: AtomicU64::new(id),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
        });
        self.lock().open.insert(id, conn.clone());
        Some(Ticket {
            conn,
            admission: self.clone(),
            _slot: slot,
        })
    }
}

impl Table {
    /// Tells the least recently active connection (of `peer`, or of all) to close. `false`
    /// when every candidate is already closing.
    fn evict_quietest(&mut self, peer: Option<IpAddr>) -> bool {
        let victim = self
            .open
            .values()
            .filter(|c| !c.evicted.load(Ordering::Relaxed))
            .filter(|c| peer.is_none_or(|p| c.peer == p))
            .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
        let Some(victim) = victim else {
            return false;
        };
        victim.evicted.store(true, Ordering::Relaxed);
        // A stored permit: the task sees it even if it is not waiting yet.
        victim.close.notify_one();
        self.evicted += 1;
        if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                evicted = self.evicted,
                open = self.open.len(),
                max = MAX_CONNECTIONS,
                max_per_address = MAX_PER_PEER,
                "operations listener: connection limit reached; closing the least recently active connections to admit new ones"
            );
            self.evicted = 0;
            self.warned = Some(Instant::now());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[tokio::test]
    async fn one_address_over_its_bound_evicts_its_own_quietest_connection() {
        let admission = Admission::new();
        let other = admission.admit(ip("10.0.0.2")).await.expect("admitted");
        let mut mine = Vec::new();
        for _ in 0..MAX_PER_PEER {
            mine.push(admission.admit(ip("10.0.0.1")).await.expect("admitted"));
        }
        // The first one becomes the most recently active of this address.
        mine[0].conn().touch();
        let _newcomer = admission.admit(ip("10.0.0.1")).await.expect("admitted");
        let evicted: Vec<usize> = (0..mine.len())
            .filter(|&i| mine[i].conn().evicted.load(Ordering::Relaxed))
            .collect();
        // The quietest of this address: the second (the first was touched since).
        assert_eq!(evicted, vec![1]);
        assert!(!other.conn().evicted.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_full_table_admits_the_newcomer_once_the_quietest_is_gone() {
        let admission = Admission::new();
        let mut open: Vec<Ticket> = Vec::new();
        for i in 0..MAX_CONNECTIONS {
            let peer = ip(&format!("10.1.{}.{}", i / 200, i % 200));
            open.push(admission.admit(peer).await.expect("admitted"));
        }
        let newcomer = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(ip("10.2.0.1")).await }
        });
        // The quietest (the first) is told to close; its task drops the ticket.
        open[0].conn().evicted().await;
        assert_eq!(
            open.iter()
                .filter(|t| t.conn().evicted.load(Ordering::Relaxed))
                .count(),
            1
        );
        drop(open.remove(0));
        let newcomer = newcomer.await.expect("admit task").expect("admitted");
        assert!(!newcomer.conn().evicted.load(Ordering::Relaxed));
        assert_eq!(admission.lock().open.len(), MAX_CONNECTIONS);
    }
}
