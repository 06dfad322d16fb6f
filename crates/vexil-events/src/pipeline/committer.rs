//! The commit of a batch, on a thread beside the processor's: while one batch is written to the
//! store, the next goes through the stages.
//!
//! The store is owned by whichever thread uses it: the processor's between commits, this
//! thread's while it writes one. Every read of the store goes through [`Committer::store`],
//! which first waits for the commit in flight, so a read never runs beside a write and always
//! sees every commit sent before it. What the processor prepared but has not sent yet is not in
//! the store: the stages read it from the prepared commit itself (see
//! [`super::working_copy::PreparedCommit`]).

use super::working_copy::PreparedCommit;
use crate::error::Error;
use crate::store::{Durability, PartitionStore};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

/// A commit that reached the store, with what it carried.
pub(super) struct Landed {
    pub durability: Durability,
    pub commit: PreparedCommit,
}

type Job = (Box<dyn PartitionStore>, PreparedCommit);
type Outcome = (Box<dyn PartitionStore>, Result<Durability, Error>, PreparedCommit);

/// The committing thread of one partition's processor, and the store between commits.
pub(super) struct Committer {
    /// `None` while a commit is in flight, or after the thread was lost with it.
    idle: Option<Box<dyn PartitionStore>>,
    in_flight: bool,
    /// The commits that reached the store, oldest first, until the stages take them to report
    /// them.
    landed: Vec<Landed>,
    jobs: Option<Sender<Job>>,
    outcomes: Receiver<Outcome>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the committing thread of `partition` beside `store`.
    pub fn start(store: Box<dyn PartitionStore>, partition: u32) -> Result<Committer, Error> {
        let (jobs, received) = channel::<Job>();
        let (outcome, outcomes) = channel::<Outcome>();
        let thread =
            std::thread::Builder::new().name(format!("vexil-pipeline-commit-{partition}")).spawn(move || {
                crate::background::lower_priority();
                while let Ok((mut store, commit)) = received.recv() {
                    let result = store.commit(commit.changes());
                    if outcome.send((store, result, commit)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Committer {
            idle: Some(store),
            in_flight: false,
            landed: Vec::new(),
            jobs: Some(jobs),
            outcomes,
            thread: Some(thread),
        })
    }

    /// Hands `commit` to the committing thread (after the one in flight, if any, has landed).
    pub fn send(&mut self, commit: PreparedCommit) -> Result<(), Error> {
        self.wait()?;
        let store = self.idle.take().ok_or_else(lost)?;
        let jobs = self.jobs.as_ref().ok_or_else(lost)?;
        if let Err(refused) = jobs.send((store, commit)) {
            // The thread is gone; the store comes back with the job it could not take.
            let (store, _) = refused.0;
            self.idle = Some(store);
            return Err(lost());
        }
        self.in_flight = true;
        Ok(())
    }

    /// Waits for the commit in flight, if any: its outcome is the store's answer to it.
    pub fn wait(&mut self) -> Result<(), Error> {
        if !self.in_flight {
            return Ok(());
        }
        self.in_flight = false;
        let (store, result, commit) = self.outcomes.recv().map_err(|_| lost())?;
        self.idle = Some(store);
        self.landed.push(Landed { durability: result?, commit });
        Ok(())
    }

    /// The store, once the commit in flight has landed.
    pub fn store(&mut self) -> Result<&mut dyn PartitionStore, Error> {
        self.wait()?;
        match self.idle.as_deref_mut() {
            Some(store) => Ok(store),
            None => Err(lost()),
        }
    }

    /// The commits that landed since last asked, oldest first.
    pub fn take_landed(&mut self) -> Vec<Landed> {
        std::mem::take(&mut self.landed)
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the commit in flight (if any) is written.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lost() -> Error {
    Error::Io(std::io::Error::other("the pipeline's committing thread ended unexpectedly"))
}
