//! The application's handle: typed getters that evaluate in-process on the current
//! configuration, and the readiness the background synchronisation reports.
//!
//! A getter loads the configuration through an `ArcSwapOption` (no lock, no waiting on the
//! synchronisation task) and evaluates with `vexil-core`, so it answers exactly as the server
//! does for the same revision. It never fails: whatever goes wrong, the caller's default is
//! returned, and the detailed variants say why.

use crate::assignments::{Assignments, Probe};
use crate::configuration::{Configuration, Source};
use crate::options::Options;
use crate::reporting::{Delivery, Reporter};
use crate::sync;
use arc_swap::ArcSwapOption;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use vexil_core::{Context, EvalEnv, EvalError, Evaluation, FlagType, Reason};

/// How current the configuration being served is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// No configuration yet: every getter answers the caller's default.
    NotReady,
    /// Serving a local file (cache or bootstrap) until the server answers.
    Fallback(Source),
    /// In step with the server.
    Ready,
    /// The server was reached and is now away: serving the last configuration it sent.
    Stale,
}

impl Status {
    /// Whether getters evaluate flags (rather than answering defaults).
    pub fn has_configuration(self) -> bool {
        self != Status::NotReady
    }
}

/// Why a getter answered the caller's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No configuration has been received or loaded yet.
    NotReady,
    /// The configuration has no flag with this key.
    FlagNotFound,
    /// The flag's type is not the one asked for (a string flag read as a boolean).
    TypeMismatch,
    /// The context's user id is empty or white space (SPEC 3 step 1).
    InvalidUserId,
}

impl ErrorKind {
    /// The OpenFeature error code, as OFREP names it.
    pub fn openfeature_code(self) -> &'static str {
        match self {
            ErrorKind::NotReady => "PROVIDER_NOT_READY",
            ErrorKind::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorKind::TypeMismatch => "TYPE_MISMATCH",
            ErrorKind::InvalidUserId => "TARGETING_KEY_MISSING",
        }
    }
}

/// What decided the value of a detailed getter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The flag was evaluated; the native reason of SPEC 3.
    Evaluated(Reason),
    /// The caller's default was returned.
    Error(ErrorKind),
    /// The flag serves an experiment and this user's arm is not known yet (it is being fetched
    /// from `POST /v1/assign`, or the server cannot be reached): the flag was evaluated as for
    /// a user in no experiment, which serves its off variant.
    ArmUnknown,
}

/// The value of a flag and how it was decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Details<T> {
    /// The served value, or the caller's default on an error.
    pub value: T,
    /// The served variant's name (none on an error).
    pub variant: Option<String>,
    /// The reason, or the error that made the value the default.
    pub resolution: Resolution,
    /// The id of the rule that decided, when one did.
    pub rule_id: Option<String>,
    /// The version of the flag that was evaluated.
    pub flag_version: Option<u64>,
}

impl<T> Details<T> {
    fn default_for(value: T, error: ErrorKind) -> Details<T> {
        Details { value, variant: None, resolution: Resolution::Error(error), rule_id: None, flag_version: None }
    }
}

/// A value type a flag can be read as.
trait FlagValue: Sized {
    const TYPE: FlagType;
    fn from_json(value: &Value) -> Option<Self>;
}

impl FlagValue for bool {
    const TYPE: FlagType = FlagType::Boolean;
    fn from_json(value: &Value) -> Option<bool> {
        value.as_bool()
    }
}

impl FlagValue for String {
    const TYPE: FlagType = FlagType::String;
    fn from_json(value: &Value) -> Option<String> {
        value.as_str().map(str::to_string)
    }
}

impl FlagValue for f64 {
    const TYPE: FlagType = FlagType::Number;
    fn from_json(value: &Value) -> Option<f64> {
        value.as_f64()
    }
}

impl FlagValue for Value {
    const TYPE: FlagType = FlagType::Json;
    fn from_json(value: &Value) -> Option<Value> {
        Some(value.clone())
    }
}

/// What the client and its synchronisation task share.
pub(crate) struct Shared {
    pub configuration: ArcSwapOption<Configuration>,
    pub status: watch::Sender<Status>,
    /// Arms of flags that serve an experiment; none when no HTTP client could be built.
    pub assignments: Option<Arc<Assignments>>,
    pub reporter: Reporter,
}

impl Shared {
    /// Serves `configuration` from now on.
    pub fn install(&self, configuration: Configuration, status: Status) {
        if let Some(replaced) = self.configuration.swap(Some(Arc::new(configuration))) {
            self.reporter.retire(&replaced);
        }
        self.status.send_replace(status);
    }

    pub fn current(&self) -> Option<Arc<Configuration>> {
        self.configuration.load_full()
    }

    /// The server went away: what was served from it is now stale.
    pub fn lost_server(&self) {
        self.status.send_if_modified(|status| {
            let was_ready = *status == Status::Ready;
            if was_ready {
                *status = Status::Stale;
            }
            was_ready
        });
    }
}

/// Stops the background tasks (synchronisation, reporting) when the last clone of a client is
/// dropped.
struct Tasks(Vec<tokio::task::AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The handle applications evaluate flags with. Cheap to clone; clones share one configuration
/// and one connection to the server.
///
/// ```no_run
/// use vexil_sdk::{Client, Context, Options};
/// # async fn run() {
/// let client = Client::start(Options::new("http://127.0.0.1:8080", "vx_srv_...").bootstrap_file("flags.json"));
/// client.wait_until_ready(std::time::Duration::from_secs(2)).await;
/// let attributes = serde_json::json!({"country": "US"});
/// let ctx = Context::new("user_123", attributes.as_object().unwrap());
/// if client.bool_value("new_checkout", &ctx, false) {
///     // the new checkout
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    http: Option<reqwest::Client>,
    options: Arc<Options>,
    _tasks: Arc<Tasks>,
}

impl Client {
    /// Loads the cache or bootstrap file if there is one, and starts following the server in
    /// the background (on the current Tokio runtime). Returns at once: it never waits for the
    /// server; see [`Client::wait_until_ready`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as `tokio::spawn` does.
    pub fn start(options: Options) -> Client {
        let (status, _) = watch::channel(Status::NotReady);
        let http = reqwest::Client::builder().connect_timeout(options.request_timeout).build();
        let http = http
            .map_err(|e| tracing::error!(error = %e, "cannot build the HTTP client; serving local configuration only"));
        let assignments = http.as_ref().ok().map(|http| {
            let http = http.clone();
            Arc::new(Assignments::new(&options, http, tokio::runtime::Handle::current()))
        });
        let reporter = Reporter::new(options.event_capacity);
        let shared = Arc::new(Shared { configuration: ArcSwapOption::empty(), status, assignments, reporter });
        sync::load_local_files(&shared, &options);
        let http = http.ok();
        let options = Arc::new(options);
        let mut tasks = Vec::new();
        if let Some(http) = &http {
            tasks.push(tokio::spawn(sync::run(shared.clone(), Options::clone(&options), http.clone())).abort_handle());
            let (shared, http, options) = (shared.clone(), http.clone(), options.clone());
            let reporting = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(options.report_interval).await;
                    report_now(&shared, &http, &options).await;
                }
            });
            tasks.push(reporting.abort_handle());
        }
        Client { shared, http, options, _tasks: Arc::new(Tasks(tasks)) }
    }

    /// Sends the evaluation counts and queued events now, rather than at the next
    /// `report_interval` (before the application exits, say). What the server does not take
    /// stays queued.
    pub async fn flush(&self) {
        if let Some(http) = &self.http {
            report_now(&self.shared, http, &self.options).await;
        }
    }

    /// Queues an event of the application (a conversion, a purchase) for `POST /v1/events`,
    /// sent in the background with the next report. `value` is the number metrics sum;
    /// `properties` a JSON object. Never waits; the server validates it (SPEC 1.4).
    pub fn track(&self, event: &str, user_id: &str, value: Option<f64>, properties: serde_json::Map<String, Value>) {
        let mut body = serde_json::json!({
            "event_id": uuid::Uuid::new_v4().to_string(), "event": event, "type": "track",
            "user_id": user_id, "properties": properties,
        });
        if let Some(value) = value {
            body["value"] = serde_json::json!(value);
        }
        body["timestamp"] = crate::reporting::now_rfc3339();
        self.shared.reporter.queue(body);
    }

    /// What the background reporting has sent and dropped so far.
    pub fn delivery(&self) -> Delivery {
        self.shared.reporter.delivery()
    }

    /// How current the served configuration is.
    pub fn status(&self) -> Status {
        *self.shared.status.borrow()
    }

    /// Changes of [`Client::status`], for applications that report readiness.
    pub fn status_updates(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// Waits until the server's configuration is being served, for at most `limit`; answers
    /// the status then (`Ready`, or what is served meanwhile).
    pub async fn wait_until_ready(&self, limit: Duration) -> Status {
        let mut updates = self.status_updates();
        let _ = tokio::time::timeout(limit, updates.wait_for(|status| *status == Status::Ready)).await;
        self.status()
    }

    /// The keys of the flags in the served configuration, in key order.
    pub fn flag_keys(&self) -> Vec<String> {
        let configuration = self.shared.configuration.load();
        configuration.iter().flat_map(|c| c.flags.flags().map(|flag| flag.key.clone())).collect()
    }

    /// A boolean flag's value for `ctx`, or `default`.
    pub fn bool_value(&self, key: &str, ctx: &Context<'_>, default: bool) -> bool {
        self.evaluate(key, ctx, |outcome, _| match outcome {
            Ok(evaluation) if evaluation.flag.kind == FlagType::Boolean => evaluation.value.as_bool(),
            _ => None,
        })
        .unwrap_or(default)
    }

    /// A string flag's value for `ctx`, or `default`.
    pub fn string_value(&self, key: &str, ctx: &Context<'_>, default: &str) -> String {
        self.string_details(key, ctx, default).value
    }

    /// A number flag's value for `ctx`, or `default`.
    pub fn number_value(&self, key: &str, ctx: &Context<'_>, default: f64) -> f64 {
        self.number_details(key, ctx, default).value
    }

    /// A JSON flag's value for `ctx`, or `default`.
    pub fn json_value(&self, key: &str, ctx: &Context<'_>, default: Value) -> Value {
        self.json_details(key, ctx, default).value
    }

    /// A boolean flag's value with its variant, reason and rule.
    pub fn bool_details(&self, key: &str, ctx: &Context<'_>, default: bool) -> Details<bool> {
        self.details(key, ctx, default)
    }

    /// A string flag's value with its variant, reason and rule.
    pub fn string_details(&self, key: &str, ctx: &Context<'_>, default: &str) -> Details<String> {
        self.details(key, ctx, default.to_string())
    }

    /// A number flag's value with its variant, reason and rule.
    pub fn number_details(&self, key: &str, ctx: &Context<'_>, default: f64) -> Details<f64> {
        self.details(key, ctx, default)
    }

    /// A JSON flag's value with its variant, reason and rule.
    pub fn json_details(&self, key: &str, ctx: &Context<'_>, default: Value) -> Details<Value> {
        self.details(key, ctx, default)
    }

    fn details<T: FlagValue>(&self, key: &str, ctx: &Context<'_>, default: T) -> Details<T> {
        let found = self.evaluate(key, ctx, |outcome, arm_unknown| {
            let evaluation = outcome?;
            if evaluation.flag.kind != T::TYPE {
                return Err(ErrorKind::TypeMismatch);
            }
            let value = T::from_json(evaluation.value).ok_or(ErrorKind::TypeMismatch)?;
            Ok(Details {
                value,
                variant: Some(evaluation.variant.to_string()),
                resolution: if arm_unknown { Resolution::ArmUnknown } else { Resolution::Evaluated(evaluation.reason) },
                rule_id: evaluation.rule_id.map(str::to_string),
                flag_version: evaluation.flag.meta.version,
            })
        });
        found.unwrap_or_else(|error| Details::default_for(default, error))
    }

    /// Evaluates `key` on the current configuration and hands the outcome to `read` while the
    /// configuration is held, with whether an experiment arm it needed is unknown.
    ///
    /// Like the server, it evaluates twice only when the flag reaches an experiment: first as
    /// for a user in no experiment, noting the experiments reached, then with their arms.
    fn evaluate<R>(
        &self,
        key: &str,
        ctx: &Context<'_>,
        read: impl FnOnce(Result<Evaluation<'_>, ErrorKind>, bool) -> R,
    ) -> R {
        let configuration = self.shared.configuration.load();
        let Some(configuration) = configuration.as_ref() else {
            return read(Err(ErrorKind::NotReady), false);
        };
        let Some(position) = configuration.flags.position(key) else {
            // As on the server, a bad user id is reported before an unknown flag.
            let invalid_user = vexil_core::validate_user_id(ctx.user_id()).is_err();
            return read(Err(if invalid_user { ErrorKind::InvalidUserId } else { ErrorKind::FlagNotFound }), false);
        };
        let now_millis = if configuration.scheduled { now_millis() } else { 0 };
        let probe = Probe::default();
        let outcome = configuration.flags.evaluate_at(position, ctx, &EvalEnv { now_millis, experiments: &probe });
        let reached = probe.reached();
        let Some(assignments) = self.shared.assignments.as_ref().filter(|_| !reached.is_empty()) else {
            self.record(configuration, position, &outcome, ctx);
            return read(outcome.map_err(error_kind), false);
        };
        let arms = assignments.lookup(&reached, ctx);
        let outcome = configuration.flags.evaluate_at(position, ctx, &EvalEnv { now_millis, experiments: &arms });
        self.record(configuration, position, &outcome, ctx);
        read(outcome.map_err(error_kind), !arms.covers(&reached))
    }

    /// Counts an evaluation and, for a flag with `track_events`, queues its raw event.
    fn record(
        &self,
        configuration: &Configuration,
        position: usize,
        outcome: &Result<Evaluation<'_>, EvalError>,
        ctx: &Context<'_>,
    ) {
        let Ok(evaluation) = outcome else { return };
        configuration.count(position, evaluation.variant);
        if evaluation.flag.track_events {
            self.shared.reporter.queue_evaluation(evaluation, ctx.user_id());
        }
    }
}

async fn report_now(shared: &Shared, http: &reqwest::Client, options: &Options) {
    let current = shared.current();
    shared.reporter.report(http, &options.base_url, &options.key, current.as_deref()).await;
}

fn error_kind(error: EvalError) -> ErrorKind {
    match error {
        EvalError::InvalidUserId | EvalError::UserIdTooLong => ErrorKind::InvalidUserId,
        EvalError::FlagNotFound(_) => ErrorKind::FlagNotFound,
    }
}

/// The wall clock in Unix milliseconds, for schedules (the core takes time as an input).
fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
