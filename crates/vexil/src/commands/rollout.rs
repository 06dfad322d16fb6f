//! `vexil rollout status|start|pause|resume|cancel FLAG`: a flag's progressive rollout plan (see
//! docs/safety.md), through a server or on a data directory (see [`super::target::Target`]).
//! Plans are written with the admin API; the server's scheduler advances them.

use super::target::{block_on, form_encode, print_json, Connection, Target, CLI_ACTOR};
use super::Outcome;
use vexil_server::service::safety::plans::{Action, Loaded};
use vexil_server::service::safety::signals::PipelineSignals;
use vexil_store::{ChangeMeta, Store};

#[derive(clap::Args)]
pub struct FlagArgs {
    /// The flag whose plan this is.
    flag: String,
    /// Reason recorded in the audit log (ignored by status).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show the plan: state, step in force, cause, and a live reading of every guard.
    Status(FlagArgs),
    /// Start a ready or scheduled plan: apply its first step now.
    Start(FlagArgs),
    /// Pause a running plan: the flag keeps its current percentage.
    Pause(FlagArgs),
    /// Resume a paused plan; the hold of the step in force restarts.
    Resume(FlagArgs),
    /// Cancel a plan that has not ended; the flag stays as it is.
    Cancel(FlagArgs),
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

pub fn run(args: Args) -> Outcome {
    let (action, args) = match args.command {
        Command::Status(args) => (None, args),
        Command::Start(args) => (Some(Action::Start), args),
        Command::Pause(args) => (Some(Action::Pause), args),
        Command::Resume(args) => (Some(Action::Resume), args),
        Command::Cancel(args) => (Some(Action::Cancel), args),
    };
    let FlagArgs { flag, reason, target } = args;
    block_on(async move {
        let value = match target.connect().await? {
            connection @ Connection::Server { .. } => {
                let path = format!("/v1/admin/flags/{flag}/rollout-plan");
                match action {
                    None => connection.call(reqwest::Method::GET, &path, None).await?,
                    Some(action) => {
                        let mut path = format!("{path}/{}", action.name());
                        if let Some(reason) = &reason {
                            path.push_str(&format!("?reason={}", form_encode(reason)));
                        }
                        let answer = connection.call(reqwest::Method::POST, &path, None).await?;
                        if let Some(request) = answer.get("change_request") {
                            super::changes::print_held(request);
                            return Ok(std::process::ExitCode::SUCCESS);
                        }
                        answer
                    }
                }
            }
            Connection::Store(store) => {
                let store = store.as_ref();
                if let Some(action) = action {
                    let loaded = load(store, &flag).await?;
                    let (plan, body) = loaded.after(action, vexil_store::now()).map_err(|e| e.to_string())?;
                    let reason = reason.or_else(|| Some(format!("rollout plan {}", action.name())));
                    let meta = ChangeMeta { actor: CLI_ACTOR.into(), reason };
                    loaded.save(store, &plan, body, &meta).await.map_err(|e| e.to_string())?;
                }
                let env = target.environment().unwrap_or(vexil_events::environment::PRODUCTION);
                let signals = PipelineSignals::embedded(&target.data_dir(), env);
                load(store, &flag).await?.status(&signals, vexil_store::now())
            }
        };
        print_json(&value)
    })
}

async fn load(store: &dyn Store, flag: &str) -> Result<Loaded, String> {
    Loaded::load(store, flag)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("flag \"{flag}\" has no rollout plan"))
}
