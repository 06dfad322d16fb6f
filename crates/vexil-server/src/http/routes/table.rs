//! The machinery of the route table: what a route declares ([`RouteSpec`]), how routes are
//! registered ([`Table`]), and how the registered routes become the router, with CORS wrapped
//! around the routes that declared it. The routes themselves are listed in [`super`].

use crate::http::auth::{self, Access};
use crate::http::state::AppState;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::Method;
use axum::response::Response;
use axum::routing::{on_service, MethodFilter, MethodRouter};
use axum::{Extension, Router};
use std::collections::BTreeMap;
use std::convert::Infallible;
use tower::{Layer, Service};
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use vexil_store::EntityKind;

/// One route as the OpenAPI document describes it.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    /// `None`: no key needed.
    pub access: Option<Access>,
    /// Whether browsers may call it cross-origin (when CORS is enabled); see [`RouteSpec::cors`].
    pub cors: bool,
    /// Whether its answer is compressed for clients that accept it; see [`RouteSpec::compressed`].
    pub compressed: bool,
    /// Whether a client key may come in the query string; see [`RouteSpec::key_in_query`].
    pub key_in_query: bool,
    pub tag: &'static str,
    pub summary: &'static str,
}

/// A route that browsers may not call cross-origin; [`RouteSpec::cors`] allows it.
pub fn spec(
    method: Method,
    path: &'static str,
    access: Option<Access>,
    tag: &'static str,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec { method, path, access, cors: false, compressed: false, key_in_query: false, tag, summary }
}

impl RouteSpec {
    /// Lets browsers call the route from other origins, when CORS is configured: for the routes
    /// a web page calls with a client key (evaluation, assignment, OFREP, event ingest).
    pub fn cors(mut self) -> RouteSpec {
        self.cors = true;
        self
    }

    /// Takes a client key as `?key=` too, for a route that browsers call with `EventSource`,
    /// which cannot send headers (the OFREP event stream).
    pub fn key_in_query(mut self) -> RouteSpec {
        self.key_in_query = true;
        self
    }

    /// Compresses the answer (gzip) when the request's `Accept-Encoding` allows it: for the
    /// large documents (the SDK configuration, bulk evaluations, exports, the admin lists the
    /// web console loads), where 10,000 flags are megabytes of JSON that compress about tenfold.
    pub fn compressed(mut self) -> RouteSpec {
        self.compressed = true;
        self
    }
}

/// Routes being registered, grouped by path (one method router per path, and whether any of
/// its routes allows CORS).
pub struct Table {
    state: AppState,
    paths: BTreeMap<&'static str, (MethodRouter<AppState>, bool)>,
    specs: Vec<RouteSpec>,
}

impl Table {
    pub fn new(state: AppState) -> Table {
        Table { state, paths: BTreeMap::new(), specs: Vec::new() }
    }

    pub fn add<H, T>(&mut self, spec: RouteSpec, handler: H) -> &mut Self
    where
        H: Handler<T, AppState> + Sync,
        T: 'static,
    {
        let service = handler.with_state(self.state.clone());
        self.insert(spec, service)
    }

    /// A route of the handlers shared by several kinds of document, told which kind it serves
    /// (read by [`crate::http::extract::Change`] and the handlers).
    pub fn add_document<H, T>(&mut self, kind: EntityKind, spec: RouteSpec, handler: H) -> &mut Self
    where
        H: Handler<T, AppState> + Sync,
        T: 'static,
    {
        let service = Layer::layer(&Extension(kind), handler.with_state(self.state.clone()));
        self.insert(spec, service)
    }

    /// Registers a route's service wrapped in what its spec asks for: the key check, then
    /// compression. The stack is built here, around the handler, rather than with axum's route
    /// layers, so that each route is boxed once: the router clones a route's boxed service for
    /// every request.
    fn insert<S>(&mut self, spec: RouteSpec, service: S) -> &mut Self
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        let route = match spec.access {
            Some(Access::Admin) if spec.method != Method::GET => {
                // After the key check: protected environments hold or refuse an editor's writes.
                let protected = axum::middleware::from_fn_with_state(
                    self.state.clone(),
                    crate::http::routes::change_requests::protect,
                )
                .layer(service);
                let checked = auth::RequireKeyLayer {
                    state: self.state.clone(),
                    access: Access::Admin,
                    key_in_query: spec.key_in_query,
                }
                .layer(protected);
                method_route(&spec, checked)
            }
            Some(access) => {
                let checked =
                    auth::RequireKeyLayer { state: self.state.clone(), access, key_in_query: spec.key_in_query }
                        .layer(service);
                method_route(&spec, checked)
            }
            None => method_route(&spec, service),
        };
        let entry =
            self.paths.remove(spec.path).map(|(existing, cors)| (existing.merge(route.clone()), cors || spec.cors));
        self.paths.insert(spec.path, entry.unwrap_or((route, spec.cors)));
        self.specs.push(spec);
        self
    }

    /// Every route registered.
    pub fn into_specs(self) -> Vec<RouteSpec> {
        self.specs
    }

    /// The routes, with CORS on the routes that allow it, and the API's 404 and 405 answers.
    pub fn into_router(self) -> Router {
        let cors = crate::http::middleware::cors(&self.state.config.cors);
        let (mut plain, mut browser) = (Router::new(), Router::new());
        for (path, (route, allows_cors)) in self.paths {
            if allows_cors && cors.is_some() {
                browser = browser.route(path, route);
            } else {
                plain = plain.route(path, route);
            }
        }
        // The 405 answer is set before CORS is layered on, so preflight (OPTIONS) requests, which
        // no route serves, reach the CORS layer wrapped around it rather than a bare 405.
        browser = browser.method_not_allowed_fallback(crate::http::error::method_not_allowed);
        if let Some(cors) = cors {
            browser = browser.layer(cors);
        }
        plain
            .method_not_allowed_fallback(crate::http::error::method_not_allowed)
            .merge(browser)
            .fallback(crate::http::error::not_found)
            .with_state(self.state)
    }
}

/// The route of one method, its answers compressed if the spec asks for it.
fn method_route<S>(spec: &RouteSpec, service: S) -> MethodRouter<AppState>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let filter = method_filter(&spec.method);
    if spec.compressed {
        // Answers of a few hundred bytes gain nothing from compression and would pay its cost.
        let worth_it = DefaultPredicate::new().and(SizeAbove::new(1024));
        on_service(filter, CompressionLayer::new().compress_when(worth_it).layer(service))
    } else {
        on_service(filter, service)
    }
}

fn method_filter(method: &Method) -> MethodFilter {
    MethodFilter::try_from(method.clone()).expect("the table uses standard methods")
}
