//! `vexil validate FILE`: lists every problem of a flags file with its path.

use super::{load_flags, Outcome};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The flags file (JSON, or YAML with a .yaml/.yml extension).
    file: PathBuf,
}

pub fn run(args: Args) -> Outcome {
    match load_flags(&args.file)? {
        Ok(set) => {
            super::print_line(&format!(
                "{}: ok ({} flags, {} segments)",
                args.file.display(),
                set.len(),
                set.segments().len()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in errors.iter() {
                super::print_line(&e.to_string());
            }
            eprintln!("{}: {} problem(s)", args.file.display(), errors.iter().count());
            Ok(ExitCode::FAILURE)
        }
    }
}
