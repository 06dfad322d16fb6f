//! `vexil`: the command-line entry point. Each subcommand lives in its own module under
//! `commands/`; this file only parses arguments and dispatches.

mod commands;

/// mimalloc rather than the system allocator: under load the service spent about a sixth of its
/// time in glibc's malloc and free (measured with perf; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "vexil", version, about = "Feature flags, experiments and event analysis in one service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate one flag (or every flag) from a flags file, printing the result as JSON.
    Eval(commands::eval::Args),
    /// Check a flags file and list every problem in it (exit 1 when there are any).
    Validate(commands::validate::Args),
    /// Print the bucketing hash `h` and `bucket` of a salt and a unit (SPEC 2).
    Hash(commands::hash::Args),
    /// Run the service: admin, evaluation, OFREP and SDK APIs over embedded storage.
    Serve(commands::serve::Args),
    /// List, show, change, export, import, diff and promote flags (through a server or on a data directory).
    Flags(commands::flags::Args),
    /// List, replay or purge the event pipeline's dead-letter queue.
    Dlq(commands::dlq::Args),
    /// Write a data directory's event-processing state again in the current layout (server stopped).
    RebuildState(commands::rebuild_state::Args),
    /// Create, list and revoke API keys.
    Keys(commands::keys::Args),
    /// Create, list and disable the people who sign in to the web console.
    Users(commands::users::Args),
    /// Assign a user to an experiment's variant (sticky), through a server or on a data directory.
    Assign(commands::assign::Args),
    /// Plan an experiment: users per variant for an effect, or the effect for a number of users.
    Power(commands::power::Args),
    /// An experiment's results from a running server: effects, intervals, SRM and a recommendation.
    Results(commands::results::Args),
    /// Emergency stop: every flag (--all), the flags with a tag, or listed flags evaluate as DISABLED.
    Stop(commands::stop::Args),
    /// Lift every emergency stop: flags return to their previous state exactly.
    Resume(commands::stop::ResumeArgs),
    /// Show, start, pause, resume or cancel a flag's progressive rollout plan.
    Rollout(commands::rollout::Args),
    /// List, create and delete environments on a running server.
    Env(commands::env::Args),
    /// List, show, approve and reject change requests of a protected environment (with --env).
    Changes(commands::changes::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Eval(args) => commands::eval::run(args),
        Command::Validate(args) => commands::validate::run(args),
        Command::Hash(args) => commands::hash::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Flags(args) => commands::flags::run(args),
        Command::Dlq(args) => commands::dlq::run(args),
        Command::RebuildState(args) => commands::rebuild_state::run(args),
        Command::Keys(args) => commands::keys::run(args),
        Command::Users(args) => commands::users::run(args),
        Command::Power(args) => commands::power::run(args),
        Command::Results(args) => commands::results::run(args),
        Command::Stop(args) => commands::stop::run(args),
        Command::Resume(args) => commands::stop::resume(args),
        Command::Rollout(args) => commands::rollout::run(args),
        Command::Assign(args) => commands::assign::run(args),
        Command::Env(args) => commands::env::run(args),
        Command::Changes(args) => commands::changes::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every subcommand and every option or argument a user can type has a one-line description
    /// in `--help`.
    #[test]
    fn every_command_and_option_is_described() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for argument in command.get_arguments() {
                let builtin = matches!(argument.get_id().as_str(), "help" | "version");
                if !builtin && argument.get_help().is_none() && !argument.is_hide_set() {
                    missing.push(format!("{path} {}", argument.get_id()));
                }
            }
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        Cli::command().debug_assert();
        let mut missing = Vec::new();
        walk(&Cli::command(), "vexil", &mut missing);
        assert!(missing.is_empty(), "without a description in --help: {missing:#?}");
    }
}
