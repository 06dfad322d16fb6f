//! How a [`Client`](crate::Client) finds its server and its local fallbacks, and how it
//! retries. Every setting has a default fit for a server-side application.

use std::path::PathBuf;
use std::time::Duration;

/// Settings of a [`Client`](crate::Client), built from the server's address and a server key.
///
/// ```
/// use std::time::Duration;
/// use vexil_sdk::Options;
/// let options = Options::new("http://127.0.0.1:8080", "vx_srv_...")
///     .bootstrap_file("flags.json")
///     .cache_file("/var/cache/my-app/vexil-flags.json")
///     .poll_interval(Duration::from_secs(60));
/// assert_eq!(options.base_url(), "http://127.0.0.1:8080");
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) base_url: String,
    pub(crate) key: String,
    pub(crate) bootstrap_file: Option<PathBuf>,
    pub(crate) cache_file: Option<PathBuf>,
    pub(crate) streaming: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) stream_idle_timeout: Duration,
    pub(crate) min_retry_delay: Duration,
    pub(crate) max_retry_delay: Duration,
    pub(crate) assignment_cache_entries: usize,
    pub(crate) assignment_freshness: Duration,
    pub(crate) report_interval: Duration,
    pub(crate) event_capacity: usize,
}

impl Options {
    /// A client of the server at `base_url` (`http://host:port`, no trailing path) using a
    /// `server` key (it decides the environment whose flags the client receives).
    pub fn new(base_url: impl Into<String>, key: impl Into<String>) -> Options {
        Options {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            key: key.into(),
            bootstrap_file: None,
            cache_file: None,
            streaming: true,
            poll_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            stream_idle_timeout: Duration::from_secs(60),
            min_retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(30),
            assignment_cache_entries: 100_000,
            assignment_freshness: Duration::from_secs(60),
            report_interval: Duration::from_secs(10),
            event_capacity: 10_000,
        }
    }

    /// The server's address as given.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A flags file (JSON or YAML, SPEC 1.5: `{"flags": [...], "segments": [...]}`) served
    /// when the server cannot be reached at start and no cache file exists yet. Default: none.
    pub fn bootstrap_file(mut self, path: impl Into<PathBuf>) -> Options {
        self.bootstrap_file = Some(path.into());
        self
    }

    /// Where to keep the last configuration received from the server, so that a restart while
    /// the server is away serves it (it wins over the bootstrap file). Default: none.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Options {
        self.cache_file = Some(path.into());
        self
    }

    /// Polls `GET /v1/sdk/flags` every [`poll_interval`](Options::poll_interval) instead of
    /// holding the event stream open (for networks that cut long-lived connections).
    pub fn polling_only(mut self) -> Options {
        self.streaming = false;
        self
    }

    /// How often the configuration is polled when not streaming, and the longest wait between
    /// polls while the stream cannot be opened. Default 30 s.
    pub fn poll_interval(mut self, interval: Duration) -> Options {
        self.poll_interval = interval;
        self
    }

    /// The limit on one request (not on the stream, which is long-lived). Default 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Options {
        self.request_timeout = timeout;
        self
    }

    /// A stream that sends nothing, not even the server's heartbeat (every 15 s by default),
    /// for this long is taken as dead and reopened. Default 60 s.
    pub fn stream_idle_timeout(mut self, timeout: Duration) -> Options {
        self.stream_idle_timeout = timeout;
        self
    }

    /// The bounds of the exponential, jittered delay between reconnection attempts.
    /// Default 100 ms to 30 s.
    pub fn retry_delays(mut self, min: Duration, max: Duration) -> Options {
        self.min_retry_delay = min;
        self.max_retry_delay = max.max(min);
        self
    }

    /// How many (experiment, user) arms of flags that serve an experiment are kept at most;
    /// the least recently used make room. Default 100,000.
    pub fn assignment_cache_entries(mut self, entries: usize) -> Options {
        self.assignment_cache_entries = entries;
        self
    }

    /// How long a fetched arm is served before it is fetched again (in the background, still
    /// serving the old one meanwhile): the longest a pause, a conclusion or a context change
    /// takes to reach the SDK. Default 60 s.
    pub fn assignment_freshness(mut self, freshness: Duration) -> Options {
        self.assignment_freshness = freshness;
        self
    }

    /// How often evaluation counts and queued events are sent to the server. Default 10 s.
    pub fn report_interval(mut self, interval: Duration) -> Options {
        self.report_interval = interval;
        self
    }

    /// How many events wait to be sent at most; while the server is away longer than that
    /// takes to fill, further events are dropped and counted. Default 10,000.
    pub fn event_capacity(mut self, events: usize) -> Options {
        self.event_capacity = events;
        self
    }
}
