//! Ctrl-C outside line editing. While a push query streams, Ctrl-C asks
//! the shell to close it on the server (the shell goes on); in a
//! non-interactive run Ctrl-C at any other time ends the process. At the
//! prompt the terminal is in raw mode, so Ctrl-C is a key rustyline reads,
//! not a signal.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Ctrl-C presses seen while a query streamed.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// A push query is streaming: Ctrl-C is for it.
static STREAMING: AtomicBool = AtomicBool::new(false);

/// Takes SIGINT from the default action (ending the process) to the shell;
/// `exit_when_idle` keeps that default while no query streams.
pub fn install(exit_when_idle: bool) {
    let spawned = std::thread::Builder::new()
        .name("sluice-shell-sigint".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut sigint) = signal(SignalKind::interrupt()) else {
                    return;
                };
                while sigint.recv().await.is_some() {
                    if STREAMING.load(Ordering::SeqCst) {
                        INTERRUPTS.fetch_add(1, Ordering::SeqCst);
                    } else if exit_when_idle {
                        std::process::exit(130);
                    }
                }
            });
        });
    if let Err(e) = spawned {
        eprintln!("Warning: Ctrl-C will end the shell (no signal thread: {e})");
    }
}

/// Watches for Ctrl-C while a push query streams.
pub struct Watch {
    seen: u64,
}

impl Watch {
    pub fn start() -> Self {
        STREAMING.store(true, Ordering::SeqCst);
        Watch {
            seen: INTERRUPTS.load(Ordering::SeqCst),
        }
    }

    /// Whether Ctrl-C was pressed since the watch started.
    pub fn interrupted(&self) -> bool {
        INTERRUPTS.load(Ordering::SeqCst) != self.seen
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        STREAMING.store(false, Ordering::SeqCst);
    }
}
