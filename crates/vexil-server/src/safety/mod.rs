//! The safety rails of SPEC 7: emergency stops ([`stops`]), and the metrics and notifications
//! they share.

pub mod stops;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use prometheus::{IntCounterVec, IntGauge, Opts};

/// The safety rails' shared parts, held in the service state.
pub struct Safety {
    pub notifier: Notifier,
    pub metrics: SafetyMetrics,
}

impl Safety {
    /// Registers the metrics and starts webhook delivery when one is configured.
    pub fn new(config: &ServerConfig, metrics: &Metrics) -> Safety {
        let safety_metrics = SafetyMetrics::new(metrics);
        Safety {
            notifier: Notifier::new(config.webhook.clone(), safety_metrics.webhook_deliveries.clone()),
            metrics: safety_metrics,
        }
    }
}

/// The safety rails' Prometheus metrics.
pub struct SafetyMetrics {
    pub active_stops: IntGauge,
    pub webhook_deliveries: IntCounterVec,
}

impl SafetyMetrics {
    fn new(metrics: &Metrics) -> SafetyMetrics {
        let m = SafetyMetrics {
            active_stops: IntGauge::new("vexil_emergency_stops_active", "Emergency stops in force.")
                .expect("valid metric"),
            webhook_deliveries: IntCounterVec::new(
                Opts::new(
                    "vexil_webhook_deliveries_total",
                    "Webhook notifications by result: ok (2xx) or failed (after every retry, or dropped).",
                ),
                &["result"],
            )
            .expect("valid metric"),
        };
        metrics.register(Box::new(m.active_stops.clone()));
        metrics.register(Box::new(m.webhook_deliveries.clone()));
        m
    }
}
