//! The layers every response goes through (SPEC 4): a request id (the client's `X-Request-Id`
//! or a fresh UUID) echoed on the response and carried by every log line of the request,
//! `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` (unless the route set its own:
//! the console's files), the body size limit, metrics,
//! and a panic guard that answers 500 in the API's error shape. CORS is applied per route by
//! the route table, only where browsers are meant to call.
//!
//! Before any route, the request's size is bounded (SPEC 4, configured in `[edge]`): a target
//! past `max_uri_bytes` is 414, headers past `max_header_bytes` are 431, and the body is read
//! whole within `body_timeout` (408) and `max_body_bytes` (413) before the handler runs (every
//! handler reads the whole body anyway), so a body trickled a byte at a time is cut off.
//!
//! The service-wide duties are one hand-written service, [`Edge`], rather than a stack of
//! generic layers: each of those (request id, propagation, two response headers, tracing,
//! metrics, panic guard) wrapped the next one's future, several boxed it, and the stack cost
//! several times the evaluation it carried. `Edge` does them all in one call and one future,
//! with no allocation beyond a generated request id.

use crate::config::{CorsConfig, EdgeConfig};
use crate::http::edge::edge_error;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::metrics::{RequestMetrics, RouteId};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::future::Either;
use http_body::Body as _;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};
use tracing::Span;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The routes wrapped in the service-wide duties: what `serve` runs.
pub type App = Edge<<DefaultBodyLimit as Layer<Router>>::Service>;

/// Wraps the routes in the service-wide duties.
///
/// They wrap the router once, as one concrete service, rather than through `Router::layer`,
/// which wraps every route in every layer.
pub fn apply(router: Router, state: &AppState) -> App {
    let paths = crate::http::routes::specs(state.clone()).into_iter().map(|spec| spec.path);
    let metrics = Arc::new(RequestMetrics::new(&state.metrics, paths));
    let bounds = RequestBounds { edge: state.config.edge, max_body_bytes: state.config.max_body_bytes };
    Edge { inner: DefaultBodyLimit::max(state.config.max_body_bytes).layer(router), metrics, bounds }
}

/// What [`Edge`] bounds a request by.
#[derive(Clone, Copy)]
struct RequestBounds {
    edge: EdgeConfig,
    max_body_bytes: usize,
}

impl RequestBounds {
    /// 414 or 431 for a request whose target or headers are past their limits.
    fn refuse(&self, request: &Request) -> Option<Response> {
        if uri_length(request.uri()) > self.edge.max_uri_bytes {
            return Some(edge_error(StatusCode::URI_TOO_LONG).into_response());
        }
        let header_bytes: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
        (header_bytes > self.edge.max_header_bytes)
            .then(|| edge_error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).into_response())
    }
}

/// The length of the request target as the client sent it (without writing it out).
fn uri_length(uri: &Uri) -> usize {
    uri.scheme_str().map_or(0, |scheme| scheme.len() + "://".len())
        + uri.authority().map_or(0, |authority| authority.as_str().len())
        + uri.path_and_query().map_or(0, |target| target.as_str().len())
}

/// The service-wide duties around the routes: request id, common headers, tracing span and
/// access log, request bounds, request metrics, panic guard.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    metrics: Arc<RequestMetrics>,
    bounds: RequestBounds,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let request_id = request.headers().get(&X_REQUEST_ID).cloned().unwrap_or_else(new_request_id);
        let method = request.method().clone();
        let route = self.metrics.route(request.uri().path());
        let span = tracing::info_span!(
            "request",
            request_id = request_id.to_str().unwrap_or_default(),
            method = %method,
            path = request.uri().path()
        );
        let answer = {
            let _entered = span.enter();
            if let Some(refusal) = self.bounds.refuse(&request) {
                Answer::Ready { response: Some(refusal) }
            } else if request.body().is_end_stream() {
                Answer::called(&mut self.inner, request)
            } else {
                let (parts, body) = request.into_parts();
                Answer::ReadingBody {
                    body: Limited::new(body, self.bounds.max_body_bytes).collect(),
                    deadline: None,
                    body_timeout: self.bounds.edge.body_timeout,
                    parts: Some(parts),
                    inner: Some(self.inner.clone()),
                }
            }
        };
        let done = Done { request_id, method, route, started, span, metrics: self.metrics.clone() };
        EdgeFuture { answer, done: Some(done) }
    }
}

pin_project! {
    /// The answer of [`Edge`]: the routes' response, or 500 if they panicked, with the common
    /// headers added and the request counted.
    pub struct EdgeFuture<S, F> {
        #[pin]
        answer: Answer<S, F>,
        done: Option<Done>,
    }
}

pin_project! {
    #[project = AnswerProjection]
    enum Answer<S, F> {
        /// Reading the body before calling the routes; the deadline is only set once the body
        /// is not there at the first look (a small body usually came with the headers).
        ReadingBody {
            #[pin]
            body: Collect<Limited<Body>>,
            deadline: Option<Pin<Box<Sleep>>>,
            body_timeout: Duration,
            parts: Option<Parts>,
            inner: Option<S>,
        },
        Pending { #[pin] future: F },
        Ready { response: Option<Response> },
    }
}

impl<S, F> Answer<S, F>
where
    S: Service<Request, Response = Response, Error = Infallible, Future = F>,
{
    /// The routes' answer to `request`, or 500 if calling them panicked.
    fn called(inner: &mut S, request: Request) -> Answer<S, F> {
        match catch_unwind(AssertUnwindSafe(|| inner.call(request))) {
            Ok(future) => Answer::Pending { future },
            Err(_) => Answer::Ready { response: Some(panicked()) },
        }
    }
}

impl<S, F> Future for EdgeFuture<S, F>
where
    S: Service<Request, Response = Response, Error = Infallible, Future = F>,
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.done.as_ref().map(|done| done.span.enter());
        let response = loop {
            match this.answer.as_mut().project() {
                AnswerProjection::ReadingBody { body, deadline, body_timeout, parts, inner } => {
                    let read = match body.poll(cx) {
                        Poll::Ready(read) => read,
                        Poll::Pending => {
                            let deadline = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(*body_timeout)));
                            if deadline.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            break edge_error(StatusCode::REQUEST_TIMEOUT).into_response();
                        }
                    };
                    let body = match read {
                        Ok(collected) => Body::from(collected.to_bytes()),
                        Err(e) if e.is::<LengthLimitError>() => {
                            break edge_error(StatusCode::PAYLOAD_TOO_LARGE).into_response()
                        }
                        Err(e) => {
                            break ApiError::bad_request("invalid_request", format!("reading the body failed: {e}"))
                                .into_response()
                        }
                    };
                    let parts = parts.take().expect("the body is read once");
                    let mut inner = inner.take().expect("the body is read once");
                    let called = Answer::called(&mut inner, Request::from_parts(parts, body));
                    this.answer.set(called);
                }
                AnswerProjection::Pending { future } => match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(Ok(response))) => break response,
                    Err(_) => break panicked(),
                },
                AnswerProjection::Ready { response } => {
                    break response.take().expect("an answered request is not polled again")
                }
            }
        };
        drop(_entered);
        let done = this.done.take().expect("an answered request is not polled again");
        Poll::Ready(Ok(done.finish(response)))
    }
}

/// What finishing a response needs.
struct Done {
    request_id: HeaderValue,
    method: Method,
    route: RouteId,
    started: Instant,
    span: Span,
    metrics: Arc<RequestMetrics>,
}

impl Done {
    fn finish(self, mut response: Response) -> Response {
        let elapsed = self.started.elapsed();
        self.metrics.record(self.route, &self.method, response.status(), elapsed);
        let headers = response.headers_mut();
        headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.entry(&X_REQUEST_ID).or_insert(self.request_id);
        log_answer(&self.span, &response, elapsed);
        response
    }
}

/// Logs the answer at `debug` (access logs are opt-in: `log_level = "debug"`).
fn log_answer(span: &Span, response: &Response, elapsed: Duration) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let _entered = span.enter();
        tracing::debug!(status = response.status().as_u16(), micros = elapsed.as_micros() as u64, "answered");
    }
}

fn panicked() -> Response {
    ApiError::internal("the server failed unexpectedly").into_response()
}

fn new_request_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

/// The CORS layer of the evaluation and OFREP routes, or `None` when CORS is disabled.
pub fn cors(config: &CorsConfig) -> Option<CrossOriginLayer> {
    if !config.enabled {
        return None;
    }
    let origins = if config.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(config.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(CrossOriginLayer(Arc::new(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("last-event-id"),
                X_REQUEST_ID.clone(),
            ])
            .expose_headers([header::ETAG, X_REQUEST_ID.clone()])
            .max_age(Duration::from_secs(3600)),
    )))
}

/// CORS for requests that carry an `Origin` (what browsers send cross-origin), and nothing for
/// those that do not: servers and SDKs never send one, and the CORS headers a request without
/// one would get (`Vary: origin, ...`) tell caches how to key a response, while every response
/// here is `Cache-Control: no-store`. Evaluation, the hottest route, is mostly called by servers.
/// The router clones a route's service for every request, so the CORS settings are shared
/// behind an `Arc` and a CORS service is only made for a request with an `Origin`.
#[derive(Clone)]
pub struct CrossOriginLayer(Arc<CorsLayer>);

impl<S: Clone> Layer<S> for CrossOriginLayer {
    type Service = CrossOrigin<S>;

    fn layer(&self, inner: S) -> CrossOrigin<S> {
        CrossOrigin { cors: self.0.clone(), inner }
    }
}

/// See [`CrossOriginLayer`].
#[derive(Clone)]
pub struct CrossOrigin<S> {
    cors: Arc<CorsLayer>,
    inner: S,
}

impl<S> Service<Request> for CrossOrigin<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<tower::util::Oneshot<Cors<S>, Request>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.headers().contains_key(header::ORIGIN) {
            Either::Left(tower::ServiceExt::oneshot(self.cors.layer(self.inner.clone()), request))
        } else {
            Either::Right(self.inner.call(request))
        }
    }
}
