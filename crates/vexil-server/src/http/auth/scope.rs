//! The environment a request acts in (SPEC 9), and what an admin caller's role and environments
//! allow there.

use super::{Caller, ENV_HEADER};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::service::environments::Environment;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use vexil_store::{KeyKind, Role};

/// The environment's key as the `X-Vexil-Env` response header.
pub(super) fn env_header(environment: &Environment) -> HeaderValue {
    HeaderValue::from_str(&environment.key).expect("environment keys are header-safe")
}

/// The environment `caller` acts in on this request, or the refusal: 403 when a server or
/// client key names another environment than its own, 404 `environment_not_found` when the
/// environment does not exist (any more).
pub(super) fn acting_environment(
    state: &AppState,
    caller: &Caller,
    request: &mut Request,
) -> Result<Arc<Environment>, Box<Response>> {
    let named = named_environment(request);
    let environments = &state.environments;
    let wanted = match (caller.kind, named) {
        (KeyKind::Admin, Some(named)) => Some(Arc::<str>::from(named)),
        (KeyKind::Admin, None) => None,
        (_, named) => {
            let own = caller.environment.as_deref().unwrap_or(&environments.default().key);
            if let Some(named) = named.filter(|named| named != own) {
                let message =
                    format!("a {} key acts only in its environment \"{own}\", not in \"{named}\"", caller.kind);
                return Err(Box::new(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response()));
            }
            caller.environment.clone()
        }
    };
    let environment = match wanted {
        None => environments.default().clone(),
        Some(key) => environments.get(&key).ok_or_else(|| {
            let message = format!("environment \"{key}\" does not exist");
            Box::new(ApiError::not_found("environment_not_found", message).with_field("env").into_response())
        })?,
    };
    if caller.kind == KeyKind::Admin {
        if let Some(missing) = admin_lacks(caller, request, &environment.key) {
            return Err(Box::new(ApiError::new(StatusCode::FORBIDDEN, "forbidden", missing).into_response()));
        }
    }
    Ok(environment)
}

/// What an admin key lacks for this request, if anything (SPEC 9): `viewer` may read every
/// admin route, `editor` also write configuration, `owner` also keys and environments; a key
/// scoped to some environments acts only in them and never changes keys or environments.
/// Routes outside `/v1/admin/` (evaluation, results, …) need only the scope.
fn admin_lacks(caller: &Caller, request: &Request, environment: &str) -> Option<String> {
    let path = request.uri().path();
    if across_environments(path) {
        return None;
    }
    // People are an owner's to see and manage, as they hold roles like keys do.
    let people = path.starts_with("/v1/admin/users");
    let global = people || path.starts_with("/v1/admin/keys") || path.starts_with("/v1/admin/environments");
    let reads = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD) && !people;
    let needed = match () {
        _ if !path.starts_with("/v1/admin/") || reads => Role::Viewer,
        _ if global => Role::Owner,
        _ => Role::Editor,
    };
    let role = caller.role.unwrap_or(Role::Owner);
    if !role.includes(needed) {
        return Some(format!("this needs the {needed} role; {} the {role} role", caller.has()));
    }
    let scope = caller.environments.as_deref()?;
    let names = || scope.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
    if global && !reads {
        return Some(format!(
            "changing keys, environments or people needs the rights in every environment; {}'s environments are {}",
            caller.subject(),
            names()
        ));
    }
    if !global && !scope.iter().any(|e| &**e == environment) {
        return Some(format!(
            "{} may not act in environment \"{environment}\"; its environments are {}",
            caller.subject(),
            names()
        ));
    }
    None
}

/// Whether the route acts on environments named in its path or on every environment
/// (`/v1/admin/flags/{key}/environments`, `/v1/admin/environments/{to}/promote`): its handler
/// checks the caller's rights on each environment it reads or writes ([`Caller::lacks`]).
fn across_environments(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["v1", "admin", "flags", _, "environments"] | ["v1", "admin", "environments", _, "promote"]
    )
}

impl Caller {
    /// Who is refused, in a message: the key or the person.
    fn subject(&self) -> &'static str {
        if self.person {
            "this person"
        } else {
            "the key"
        }
    }

    /// What the caller has, in a message: `the key is an admin key with` / `this person has`.
    fn has(&self) -> &'static str {
        if self.person {
            "this person has"
        } else {
            "the key is an admin key with"
        }
    }

    /// What this admin caller lacks to act with the `needed` role in `environment`, if anything.
    pub fn lacks(&self, needed: Role, environment: &str) -> Option<String> {
        let role = self.role.unwrap_or(Role::Owner);
        if !role.includes(needed) {
            return Some(format!("this needs the {needed} role; {} the {role} role", self.has()));
        }
        let scope = self.environments.as_deref()?;
        if scope.iter().any(|e| &**e == environment) {
            return None;
        }
        let names = scope.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
        Some(format!("{} may not act in environment \"{environment}\"; its environments are {names}", self.subject()))
    }

    /// [`Caller::lacks`] as the API's 403.
    pub fn may(&self, needed: Role, environment: &str) -> Result<(), ApiError> {
        match self.lacks(needed, environment) {
            Some(missing) => Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", missing)),
            None => Ok(()),
        }
    }
}

/// The environment a request names with `X-Vexil-Env` or `?env=` (taken off the query), if any.
fn named_environment(request: &mut Request) -> Option<String> {
    let from_query = match request.uri().query() {
        Some(query) if query.split('&').any(|pair| pair.starts_with("env=")) => {
            let mut named = None;
            let rest: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .filter_map(|(name, value)| {
                    if name == "env" {
                        named = Some(value.into_owned());
                        None
                    } else {
                        Some((name.into_owned(), value.into_owned()))
                    }
                })
                .collect();
            let rest = form_urlencoded::Serializer::new(String::new()).extend_pairs(rest).finish();
            let path = request.uri().path();
            let path_and_query = if rest.is_empty() { path.to_owned() } else { format!("{path}?{rest}") };
            let mut parts = request.uri().clone().into_parts();
            parts.path_and_query = path_and_query.parse().ok();
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
            named
        }
        _ => None,
    };
    let from_header = request.headers().get(&ENV_HEADER).map(|v| v.to_str().unwrap_or_default().trim().to_owned());
    from_query.or(from_header)
}
