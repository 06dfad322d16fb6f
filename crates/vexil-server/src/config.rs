//! Service configuration: `vexil.toml`, overridden by `VEXIL_*` environment variables,
//! overridden by command-line flags (SPEC 8). Every layer is a [`PartialConfig`]; the merged
//! result is validated once into a [`ServerConfig`], and any problem stops the start with a
//! message naming the setting and where it came from.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vexil_events::archive::ArchiveFormat;
use vexil_events::IngestOptions;

/// The configuration file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "vexil.toml";

/// The validated configuration the server runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The PostgreSQL database of the distributed mode; `None`: the embedded store in `data_dir`.
    pub database_url: Option<String>,
    /// Tokio worker threads.
    pub workers: usize,
    pub max_body_bytes: usize,
    /// A `tracing` filter directive (`info`, `vexil_server=debug,info`).
    pub log_level: String,
    pub log_format: LogFormat,
    pub cors: CorsConfig,
    /// The secret of the admin key created on a fresh store; generated when absent.
    pub admin_key: Option<String>,
    /// The environment of keys that name none and of admin requests that name none (SPEC 9).
    pub default_environment: String,
    /// The bearer token `/metrics` requires, if any (its text names every flag and budget).
    pub metrics_key: Option<String>,
    /// How long an authenticated key is trusted without asking the store again.
    pub auth_cache_ttl: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// The interval of SSE heartbeat comments.
    pub sse_heartbeat: Duration,
    /// How long a sticky experiment assignment lasts; `None`: as long as the experiment.
    pub assignment_ttl: Option<Duration>,
    /// Sticky assignments kept in the in-memory cache in front of the store.
    pub assignment_cache_entries: usize,
    /// Whether a first assignment is answered only once it is on disk (see `Flush`).
    pub assignment_flush: vexil_store::Flush,
    /// Where the event archive is written (default `<data_dir>/archive`).
    pub archive_dir: PathBuf,
    /// The event archive's file format (default gzip JSON lines).
    pub archive_format: ArchiveFormat,
    /// How much per-user processing state each event partition keeps in memory.
    pub event_state_cache: vexil_events::pipeline::StateCache,
    /// How many events processing may be behind before ingest answers 429.
    pub event_max_lag_events: u64,
    /// The Kafka-protocol event bus of the distributed mode (`kafka://host:port/topic`);
    /// `None`: the embedded log under `data_dir`.
    pub event_bus: Option<String>,
    /// Whether this node processes events. `false` (distributed mode only): it appends the
    /// events it is sent to the bus and serves results, and the other nodes process them.
    pub event_processing: bool,
    /// The S3-compatible archive of the distributed mode (`s3://bucket/prefix`); `None`:
    /// `archive_dir`.
    pub archive_url: Option<String>,
    /// How often the safety scheduler advances rollout plans, checks guards and budgets.
    pub safety_check_interval: Duration,
    /// Where notifications of the safety rails are POSTed, if anywhere.
    pub webhook: Option<crate::service::notify::WebhookConfig>,
    /// Timeouts and size limits of the HTTP edge.
    pub edge: EdgeConfig,
    /// Requests a second each API key may make (0: no limit), and its bursts (0: one second's).
    pub rate_limit_per_key: u32,
    pub rate_limit_burst: u32,
    /// Bounds on the invalid events the dead-letter queue keeps.
    pub dlq_limits: vexil_events::dlq::DlqLimits,
    /// How long people's sessions last and how failed sign-ins are throttled.
    pub sessions: crate::service::people::SessionPolicy,
    /// Whether the session cookie is always marked `Secure` (the service is reached over TLS).
    pub session_cookie_secure: bool,
    /// Whether `X-Forwarded-Proto` and `X-Forwarded-For` from a reverse proxy are believed: the
    /// session cookie is `Secure` when the proxy says `https`, and sign-in failures count
    /// against the address the proxy names.
    pub trust_forwarded_headers: bool,
}

/// How long and how much a client may take before the edge cuts it off (see `http::edge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeConfig {
    /// From the first byte of a request (or the connection's opening) to its complete headers.
    pub header_read_timeout: Duration,
    /// To receive a whole request body, from the end of its headers.
    pub body_timeout: Duration,
    /// How long a connection may wait between requests.
    pub keep_alive_timeout: Duration,
    /// Open connections; more wait in the listen backlog.
    pub max_connections: usize,
    pub max_uri_bytes: usize,
    /// Sum of the lengths of the request's header names and values.
    pub max_header_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Cross-origin access to the evaluation and OFREP routes (the admin API never allows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    pub enabled: bool,
    /// `*` or exact origins (`https://app.example.com`).
    pub allowed_origins: Vec<String>,
}

/// Defines [`PartialConfig`] once: its fields, their TOML names, their environment variables,
/// and the overlay of one layer over another.
macro_rules! partial_config {
    ($($field:ident: $ty:ty = $env:literal, $help:literal;)*) => {
        /// One layer of configuration: every setting optional. Unknown keys in the file are errors.
        #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct PartialConfig {
            $(#[doc = $help] pub $field: Option<$ty>,)*
        }

        impl PartialConfig {
            /// Every setting: (TOML key, environment variable, description), for docs and errors.
            pub const SETTINGS: &'static [(&'static str, &'static str, &'static str)] =
                &[$((stringify!($field), $env, $help)),*];

            /// `over` wins wherever it sets a value.
            pub fn overlay(self, over: PartialConfig) -> PartialConfig {
                PartialConfig { $($field: over.$field.or(self.$field),)* }
            }

            /// Reads the `VEXIL_*` variables among `vars`, each parsed as its TOML type.
            pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<PartialConfig, String> {
                let mut layer = PartialConfig::default();
                for (name, value) in vars {
                    $(if name == $env {
                        layer.$field = Some(parse_env::<$ty>($env, &value)?);
                        continue;
                    })*
                }
                Ok(layer)
            }
        }
    };
}

partial_config! {
    listen: String = "VEXIL_LISTEN", "Address and port to listen on (default 127.0.0.1:8080).";
    data_dir: PathBuf = "VEXIL_DATA_DIR", "Directory of the embedded database (default ./vexil-data).";
    event_bus: String = "VEXIL_EVENT_BUS", "kafka://host:port/topic of the distributed mode's event bus (default: the embedded log).";
    event_processing: bool = "VEXIL_EVENT_PROCESSING", "false: this node of the distributed mode only ingests, taking no event partition to process (default true).";
    archive_url: String = "VEXIL_ARCHIVE_URL", "s3://bucket/prefix of the distributed mode's archive (default: archive_dir).";
    database_url: String = "VEXIL_DATABASE_URL", "postgres:// URL of the shared database of the distributed mode (default: the embedded one).";
    workers: usize = "VEXIL_WORKERS", "Worker threads (default: one per CPU).";
    max_body_bytes: usize = "VEXIL_MAX_BODY_BYTES", "Largest accepted request body in bytes (default 5242880).";
    log_level: String = "VEXIL_LOG_LEVEL", "Log filter: error, warn, info, debug, trace or a tracing directive (default info).";
    log_format: String = "VEXIL_LOG_FORMAT", "json or text (default json).";
    cors_enabled: bool = "VEXIL_CORS_ENABLED", "CORS on the evaluation and OFREP routes (default true).";
    cors_allowed_origins: Vec<String> = "VEXIL_CORS_ALLOWED_ORIGINS", "Allowed origins; * for any (default [\"*\"]).";
    metrics_key: String = "VEXIL_METRICS_KEY", "Bearer token that GET /metrics requires (default: none, /metrics is open).";
    admin_key: String = "VEXIL_ADMIN_KEY", "Secret of the admin key created on a fresh store (default: generated and printed).";
    default_environment: String = "VEXIL_DEFAULT_ENVIRONMENT", "Environment of keys and admin requests that name none; it must exist (default production).";
    auth_cache_ttl_secs: u64 = "VEXIL_AUTH_CACHE_TTL_SECS", "Seconds an authenticated key is cached (default 10).";
    shutdown_timeout_secs: u64 = "VEXIL_SHUTDOWN_TIMEOUT_SECS", "Seconds shutdown waits for in-flight requests (default 30).";
    sse_heartbeat_secs: u64 = "VEXIL_SSE_HEARTBEAT_SECS", "Seconds between SSE heartbeat comments (default 15).";
    assignment_ttl_secs: u64 = "VEXIL_ASSIGNMENT_TTL_SECS", "Seconds a sticky experiment assignment lasts; 0 keeps it for the experiment's life (default 7776000, 90 days).";
    assignment_cache_entries: usize = "VEXIL_ASSIGNMENT_CACHE_ENTRIES", "Sticky assignments cached in memory (default 100000).";
    assignment_fsync: bool = "VEXIL_ASSIGNMENT_FSYNC", "Answer a first assignment only after its group commit is fsync'd, instead of flushing it in the background within 250 ms (default false).";
    archive_dir: PathBuf = "VEXIL_ARCHIVE_DIR", "Directory of the event archive (default <data_dir>/archive).";
    archive_format: String = "VEXIL_ARCHIVE_FORMAT", "File format of the event archive: jsonl (gzip JSON lines) or parquet (default jsonl).";
    event_user_cache_entries: usize = "VEXIL_EVENT_USER_CACHE_ENTRIES", "Users whose experiment state (empty for a user never exposed) this node keeps in memory, shared evenly by the event partitions it processes; the rest are read from the store when their events come; the embedded store journals as many users that keep changing (default 100000).";
    event_max_lag_events: u64 = "VEXIL_EVENT_MAX_LAG_EVENTS", "Events processing may be behind before ingest answers 429 backpressure: this node's partitions, or in the distributed mode every partition of the topic (default 20000000).";
    event_member_cache_entries: usize = "VEXIL_EVENT_MEMBER_CACHE_ENTRIES", "Unique-user counter memberships this node keeps in memory, shared evenly by the event partitions it processes; the rest are looked up in the store (default 1000000).";
    safety_check_interval_ms: u64 = "VEXIL_SAFETY_CHECK_INTERVAL_MS", "Milliseconds between checks of rollout plans, guards and budgets (default 10000).";
    webhook_url: String = "VEXIL_WEBHOOK_URL", "URL that notifications of the safety rails are POSTed to (default: none, log only).";
    webhook_secret: String = "VEXIL_WEBHOOK_SECRET", "Secret of the X-Vexil-Signature HMAC-SHA256 header of webhooks (default: unsigned).";
    header_read_timeout_ms: u64 = "VEXIL_HEADER_READ_TIMEOUT_MS", "Milliseconds from a request's first byte (or the connection's opening) to its complete headers; slower requests get 408 (default 10000).";
    body_timeout_ms: u64 = "VEXIL_BODY_TIMEOUT_MS", "Milliseconds to receive a whole request body; slower bodies get 408 (default 30000).";
    keep_alive_timeout_secs: u64 = "VEXIL_KEEP_ALIVE_TIMEOUT_SECS", "Seconds a connection may stay idle between requests (default 60).";
    max_connections: usize = "VEXIL_MAX_CONNECTIONS", "Open connections at most; further ones wait in the listen backlog (default 4096).";
    max_uri_bytes: usize = "VEXIL_MAX_URI_BYTES", "Longest request target (path and query) in bytes; longer ones get 414 (default 8192).";
    rate_limit_per_key: u32 = "VEXIL_RATE_LIMIT_PER_KEY", "Requests a second each API key may make; more get 429 with Retry-After; 0 turns limits off (default 0).";
    rate_limit_burst: u32 = "VEXIL_RATE_LIMIT_BURST", "Requests a key may make at once within its rate limit; 0 means one second's worth (default 0).";
    dlq_max_entries: u64 = "VEXIL_DLQ_MAX_ENTRIES", "Invalid events the dead-letter queue keeps at most; more are refused and counted (default 100000).";
    dlq_max_bytes: u64 = "VEXIL_DLQ_MAX_BYTES", "Total payload bytes of invalid events the dead-letter queue keeps at most (default 67108864).";
    dlq_max_payload_bytes: usize = "VEXIL_DLQ_MAX_PAYLOAD_BYTES", "Dead-lettered payloads are cut to this many bytes (default 8192).";
    max_header_bytes: usize = "VEXIL_MAX_HEADER_BYTES", "Largest total of header names and values in bytes; larger ones get 431 (default 16384).";
    session_lifetime_secs: u64 = "VEXIL_SESSION_LIFETIME_SECS", "Seconds a person's session lasts after sign-in, however active (default 43200, 12 hours).";
    session_idle_timeout_secs: u64 = "VEXIL_SESSION_IDLE_TIMEOUT_SECS", "Seconds a session may go unused before it ends (default 7200, 2 hours).";
    session_cookie_secure: bool = "VEXIL_SESSION_COOKIE_SECURE", "Always mark the session cookie Secure: set it when people reach the service over TLS (default false).";
    trust_forwarded_headers: bool = "VEXIL_TRUST_FORWARDED_HEADERS", "Believe X-Forwarded-Proto (https: the session cookie is Secure) and X-Forwarded-For (the client address sign-in failures count against) from the reverse proxy in front (default false).";
    login_max_failures: u32 = "VEXIL_LOGIN_MAX_FAILURES", "Failed sign-ins of one username within login_failure_window_secs before its sign-in is refused with 429 (default 5).";
    login_max_failures_per_address: u32 = "VEXIL_LOGIN_MAX_FAILURES_PER_ADDRESS", "Failed sign-ins from one client address within login_failure_window_secs before its sign-ins are refused with 429 (default 20).";
    login_failure_window_secs: u64 = "VEXIL_LOGIN_FAILURE_WINDOW_SECS", "Seconds failed sign-ins are counted for, from the first (default 900).";
}

/// How a setting's type reads from an environment variable.
trait FromEnv: Sized {
    fn from_env(raw: &str) -> Option<Self>;
}

impl FromEnv for String {
    fn from_env(raw: &str) -> Option<Self> {
        Some(raw.to_string())
    }
}

impl FromEnv for PathBuf {
    fn from_env(raw: &str) -> Option<Self> {
        Some(PathBuf::from(raw))
    }
}

impl FromEnv for usize {
    fn from_env(raw: &str) -> Option<Self> {
        raw.trim().parse().ok()
    }
}

impl FromEnv for u32 {
    fn from_env(raw: &str) -> Option<Self> {
        raw.trim().parse().ok()
    }
}

impl FromEnv for u64 {
    fn from_env(raw: &str) -> Option<Self> {
        raw.trim().parse().ok()
    }
}

impl FromEnv for bool {
    fn from_env(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        }
    }
}

/// Lists are comma-separated.
impl FromEnv for Vec<String> {
    fn from_env(raw: &str) -> Option<Self> {
        Some(raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
    }
}

fn parse_env<T: FromEnv>(name: &str, raw: &str) -> Result<T, String> {
    T::from_env(raw).ok_or_else(|| format!("environment variable {name}: cannot use the value {raw:?}"))
}

impl PartialConfig {
    /// Reads a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<PartialConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("configuration file {}: {}", path.display(), e.message()))
    }
}

impl ServerConfig {
    /// Layers file < environment < flags and validates the result. The file is `config_file`
    /// if given (it must exist), else `vexil.toml` in the working directory if present.
    pub fn load(
        config_file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: PartialConfig,
    ) -> Result<ServerConfig, String> {
        let file = match config_file {
            Some(path) => PartialConfig::from_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                PartialConfig::from_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => PartialConfig::default(),
        };
        let merged = file.overlay(PartialConfig::from_env(env)?).overlay(flags);
        ServerConfig::validate(merged)
    }

    /// Fills defaults and checks every setting.
    pub fn validate(c: PartialConfig) -> Result<ServerConfig, String> {
        let listen_text = c.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|_| format!("listen: {listen_text:?} is not an ADDRESS:PORT such as 127.0.0.1:8080"))?;
        let workers = c.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if !(1..=1024).contains(&workers) {
            return Err(format!("workers: {workers} is not between 1 and 1024"));
        }
        let max_body_bytes = c.max_body_bytes.unwrap_or(5 * 1024 * 1024);
        if max_body_bytes < 1024 {
            return Err(format!("max_body_bytes: {max_body_bytes} is below the minimum of 1024"));
        }
        let log_level = c.log_level.unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .map_err(|e| format!("log_level: {log_level:?} is not a log filter ({e})"))?;
        let log_format = match c.log_format.as_deref().unwrap_or("json") {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => return Err(format!("log_format: {other:?} is neither json nor text")),
        };
        let allowed_origins = c.cors_allowed_origins.unwrap_or_else(|| vec!["*".into()]);
        for origin in &allowed_origins {
            if origin != "*" && axum::http::HeaderValue::from_str(origin).is_err() {
                return Err(format!("cors_allowed_origins: {origin:?} is not a valid origin"));
            }
        }
        if c.metrics_key.as_ref().is_some_and(|key| key.len() < 16 || key.chars().any(char::is_whitespace)) {
            return Err("metrics_key: must be at least 16 characters without white space".into());
        }
        let default_environment = c.default_environment.unwrap_or_else(|| vexil_store::DEFAULT_ENVIRONMENT.into());
        if !vexil_store::is_environment_key(&default_environment) {
            return Err(format!(
                "default_environment: {default_environment:?} is not an environment key (^[a-z][a-z0-9_-]{{0,63}}$)"
            ));
        }
        if let Some(key) = &c.admin_key {
            if key.len() < 16 || key.chars().any(char::is_whitespace) {
                return Err("admin_key: must be at least 16 characters without white space".into());
            }
        }
        let seconds = |value: Option<u64>, default: u64, name: &str, min: u64| match value.unwrap_or(default) {
            s if s < min => Err(format!("{name}: must be at least {min}")),
            s => Ok(Duration::from_secs(s)),
        };
        let safety_check_interval = match c.safety_check_interval_ms.unwrap_or(10_000) {
            ms if (10..=3_600_000).contains(&ms) => Duration::from_millis(ms),
            ms => return Err(format!("safety_check_interval_ms: {ms} is not between 10 and 3600000")),
        };
        if c.webhook_secret.is_some() && c.webhook_url.is_none() {
            return Err("webhook_secret: set webhook_url too, or the secret has no use".into());
        }
        let webhook = match c.webhook_url {
            Some(url) => match reqwest::Url::parse(&url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    Some(crate::service::notify::WebhookConfig { url, secret: c.webhook_secret })
                }
                _ => return Err(format!("webhook_url: {url:?} is not an http:// or https:// URL")),
            },
            None => None,
        };
        let archive_format = match &c.archive_format {
            Some(name) => name.parse().map_err(|e| format!("archive_format: {e}"))?,
            None => ArchiveFormat::default(),
        };
        let data_dir = c.data_dir.unwrap_or_else(|| PathBuf::from("./vexil-data"));
        if let Some(url) = &c.event_bus {
            vexil_distributed::kafka::KafkaTarget::parse(url).map_err(|e| format!("event_bus: {url:?} {e}"))?;
            if c.database_url.is_none() {
                return Err("event_bus: needs database_url too (the nodes keep their consumer group and \
                            processing state in the shared PostgreSQL database)"
                    .into());
            }
        }
        let event_processing = c.event_processing.unwrap_or(true);
        if !event_processing && c.event_bus.is_none() {
            return Err("event_processing: false needs event_bus (the distributed mode): in the embedded mode this \
                        node is the only one that processes its events"
                .into());
        }
        if let Some(url) = &c.archive_url {
            vexil_distributed::s3::S3Target::parse(url).map_err(|e| format!("archive_url: {url:?} {e}"))?;
        }
        if let Some(url) = &c.database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err("database_url: must be a postgres:// or postgresql:// URL".into());
            }
        }
        let millis = |value: Option<u64>, default: u64, name: &str| match value.unwrap_or(default) {
            ms if (100..=3_600_000).contains(&ms) => Ok(Duration::from_millis(ms)),
            ms => Err(format!("{name}: {ms} is not between 100 and 3600000")),
        };
        let at_least = |value: Option<usize>, default: usize, name: &str, min: usize| match value.unwrap_or(default) {
            n if n < min => Err(format!("{name}: {n} is below the minimum of {min}")),
            n => Ok(n),
        };
        let cache_defaults = vexil_events::pipeline::StateCache::default();
        let event_state_cache = vexil_events::pipeline::StateCache {
            users: at_least(c.event_user_cache_entries, cache_defaults.users, "event_user_cache_entries", 1)?,
            members: at_least(c.event_member_cache_entries, cache_defaults.members, "event_member_cache_entries", 1)?,
        };
        let event_max_lag_events = match c.event_max_lag_events.unwrap_or(IngestOptions::default().max_lag_events) {
            0 => return Err("event_max_lag_events: must be at least 1".to_owned()),
            n => n,
        };
        let edge = EdgeConfig {
            header_read_timeout: millis(c.header_read_timeout_ms, 10_000, "header_read_timeout_ms")?,
            body_timeout: millis(c.body_timeout_ms, 30_000, "body_timeout_ms")?,
            keep_alive_timeout: seconds(c.keep_alive_timeout_secs, 60, "keep_alive_timeout_secs", 1)?,
            max_connections: at_least(c.max_connections, 4096, "max_connections", 1)?,
            max_uri_bytes: at_least(c.max_uri_bytes, 8192, "max_uri_bytes", 1024)?,
            max_header_bytes: at_least(c.max_header_bytes, 16384, "max_header_bytes", 1024)?,
        };
        let dlq_defaults = vexil_events::dlq::DlqLimits::default();
        let dlq_limits = vexil_events::dlq::DlqLimits {
            max_entries: c.dlq_max_entries.unwrap_or(dlq_defaults.max_entries),
            max_bytes: c.dlq_max_bytes.unwrap_or(dlq_defaults.max_bytes),
            max_payload_bytes: at_least(
                c.dlq_max_payload_bytes,
                dlq_defaults.max_payload_bytes,
                "dlq_max_payload_bytes",
                256,
            )?,
        };
        let positive = |value: Option<u32>, default: u32, name: &str| match value.unwrap_or(default) {
            0 => Err(format!("{name}: must be at least 1")),
            n => Ok(n),
        };
        let sessions = crate::service::people::SessionPolicy {
            lifetime: seconds(c.session_lifetime_secs, 12 * 3600, "session_lifetime_secs", 60)?,
            idle_timeout: seconds(c.session_idle_timeout_secs, 2 * 3600, "session_idle_timeout_secs", 60)?,
            max_failures_per_username: positive(c.login_max_failures, 5, "login_max_failures")?,
            max_failures_per_address: positive(c.login_max_failures_per_address, 20, "login_max_failures_per_address")?,
            failure_window: seconds(c.login_failure_window_secs, 900, "login_failure_window_secs", 1)?,
        };
        Ok(ServerConfig {
            sessions,
            session_cookie_secure: c.session_cookie_secure.unwrap_or(false),
            trust_forwarded_headers: c.trust_forwarded_headers.unwrap_or(false),
            rate_limit_per_key: c.rate_limit_per_key.unwrap_or(0),
            rate_limit_burst: c.rate_limit_burst.unwrap_or(0),
            edge,
            dlq_limits,
            safety_check_interval,
            webhook,
            listen,
            archive_dir: c.archive_dir.unwrap_or_else(|| data_dir.join("archive")),
            archive_format,
            event_state_cache,
            event_max_lag_events,
            data_dir,
            database_url: c.database_url,
            event_bus: c.event_bus,
            event_processing,
            archive_url: c.archive_url,
            workers,
            max_body_bytes,
            log_level,
            log_format,
            cors: CorsConfig { enabled: c.cors_enabled.unwrap_or(true), allowed_origins },
            admin_key: c.admin_key,
            default_environment,
            metrics_key: c.metrics_key,
            auth_cache_ttl: seconds(c.auth_cache_ttl_secs, 10, "auth_cache_ttl_secs", 0)?,
            shutdown_timeout: seconds(c.shutdown_timeout_secs, 30, "shutdown_timeout_secs", 0)?,
            sse_heartbeat: seconds(c.sse_heartbeat_secs, 15, "sse_heartbeat_secs", 1)?,
            assignment_ttl: Some(seconds(c.assignment_ttl_secs, 90 * 24 * 3600, "assignment_ttl_secs", 0)?)
                .filter(|ttl| !ttl.is_zero()),
            assignment_cache_entries: c.assignment_cache_entries.unwrap_or(100_000),
            assignment_flush: if c.assignment_fsync.unwrap_or(false) {
                vexil_store::Flush::OnCommit
            } else {
                vexil_store::Flush::Background
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn database_url_selects_postgres_and_must_be_one() {
        let load = |url: &str| {
            ServerConfig::load(None, env(&[("VEXIL_DATABASE_URL", url)]), PartialConfig::default())
                .map(|c| c.database_url)
        };
        assert_eq!(load("postgres://vexil@db:5432/vexil").unwrap().as_deref(), Some("postgres://vexil@db:5432/vexil"));
        assert!(load("postgresql://db/vexil").is_ok());
        assert_eq!(load("mysql://db/vexil").unwrap_err(), "database_url: must be a postgres:// or postgresql:// URL");
        let embedded = ServerConfig::load(None, env(&[]), PartialConfig::default()).unwrap();
        assert_eq!(embedded.database_url, None);
    }

    #[test]
    fn event_bus_and_archive_url_are_checked_at_load() {
        let load = |pairs: &[(&str, &str)]| ServerConfig::load(None, env(pairs), PartialConfig::default());
        let db = ("VEXIL_DATABASE_URL", "postgres://db/vexil");
        let config =
            load(&[("VEXIL_EVENT_BUS", "kafka://b:9092/events"), ("VEXIL_ARCHIVE_URL", "s3://bucket/vexil"), db])
                .unwrap();
        assert_eq!(config.event_bus.as_deref(), Some("kafka://b:9092/events"));
        assert_eq!(config.archive_url.as_deref(), Some("s3://bucket/vexil"));
        assert!(load(&[("VEXIL_EVENT_BUS", "kafka://b:9092"), db]).unwrap_err().starts_with("event_bus:"));
        assert!(load(&[("VEXIL_EVENT_BUS", "kafka://b:9092/events")]).unwrap_err().contains("needs database_url"));
        assert!(load(&[("VEXIL_ARCHIVE_URL", "/tmp/archive")]).unwrap_err().starts_with("archive_url:"));
    }

    /// A node may leave processing to the others only where there are others: the distributed mode.
    #[test]
    fn an_ingest_only_node_needs_the_event_bus() {
        let load = |pairs: &[(&str, &str)]| ServerConfig::load(None, env(pairs), PartialConfig::default());
        assert!(load(&[]).unwrap().event_processing, "nodes process events unless told not to");
        let error = load(&[("VEXIL_EVENT_PROCESSING", "false")]).unwrap_err();
        assert!(error.starts_with("event_processing:") && error.contains("needs event_bus"), "{error}");
        let distributed = [
            ("VEXIL_EVENT_PROCESSING", "false"),
            ("VEXIL_EVENT_BUS", "kafka://b:9092/events"),
            ("VEXIL_DATABASE_URL", "postgres://db/vexil"),
        ];
        assert!(!load(&distributed).unwrap().event_processing);
    }

    #[test]
    fn ingest_backpressure_has_a_positive_bound() {
        let load = |pairs: &[(&str, &str)]| ServerConfig::load(None, env(pairs), PartialConfig::default());
        assert_eq!(load(&[]).unwrap().event_max_lag_events, 20_000_000);
        assert_eq!(load(&[("VEXIL_EVENT_MAX_LAG_EVENTS", "5000")]).unwrap().event_max_lag_events, 5000);
        let error = load(&[("VEXIL_EVENT_MAX_LAG_EVENTS", "0")]).unwrap_err();
        assert!(error.starts_with("event_max_lag_events:"), "{error}");
    }

    #[test]
    fn archive_format_is_jsonl_or_parquet() {
        let load = |pairs: &[(&str, &str)]| ServerConfig::load(None, env(pairs), PartialConfig::default());
        assert_eq!(load(&[]).unwrap().archive_format, ArchiveFormat::Jsonl);
        assert_eq!(load(&[("VEXIL_ARCHIVE_FORMAT", "parquet")]).unwrap().archive_format, ArchiveFormat::Parquet);
        assert_eq!(
            load(&[("VEXIL_ARCHIVE_FORMAT", "csv")]).unwrap_err(),
            "archive_format: \"csv\" is neither jsonl nor parquet"
        );
    }

    #[test]
    fn flags_override_env_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vexil.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1000\"\nworkers = 3\nlog_level = \"warn\"\n").unwrap();
        let flags = PartialConfig { listen: Some("127.0.0.1:3000".into()), ..Default::default() };
        let config = ServerConfig::load(
            Some(&file),
            env(&[("VEXIL_LISTEN", "127.0.0.1:2000"), ("VEXIL_WORKERS", "2"), ("HOME", "/")]),
            flags,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 3000);
        assert_eq!(config.workers, 2);
        assert_eq!(config.log_level, "warn");
    }

    #[test]
    fn env_values_are_typed_and_lists_are_comma_separated() {
        let layer = PartialConfig::from_env(env(&[
            ("VEXIL_CORS_ENABLED", "false"),
            ("VEXIL_CORS_ALLOWED_ORIGINS", "https://a.example, https://b.example"),
            ("VEXIL_DATA_DIR", "/var/lib/vexil"),
            ("VEXIL_LOG_LEVEL", "vexil_server=debug,info"),
        ]))
        .unwrap();
        assert_eq!(layer.cors_enabled, Some(false));
        assert_eq!(layer.cors_allowed_origins.unwrap(), vec!["https://a.example", "https://b.example"]);
        assert_eq!(layer.data_dir.unwrap(), PathBuf::from("/var/lib/vexil"));
        assert_eq!(layer.log_level.unwrap(), "vexil_server=debug,info");
        let err = PartialConfig::from_env(env(&[("VEXIL_WORKERS", "many")])).unwrap_err();
        assert!(err.contains("VEXIL_WORKERS"), "{err}");
    }

    #[test]
    fn bad_settings_fail_with_their_name() {
        let check = |c: PartialConfig, needle: &str| {
            let err = ServerConfig::validate(c).unwrap_err();
            assert!(err.contains(needle), "{err}");
        };
        check(PartialConfig { listen: Some("localhost".into()), ..Default::default() }, "listen");
        check(PartialConfig { workers: Some(0), ..Default::default() }, "workers");
        check(PartialConfig { log_format: Some("xml".into()), ..Default::default() }, "log_format");
        check(PartialConfig { admin_key: Some("short".into()), ..Default::default() }, "admin_key");
        check(PartialConfig { max_body_bytes: Some(10), ..Default::default() }, "max_body_bytes");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vexil.toml");
        std::fs::write(&file, "listn = \"x\"\n").unwrap();
        let err = ServerConfig::load(Some(&file), Vec::new(), PartialConfig::default()).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }
}
