//! Flag evaluation for one context (SPEC 3, 4): the one path every evaluation route takes —
//! one flag, the query form, batches, OFREP single and bulk.
//!
//! Each requested flag is evaluated once, at a time read once per request (the core never reads
//! the clock), then counted and tracked once. A flag whose evaluation reaches a
//! `serve: {"experiment"}` rule needs the user's sticky assignment, which may have to be stored
//! first, so only such a flag is evaluated a second time, once its experiments are assigned:
//! the first pass answered "in no experiment" and recorded which experiments it reached. A flag
//! that reached none gives the same answer whatever the assignments, so its first answer stands.
//! A user is assigned (and exposed) only when an evaluation actually reaches an experiment
//! rule. An experiment that cannot assign (a draft, a store failure) serves nothing: the flag
//! serves its off variant, and evaluation never fails for it.

use crate::service::assignment::{assign, AssignError, Assigner, Decision};
use crate::service::events::EventsIn;
use crate::service::snapshot::Snapshot;
use std::collections::HashMap;
use std::sync::Mutex;
use vexil_core::{Context, EvalEnv, EvalError, Evaluation, ExperimentResolver, ExperimentVariant};

/// Which flags a request asks for.
#[derive(Clone, Copy)]
pub enum Selection<'k> {
    One(&'k str),
    Listed(&'k [String]),
    /// Every flag, in key order.
    All,
}

/// One requested flag and what its evaluation gave.
pub type Outcome<'e> = (&'e str, Result<Evaluation<'e>, EvalError>);

/// Evaluates flags against one configuration snapshot.
pub struct Evaluator<'h> {
    pub snapshot: &'h Snapshot,
    pub assigner: &'h Assigner,
    /// Where evaluations are tracked and exposures emitted: the snapshot's environment's events.
    pub events: EventsIn<'h>,
}

impl Evaluator<'_> {
    /// Evaluates the selected flags for `ctx` and hands the outcomes, in the order asked, to
    /// `respond` (they borrow the snapshot and the assignments, which live only for this call).
    pub async fn evaluate<R>(
        &self,
        ctx: &Context<'_>,
        selection: Selection<'_>,
        respond: impl for<'e> FnOnce(Vec<Outcome<'e>>) -> R,
    ) -> R {
        let now_millis = chrono::Utc::now().timestamp_millis();
        let flags = &self.snapshot.flags;
        let keys: Vec<&str> = match selection {
            Selection::One(key) => vec![key],
            Selection::Listed(keys) => keys.iter().map(String::as_str).collect(),
            Selection::All => flags.flags().map(|flag| flag.key.as_str()).collect(),
        };
        if !self.snapshot.experiments.delegated() {
            let env = EvalEnv::at(now_millis);
            let outcomes = keys.into_iter().map(|key| (key, flags.evaluate_in(key, ctx, &env))).collect();
            return self.counted(ctx, outcomes, respond);
        }

        let probe = Probe::default();
        let (mut outcomes, reached_experiments) = self.first_pass(keys, ctx, now_millis, &probe);
        if reached_experiments.is_empty() {
            return self.counted(ctx, outcomes, respond);
        }
        let assigned = self.assign(probe.experiments(), ctx).await;
        let env = EvalEnv { now_millis, experiments: &assigned };
        for i in reached_experiments {
            let key = outcomes[i].0;
            outcomes[i].1 = flags.evaluate_in(key, ctx, &env);
        }
        self.counted(ctx, outcomes, respond)
    }

    /// Evaluates `keys` with `probe` answering "in no experiment"; also returns the positions of
    /// the flags whose evaluation reached an experiment rule. (Its own function so the
    /// environment, whose resolver is not `Sync`, is gone before the caller's `.await`.)
    fn first_pass<'e>(
        &'e self,
        keys: Vec<&'e str>,
        ctx: &Context<'_>,
        now_millis: i64,
        probe: &'e Probe,
    ) -> (Vec<Outcome<'e>>, Vec<usize>) {
        let env = EvalEnv { now_millis, experiments: probe };
        let mut outcomes = Vec::with_capacity(keys.len());
        let mut reached_experiments = Vec::new();
        for key in keys {
            let asked_before = probe.questions();
            outcomes.push((key, self.snapshot.flags.evaluate_in(key, ctx, &env)));
            if probe.questions() > asked_before {
                reached_experiments.push(outcomes.len() - 1);
            }
        }
        (outcomes, reached_experiments)
    }

    /// Counts and tracks every evaluation (once each), then answers.
    fn counted<'e, R>(
        &self,
        ctx: &Context<'e>,
        outcomes: Vec<Outcome<'e>>,
        respond: impl FnOnce(Vec<Outcome<'e>>) -> R,
    ) -> R {
        for (key, outcome) in &outcomes {
            if let Ok(evaluation) = outcome {
                self.snapshot.count(key, evaluation.reason);
                self.events.track(evaluation, ctx.user_id());
            }
        }
        respond(outcomes)
    }

    /// Assigns `ctx` to each of `experiments` that the snapshot knows.
    async fn assign(&self, experiments: Vec<String>, ctx: &Context<'_>) -> Assigned {
        let mut assigned = Assigned::default();
        for key in experiments {
            let Some(experiment) = self.snapshot.experiments.get(&key) else { continue };
            match assign(self.assigner, self.events, experiment, ctx).await {
                Ok(decision) => {
                    assigned.0.insert(key, decision);
                }
                Err(AssignError::Draft(_)) => {}
                Err(e) => {
                    tracing::warn!(experiment = %key, error = %e, "assignment for a flag failed; serving the off variant");
                }
            }
        }
        assigned
    }
}

/// What flag `key` of `snapshot` gives `ctx` now, for a person trying a flag out (the console's
/// "evaluate as"): not counted, not tracked, and no one is assigned or exposed, so a rule that
/// serves an experiment answers as for a user in none of them (the flag's off variant).
pub fn preview<'s>(snapshot: &'s Snapshot, key: &str, ctx: &Context<'_>) -> Result<Evaluation<'s>, EvalError> {
    let env = EvalEnv::at(chrono::Utc::now().timestamp_millis());
    snapshot.flags.evaluate_in(key, ctx, &env)
}

/// Answers that the user is in no experiment, and records which experiments were asked for and
/// how often. A `Mutex` rather than a `RefCell`: evaluations that borrow it are held across the
/// assignment's `.await`, and the request's future must stay `Send`.
#[derive(Default)]
struct Probe(Mutex<ProbeLog>);

#[derive(Default)]
struct ProbeLog {
    questions: usize,
    experiments: Vec<String>,
}

impl Probe {
    fn questions(&self) -> usize {
        self.0.lock().expect("probe poisoned").questions
    }

    /// The experiments asked for, each once, in the order first asked.
    fn experiments(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().expect("probe poisoned").experiments)
    }
}

impl ExperimentResolver for Probe {
    fn resolve(&self, experiment_key: &str, _: &Context<'_>) -> Option<ExperimentVariant<'_>> {
        let mut log = self.0.lock().expect("probe poisoned");
        log.questions += 1;
        if !log.experiments.iter().any(|k| k == experiment_key) {
            log.experiments.push(experiment_key.to_string());
        }
        None
    }
}

/// The variants one context was given in the experiments its flags reached.
#[derive(Default)]
struct Assigned(HashMap<String, Decision>);

impl ExperimentResolver for Assigned {
    fn resolve(&self, experiment_key: &str, _: &Context<'_>) -> Option<ExperimentVariant<'_>> {
        let decision = self.0.get(experiment_key)?;
        let variant =
            decision.experiment.experiment().variants.iter().find(|v| Some(&v.key) == decision.variant.as_ref())?;
        Some(ExperimentVariant { variant: &variant.key, value: variant.value.as_ref()? })
    }
}
