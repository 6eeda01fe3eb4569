//! Readiness: whether this process should be sent work (`/readyz`), for orchestrators.
//!
//! Owns: [`Readiness`], the state of each required [`Component`] and the shutdown flag, and
//! the verdict rendered by `/readyz`. Must never: probe anything itself or change what the
//! pipeline does. Components report their state (Pub/Sub: `run`'s start check, then its
//! watch, `source::pubsub::watch`; the store once it is open), and the store's later health is read from what telemetry measured
//! ([`Stats::store_up`]); liveness
//! (`/healthz`) needs nothing from here, since answering at all proves the process is alive.
//!
//! Only registered components are required: `demo` registers the store alone, `run` the
//! store and Pub/Sub. A registered component is not ready until it says so, so a process is
//! never reported ready before it has connected.

use crate::telemetry::Stats;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// What `/readyz` requires when registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The Pub/Sub subscriptions: the server answered for them at start, and no outage is
    /// under way (no unanswered probe, no failed stream since the last good look).
    PubSub,
    /// The store (its last call succeeded).
    Store,
}

impl Component {
    const ALL: [Component; 2] = [Component::PubSub, Component::Store];

    fn bit(self) -> u8 {
        match self {
            Component::PubSub => 1,
            Component::Store => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Component::PubSub => "pubsub",
            Component::Store => "store",
        }
    }
}

/// Shared through an `Arc`; every method is a lock-free atomic.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Bit set of registered (required) components.
    registered: AtomicU8,
    /// Bit set of components that reported ready.
    ready: AtomicU8,
    /// Set once at shutdown, never cleared: a draining process takes no new work.
    shutting_down: AtomicBool,
}

/// Why the process is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    ShuttingDown,
    /// These registered components are not ready.
    Components(Vec<Component>),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::ShuttingDown => f.write_str("shutting down"),
            NotReady::Components(c) => {
                let names: Vec<&str> = c.iter().map(|c| c.name()).collect();
                write!(f, "not ready: {}", names.join(", "))
            }
        }
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `component` required. It stays not ready until [`set`](Self::set) says so.
    pub fn register(&self, component: Component) {
        self.registered.fetch_or(component.bit(), Ordering::Relaxed);
    }

    /// Reports whether `component` works now. Reports of unregistered components are kept
    /// (they count once the component is registered).
    pub fn set(&self, component: Component, ready: bool) {
        if ready {
            self.ready.fetch_or(component.bit(), Ordering::Relaxed);
        } else {
            self.ready.fetch_and(!component.bit(), Ordering::Relaxed);
        }
    }

    /// The process is shutting down: not ready from now on, whatever the components say.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// `Ok` when not shutting down and every registered component is ready. The store is
    /// ready when it reported so (it is open) and its last read and write succeeded.
    pub fn check(&self, stats: &Stats) -> Result<(), NotReady> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(NotReady::ShuttingDown);
        }
        let registered = self.registered.load(Ordering::Relaxed);
        let mut ready = self.ready.load(Ordering::Relaxed);
        if !stats.store_up() {
            ready &= !Component::Store.bit();
        }
        let missing: Vec<Component> = Component::ALL
            .into_iter()
            .filter(|c| registered & c.bit() != 0 && ready & c.bit() == 0)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(NotReady::Components(missing))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_components_count_and_shutdown_wins() {
        let r = Readiness::new();
        let stats = Stats::default();
        assert_eq!(r.check(&stats), Ok(()));
        r.register(Component::Store);
        assert_eq!(
            r.check(&stats),
            Err(NotReady::Components(vec![Component::Store]))
        );
        r.set(Component::Store, true);
        // Pub/Sub is not registered (the demo has none): not required.
        assert_eq!(r.check(&stats), Ok(()));
        r.register(Component::PubSub);
        assert_eq!(
            r.check(&stats).map_err(|e| e.to_string()),
            Err("not ready: pubsub".to_string())
        );
        r.set(Component::PubSub, true);
        assert_eq!(r.check(&stats), Ok(()));
        r.set(Component::Store, false);
        assert!(r.check(&stats).is_err());
        r.set(Component::Store, true);
        // A failed store call makes the opened store unready until a call succeeds again.
        let failed: Result<(), &str> = Err("refused");
        stats.on_store_result(crate::telemetry::StoreOp::Write, &failed);
        assert!(r.check(&stats).is_err());
        stats.on_store_result(crate::telemetry::StoreOp::Write, &Ok::<(), &str>(()));
        assert_eq!(r.check(&stats), Ok(()));
        r.begin_shutdown();
        assert_eq!(r.check(&stats), Err(NotReady::ShuttingDown));
    }
}
