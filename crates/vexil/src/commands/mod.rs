//! The subcommands. Each returns its exit code, or a message for a usage or I/O failure
//! (reported as exit code 2).

pub mod assign;
pub mod changes;
pub mod dlq;
pub mod env;
pub mod eval;
pub mod flags;
pub mod hash;
pub mod keys;
pub mod power;
pub mod promote;
pub mod rebuild_state;
pub mod results;
pub mod rollout;
pub mod serve;
pub mod stop;
pub mod target;
pub mod users;
pub mod validate;

use std::path::Path;
use vexil_core::{FlagSet, Format, ValidationErrors};

pub type Outcome = Result<std::process::ExitCode, String>;

/// Writes `text` to standard output. When the reader went away (`vexil … | head -5`) the
/// command ends quietly, as Unix tools do, instead of panicking on the broken pipe.
pub fn print_text(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(2);
    }
}

/// [`print_text`] and a line break.
pub fn print_line(text: &str) {
    print_text(&format!("{text}\n"));
}

/// Reads and compiles a flags file, JSON or YAML by its extension.
pub fn load_flags(path: &Path) -> Result<Result<FlagSet, ValidationErrors>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(FlagSet::from_text(&text, Format::from_file_name(&path.to_string_lossy())))
}
