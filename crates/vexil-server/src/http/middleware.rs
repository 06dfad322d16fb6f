//! The layers every response goes through (SPEC 4): a request id (the client's `X-Request-Id`
//! or a fresh UUID) echoed on the response and carried by every log line of the request,
//! `X-Content-Type-Options: nosniff`, `Cache-Control: no-store`, the body size limit, metrics,
//! and a panic guard that answers 500 in the API's error shape. CORS is applied per route by
//! the route table, only where browsers are meant to call.
//!
//! The service-wide duties are one hand-written service, [`Edge`], rather than a stack of
//! generic layers: each of those (request id, propagation, two response headers, tracing,
//! metrics, panic guard) wrapped the next one's future, several boxed it, and the stack cost
//! several times the evaluation it carried. `Edge` does them all in one call and one future,
//! with no allocation beyond a generated request id.

use crate::config::CorsConfig;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::metrics::{RequestMetrics, RouteId};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::future::Either;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
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
    Edge { inner: DefaultBodyLimit::max(state.config.max_body_bytes).layer(router), metrics }
}

/// The service-wide duties around the routes: request id, common headers, tracing span and
/// access log, request metrics, panic guard.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    metrics: Arc<RequestMetrics>,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

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
            match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
                Ok(future) => Answer::Pending { future },
                Err(_) => Answer::Panicked,
            }
        };
        EdgeFuture {
            answer,
            done: Some(Done { request_id, method, route, started, span, metrics: self.metrics.clone() }),
        }
    }
}

pin_project! {
    /// The answer of [`Edge`]: the routes' response, or 500 if they panicked, with the common
    /// headers added and the request counted.
    pub struct EdgeFuture<F> {
        #[pin]
        answer: Answer<F>,
        done: Option<Done>,
    }
}

pin_project! {
    #[project = AnswerProjection]
    enum Answer<F> {
        Pending { #[pin] future: F },
        Panicked,
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

impl<F> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.answer.project() {
            AnswerProjection::Pending { future } => {
                let _entered = this.done.as_ref().map(|done| done.span.enter());
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(Ok(response))) => response,
                    Err(_) => panicked(),
                }
            }
            AnswerProjection::Panicked => panicked(),
        };
        let done = this.done.take().expect("an answered request is not polled again");
        Poll::Ready(Ok(done.finish(response)))
    }
}

impl Done {
    fn finish(self, mut response: Response) -> Response {
        let elapsed = self.started.elapsed();
        self.metrics.record(self.route, &self.method, response.status(), elapsed);
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
    Some(CrossOriginLayer(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("x-api-key"),
                X_REQUEST_ID.clone(),
            ])
            .expose_headers([header::ETAG, X_REQUEST_ID.clone()])
            .max_age(Duration::from_secs(3600)),
    ))
}

/// CORS for requests that carry an `Origin` (what browsers send cross-origin), and nothing for
/// those that do not: servers and SDKs never send one, and the CORS headers a request without
/// one would get (`Vary: origin, ...`) tell caches how to key a response, while every response
/// here is `Cache-Control: no-store`. Evaluation, the hottest route, is mostly called by servers.
#[derive(Clone)]
pub struct CrossOriginLayer(CorsLayer);

impl<S: Clone> Layer<S> for CrossOriginLayer {
    type Service = CrossOrigin<S>;

    fn layer(&self, inner: S) -> CrossOrigin<S> {
        CrossOrigin { browser: self.0.layer(inner.clone()), plain: inner }
    }
}

/// See [`CrossOriginLayer`].
#[derive(Clone)]
pub struct CrossOrigin<S> {
    browser: Cors<S>,
    plain: S,
}

impl<S> Service<Request> for CrossOrigin<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<<Cors<S> as Service<Request>>::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.browser.poll_ready(cx)?.is_pending() {
            return Poll::Pending;
        }
        self.plain.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.headers().contains_key(header::ORIGIN) {
            Either::Left(self.browser.call(request))
        } else {
            Either::Right(self.plain.call(request))
        }
    }
}
