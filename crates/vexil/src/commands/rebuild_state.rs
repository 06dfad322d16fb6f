//! `vexil rebuild-state`: writes a data directory's event-processing state again in the current
//! layout, with no server running on it. A state database made by an older version keeps its
//! 4 KiB pages when a newer one opens it; rebuilt, it has the 2 KiB pages that a returning user
//! costs the disk less with (docs/events.md).

use super::target::print_json;
use super::Outcome;
use std::path::PathBuf;
use vexil_events::{sqlite, FileLog, LogError, LogOptions};

#[derive(clap::Args)]
pub struct Args {
    /// The data directory whose event-processing state to rebuild.
    #[arg(long, value_name = "DIR", default_value = "./vexil-data")]
    data_dir: PathBuf,
}

pub fn run(args: Args) -> Outcome {
    let events = args.data_dir.join("events");
    let state = events.join(sqlite::STATE_FILE);
    if !state.is_file() {
        return Err(format!(
            "{} has no event-processing state to rebuild ({} does not exist)",
            args.data_dir.display(),
            state.display()
        ));
    }
    // Held until the rebuilt database is in place: a server cannot start on the directory
    // meanwhile, and one already running holds it.
    let log = match FileLog::open(events.join("log"), LogOptions::default()) {
        Ok(log) => log,
        Err(LogError::InUse(_)) => {
            return Err(format!("a server is running on {}: stop it first", args.data_dir.display()))
        }
        Err(e) => return Err(format!("cannot open the event log: {e}")),
    };
    let rebuilt = sqlite::rebuild(&state).map_err(|e| format!("cannot rebuild {}: {e}", state.display()))?;
    log.close();
    print_json(&rebuilt)
}
