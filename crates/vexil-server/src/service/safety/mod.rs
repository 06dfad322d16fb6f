//! The safety rails of SPEC 7: emergency stops ([`stops`]), progressive rollout plans
//! ([`plans`]) with their [`guards`], cost [`budgets`], the [`scheduler`] that drives plans and
//! budgets from the event pipeline's [`signals`], and the metrics and notifications they share.

pub mod budgets;
pub mod guards;
pub mod plans;
pub mod scheduler;
pub mod signals;
pub mod stops;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::service::notify::Notifier;
use crate::service::supervise::Supervisor;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};
use std::sync::Arc;
use vexil_events::pipeline::Pipeline;

/// The safety rails' shared parts, held in the service state.
pub struct Safety {
    pub notifier: Notifier,
    pub metrics: SafetyMetrics,
    /// Where every environment's signals are read.
    pipeline: Arc<Pipeline>,
}

impl Safety {
    /// Registers the metrics and starts webhook delivery (under `supervisor`) when one is configured; signals come
    /// from `pipeline`'s counters.
    pub fn new(config: &ServerConfig, metrics: &Metrics, pipeline: Arc<Pipeline>, supervisor: &Supervisor) -> Safety {
        let safety_metrics = SafetyMetrics::new(metrics);
        Safety {
            notifier: Notifier::new(config.webhook.clone(), safety_metrics.webhook_deliveries.clone(), supervisor),
            metrics: safety_metrics,
            pipeline,
        }
    }

    /// The signals of environment `env`: its events' counters only.
    pub fn signals_of(&self, env: &str) -> Arc<dyn signals::Signals> {
        Arc::new(signals::PipelineSignals::of(self.pipeline.clone(), env))
    }
}

/// The safety rails' Prometheus metrics.
/// Every series but the webhook deliveries' is labelled by `environment`.
pub struct SafetyMetrics {
    pub active_stops: IntGaugeVec,
    pub webhook_deliveries: IntCounterVec,
    pub guard_breaks: IntCounterVec,
    pub plan_state: IntGaugeVec,
    pub plan_step: IntGaugeVec,
    pub plan_percent: GaugeVec,
    pub budget_spend: GaugeVec,
    pub budget_remaining: GaugeVec,
}

impl SafetyMetrics {
    fn new(metrics: &Metrics) -> SafetyMetrics {
        let m = SafetyMetrics {
            active_stops: IntGaugeVec::new(
                Opts::new("vexil_emergency_stops_active", "Emergency stops in force, by environment."),
                &["environment"],
            )
            .expect("valid metric"),
            webhook_deliveries: IntCounterVec::new(
                Opts::new(
                    "vexil_webhook_deliveries_total",
                    "Webhook notifications by result: ok (2xx) or failed (after every retry, or dropped).",
                ),
                &["result"],
            )
            .expect("valid metric"),
            guard_breaks: IntCounterVec::new(
                Opts::new("vexil_rollout_guard_breaks_total", "Guards that broke and rolled a plan back, by flag."),
                &["environment", "flag"],
            )
            .expect("valid metric"),
            plan_state: IntGaugeVec::new(
                Opts::new("vexil_rollout_plan_state", "1 for the state each flag's rollout plan is in."),
                &["environment", "flag", "state"],
            )
            .expect("valid metric"),
            plan_step: IntGaugeVec::new(
                Opts::new("vexil_rollout_plan_step", "The step (1-based) in force of each rollout plan."),
                &["environment", "flag"],
            )
            .expect("valid metric"),
            plan_percent: GaugeVec::new(
                Opts::new("vexil_rollout_plan_percent", "The rollout percentage of each plan's step in force."),
                &["environment", "flag"],
            )
            .expect("valid metric"),
            budget_spend: GaugeVec::new(
                Opts::new("vexil_budget_spend", "Spend of each budget in its current period."),
                &["environment", "budget"],
            )
            .expect("valid metric"),
            budget_remaining: GaugeVec::new(
                Opts::new("vexil_budget_remaining", "Limit minus spend of each budget in its current period."),
                &["environment", "budget"],
            )
            .expect("valid metric"),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.active_stops.clone()),
            Box::new(m.webhook_deliveries.clone()),
            Box::new(m.guard_breaks.clone()),
            Box::new(m.plan_state.clone()),
            Box::new(m.plan_step.clone()),
            Box::new(m.plan_percent.clone()),
            Box::new(m.budget_spend.clone()),
            Box::new(m.budget_remaining.clone()),
        ];
        metrics.register(collectors);
        m
    }
}
