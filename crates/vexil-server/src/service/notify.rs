//! Notifications of the safety rails: every automatic action (a rollout step, a rollback, a
//! budget action) and every threshold crossing is logged as a structured record and, when a
//! webhook is configured, POSTed to it as JSON.
//!
//! Deliveries never block the caller: [`Notifier::notify`] hands the notification to a bounded
//! queue that one background task drains, retrying each delivery with exponential backoff.
//! When `webhook_secret` is set, each delivery carries
//! `X-Vexil-Signature: sha256=<hex HMAC-SHA256 of the body>` so the receiver can check that the
//! body came from this server unchanged.

use crate::service::supervise::Supervisor;
use hmac::{Hmac, Mac};
use prometheus::IntCounterVec;
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vexil_store::Timestamp;

/// Notifications waiting for delivery before new ones are dropped (and counted as failed).
const QUEUE_CAPACITY: usize = 1024;
/// Attempts per delivery; the waits between them double from [`FIRST_RETRY`].
const ATTEMPTS: u32 = 6;
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Time allowed for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to deliver webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Option<String>,
}

/// One notification, as logged and as the webhook's JSON body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: String,
    /// What happened, e.g. `rollout.rolled_back`, `budget.threshold_crossed`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub at: Timestamp,
    pub message: String,
    pub details: Value,
}

impl Notification {
    pub fn new(kind: &'static str, message: impl Into<String>, details: Value) -> Notification {
        Notification {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            at: vexil_store::now(),
            message: message.into(),
            details,
        }
    }
}

/// `sha256=<hex>`: the value of `X-Vexil-Signature` for `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Logs notifications and queues them for the webhook.
pub struct Notifier {
    queue: Option<mpsc::Sender<Notification>>,
    deliveries: IntCounterVec,
}

impl Notifier {
    /// A notifier that only logs when `webhook` is `None`; otherwise it starts the delivery
    /// task under `supervisor` (inside the tokio runtime); it ends when the notifier is dropped.
    /// `deliveries` is counted by `result` (`ok`, `failed`).
    pub fn new(webhook: Option<WebhookConfig>, deliveries: IntCounterVec, supervisor: &Supervisor) -> Notifier {
        let queue = webhook.map(|config| {
            let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
            // The queue outlives a panicking delivery: the restarted task locks it again.
            let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
            let (config, deliveries) = (Arc::new(config), deliveries.clone());
            supervisor.spawn("webhook_delivery", CancellationToken::new(), move || {
                deliver_all(config.clone(), receiver.clone(), deliveries.clone())
            });
            sender
        });
        Notifier { queue, deliveries }
    }

    /// Logs `notification` and queues it for the webhook, without waiting.
    pub fn notify(&self, notification: Notification) {
        tracing::warn!(
            target: "vexil_server::service::notify",
            notification = notification.kind,
            id = %notification.id,
            details = %notification.details,
            "{}",
            notification.message
        );
        if let Some(queue) = &self.queue {
            if queue.try_send(notification).is_err() {
                tracing::error!("webhook queue full: a notification was dropped");
                self.deliveries.with_label_values(&["failed"]).inc();
            }
        }
    }
}

async fn deliver_all(
    config: Arc<WebhookConfig>,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Notification>>>,
    deliveries: IntCounterVec,
) {
    let client = match reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; notifications are only logged");
            return;
        }
    };
    let mut queue = queue.lock().await;
    while let Some(notification) = queue.recv().await {
        let body = serde_json::to_vec(&notification).expect("notifications serialise");
        let result = if deliver(&client, &config, &body).await { "ok" } else { "failed" };
        if result == "failed" {
            tracing::error!(id = %notification.id, url = %config.url, attempts = ATTEMPTS, "webhook delivery failed");
        }
        deliveries.with_label_values(&[result]).inc();
    }
}

/// Posts `body` until the receiver answers 2xx or the attempts run out.
async fn deliver(client: &reqwest::Client, config: &WebhookConfig, body: &[u8]) -> bool {
    let mut wait = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let mut request = client.post(&config.url).header("Content-Type", "application/json").body(body.to_vec());
        if let Some(secret) = &config.secret {
            request = request.header("X-Vexil-Signature", signature(secret, body));
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) => tracing::warn!(attempt, status = %response.status(), "webhook answered an error"),
            Err(e) => tracing::warn!(attempt, error = %e, "webhook unreachable"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
