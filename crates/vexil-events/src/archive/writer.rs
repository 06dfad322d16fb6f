//! The thread that finishes and stores an archiver's closed files.
//!
//! At 1,000 events a file, a partition processing 100,000 events/s closes 100 files a second,
//! and storing one takes a create, a write, two fsyncs and a rename on the local disk (an HTTP
//! request to S3). On the processor's thread that was time taken from every batch; here it
//! overlaps the rest of the batch, and the processor waits only before its commit
//! ([`super::Archiver::written`]), which must not record a file as closed before it is stored.

use super::{ArchiveStore, ClosedFile, Encoder};
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A closed buffer to be finished in its format and stored.
pub(super) struct Closing {
    pub partition: String,
    pub name: String,
    pub events: usize,
    pub encoder: Encoder,
}

pub(super) struct Writer {
    store: Arc<dyn ArchiveStore>,
    log_partition: u32,
    /// `None` before the first file and after the thread was lost; the next file starts one.
    thread: Option<Running>,
    /// Files handed over whose outcome has not been taken yet.
    in_flight: usize,
}

struct Running {
    closing: Sender<Closing>,
    outcomes: Receiver<io::Result<ClosedFile>>,
    handle: JoinHandle<()>,
}

impl Writer {
    pub fn new(store: Arc<dyn ArchiveStore>, log_partition: u32) -> Writer {
        Writer { store, log_partition, thread: None, in_flight: 0 }
    }

    /// Hands `closing` over to be stored.
    pub fn write(&mut self, closing: Closing) -> io::Result<()> {
        if self.running()?.closing.send(closing).is_err() {
            // The thread is gone (it panicked); the next file starts a new one.
            self.thread = None;
            return Err(stopped());
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Waits until every file handed over is stored, and returns them in the order they were
    /// handed over; the first failure if any failed (the others are waited for all the same).
    pub fn written(&mut self) -> io::Result<Vec<ClosedFile>> {
        let mut written = Vec::with_capacity(self.in_flight);
        let mut failure = None;
        while self.in_flight > 0 {
            self.in_flight -= 1;
            let outcome = self.thread.as_ref().and_then(|running| running.outcomes.recv().ok());
            match outcome {
                Some(Ok(file)) => written.push(file),
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                }
                None => {
                    // The thread is gone (it panicked); the next file starts a new one.
                    self.thread = None;
                    failure.get_or_insert_with(stopped);
                }
            }
        }
        failure.map_or(Ok(written), Err)
    }

    /// Waits for what was handed over and forgets how it went (a new session writes those
    /// files again from the log).
    pub fn discard(&mut self) {
        let _ = self.written();
    }

    fn running(&mut self) -> io::Result<&Running> {
        let running = match self.thread.take() {
            Some(running) => running,
            None => self.start()?,
        };
        Ok(self.thread.insert(running))
    }

    fn start(&self) -> io::Result<Running> {
        let (closing, to_write) = mpsc::channel::<Closing>();
        let (outcome, outcomes) = mpsc::channel();
        let store = self.store.clone();
        let handle =
            std::thread::Builder::new().name(format!("vexil-archive-{}", self.log_partition)).spawn(move || {
                crate::background::lower_priority();
                for Closing { partition, name, events, encoder } in to_write {
                    let stored = encoder.finish().and_then(|bytes| {
                        store.put(&partition, &name, &bytes)?;
                        Ok(ClosedFile { partition, name, events, bytes: bytes.len() })
                    });
                    if outcome.send(stored).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Running { closing, outcomes, handle })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(Running { closing, handle, .. }) = self.thread.take() {
            // Closing the channel ends the thread once it has stored what it was handed; joining
            // it keeps a retired processor's files from landing after the processor is gone.
            drop(closing);
            let _ = handle.join();
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the archive's writer thread ended unexpectedly")
}
