//! One shutdown signal that reaches every loop (design §4.8).
//!
//! Owns: the [`Shutdown`] listener and its [`ShutdownTrigger`], and the wiring from SIGINT /
//! SIGTERM to the trigger. Must never: stop anything itself. Sources stop pulling when they
//! see it; the pipeline then drains in order (see `pipeline.rs`).

use tokio::sync::watch;

/// Fires the shutdown once; every clone of the matching [`Shutdown`] sees it.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// Listens for the shutdown. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// Set only by [`Shutdown::never`]: keeps a sender alive that nobody fires, because a
    /// dropped sender reads as "fired".
    _never: Option<std::sync::Arc<watch::Sender<bool>>>,
}

/// A connected trigger and listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx, _never: None })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// A listener that never fires: for runs that end by themselves (benches, tests).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            rx,
            _never: Some(std::sync::Arc::new(tx)),
        }
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the shutdown fires (or its trigger is gone).
    pub async fn wait(&mut self) {
        // An error means the trigger was dropped: nobody can fire it any more, and a loop
        // waiting on it would wait forever, so treat it as fired.
        let _ = self.rx.wait_for(|fired| *fired).await;
    }
}

/// Fires `trigger` on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn on_signals(trigger: ShutdownTrigger) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received: shutting down"),
                    _ = term.recv() => tracing::info!("SIGTERM received: shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the run");
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("SIGINT received: shutting down");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received: shutting down");
    }
    trigger.trigger();
}
