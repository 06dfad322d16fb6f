//! Background tasks that outlive their own panics. A task that panics (the safety scheduler on
//! a document it cannot handle, the snapshot follower, the assignment purge) would otherwise
//! vanish for the life of the process, and with it every plan, guard and budget on the node.
//! [`Supervisor::spawn`] runs each task in a tokio task of its own, and when it panics logs
//! the cause, counts it in `vexil_background_task_panics_total{task}`, and starts it again after
//! a growing pause. A task that keeps panicking is reported by [`Supervisor::failing`], which
//! `/ready` turns into a 503 naming it, until it has run for [`STABLE_AFTER`] again.

use prometheus::{IntCounterVec, Opts};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Panics in a row after which a task counts as unable to stay up.
const FAILING_AFTER: u32 = 3;
/// How long a restarted task must run before its earlier panics stop counting.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// The first pause before a restart; it doubles with every panic in a row.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// Restarts panicked tasks and remembers which ones cannot stay up.
#[derive(Clone)]
pub struct Supervisor {
    panics: IntCounterVec,
    /// Task name → the cause of its last panic, for tasks that panicked [`FAILING_AFTER`]
    /// times in a row.
    failing: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl Supervisor {
    /// A supervisor counting into `panics`; the caller registers it with the metrics.
    pub fn new() -> Supervisor {
        let panics = IntCounterVec::new(
            Opts::new("vexil_background_task_panics_total", "Panics of background tasks, which were restarted."),
            &["task"],
        )
        .expect("valid metric");
        Supervisor { panics, failing: Arc::default() }
    }

    /// The panic counter, for `/metrics`.
    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.panics.clone())
    }

    /// Tasks that keep panicking, with the cause of their last panic.
    pub fn failing(&self) -> BTreeMap<&'static str, String> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs the task `start` makes until it returns or `shutdown`, making a new one after
    /// every panic. The handle completes when the task has ended for good, so a caller that
    /// drains at shutdown can wait for it.
    pub fn spawn<F, Fut>(&self, task: &'static str, shutdown: CancellationToken, start: F) -> JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let supervisor = self.clone();
        // Each task's series exists from its start, at zero, so rates and alerts see it before
        // a first panic.
        supervisor.panics.with_label_values(&[task]);
        tokio::spawn(async move {
            let mut in_a_row = 0u32;
            loop {
                let mut running = tokio::spawn(start());
                let outcome = loop {
                    tokio::select! {
                        outcome = &mut running => break outcome,
                        () = tokio::time::sleep(STABLE_AFTER), if in_a_row > 0 => {
                            in_a_row = 0;
                            supervisor.set_failing(task, None);
                        }
                    }
                };
                let cause = match outcome {
                    Ok(()) => return,
                    Err(e) if e.is_cancelled() => return,
                    Err(e) => panic_message(e.into_panic()),
                };
                in_a_row = in_a_row.saturating_add(1);
                supervisor.panics.with_label_values(&[task]).inc();
                tracing::error!(task, cause, panics_in_a_row = in_a_row, "a background task panicked; restarting it");
                if in_a_row >= FAILING_AFTER {
                    supervisor.set_failing(task, Some(cause));
                }
                let pause = FIRST_PAUSE.saturating_mul(1 << in_a_row.min(16)).min(LONGEST_PAUSE);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        })
    }

    fn set_failing(&self, task: &'static str, cause: Option<String>) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match cause {
            Some(cause) => failing.insert(task, cause),
            None => failing.remove(task),
        };
    }
}

impl Default for Supervisor {
    fn default() -> Supervisor {
        Supervisor::new()
    }
}

/// The message a panic was raised with (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast_ref::<&str>().map_or("a panic without a message", |m| m).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_counted_restarted_and_reported_until_it_stays_up() {
        let supervisor = Supervisor::new();
        let starts = Arc::new(AtomicU32::new(0));
        let counted = starts.clone();
        supervisor.spawn("flaky", CancellationToken::new(), move || {
            let start = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if start < FAILING_AFTER {
                    panic!("attempt {start} failed");
                }
                std::future::pending::<()>().await;
            }
        });
        while starts.load(Ordering::SeqCst) <= FAILING_AFTER {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(supervisor.panics.with_label_values(&["flaky"]).get(), u64::from(FAILING_AFTER));
        let last = format!("attempt {} failed", FAILING_AFTER - 1);
        assert_eq!(supervisor.failing().get("flaky"), Some(&last));
        tokio::time::sleep(STABLE_AFTER + Duration::from_secs(1)).await;
        assert!(supervisor.failing().is_empty(), "running again for a while clears the report");
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarted_task_takes_over_its_queue_and_the_handle_ends_with_it() {
        // The pattern of the queue-draining tasks (tracked events, webhook delivery, the
        // assignment writer): the receiver sits behind an async mutex the task holds while it
        // runs, so a panic releases it and the next start drains what is left.
        let supervisor = Supervisor::new();
        let (sender, receiver) = tokio::sync::mpsc::channel::<u32>(16);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let drained = Arc::new(Mutex::new(Vec::new()));
        let handle = supervisor.spawn("drain", CancellationToken::new(), {
            let drained = drained.clone();
            move || {
                let (receiver, drained) = (receiver.clone(), drained.clone());
                async move {
                    let mut queue = receiver.lock().await;
                    while let Some(item) = queue.recv().await {
                        assert_ne!(item, 2, "item 2 is poison");
                        drained.lock().unwrap().push(item);
                    }
                }
            }
        });
        for item in 1..=4 {
            sender.send(item).await.unwrap();
        }
        drop(sender);
        tokio::time::timeout(LONGEST_PAUSE, handle).await.expect("the task ends once its queue closes").unwrap();
        assert_eq!(*drained.lock().unwrap(), [1, 3, 4], "the item being handled at the panic is lost, no other");
        assert_eq!(supervisor.panics.with_label_values(&["drain"]).get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_returns_is_not_restarted() {
        let supervisor = Supervisor::new();
        let starts = Arc::new(AtomicU32::new(0));
        let counted = starts.clone();
        supervisor.spawn("once", CancellationToken::new(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        tokio::time::sleep(LONGEST_PAUSE * 2).await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        assert_eq!(supervisor.panics.with_label_values(&["once"]).get(), 0);
    }
}
