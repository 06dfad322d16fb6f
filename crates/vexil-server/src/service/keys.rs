//! API keys as SPEC 9 grants them: a server or client key acts in one environment, an admin key
//! has a role and the environments it may act in. The checks of a new key, shared by the admin
//! API and the CLI.

use vexil_store::{KeyGrant, KeyKind};

/// Why a new key cannot be made as asked: the field, whether it names an unknown environment
/// (404 rather than 400 over HTTP), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct GrantError {
    pub field: String,
    pub unknown_environment: bool,
    pub message: String,
}

impl GrantError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> GrantError {
        GrantError { field: field.into(), unknown_environment: false, message: message.into() }
    }

    fn unknown(field: impl Into<String>, environment: &str) -> GrantError {
        let message = format!("environment \"{environment}\" does not exist");
        GrantError { field: field.into(), unknown_environment: true, message }
    }
}

/// Checks a new key's name and grant; `exists` tells whether an environment exists. Returns the
/// name as stored (trimmed).
pub fn check_new_key<'a>(
    kind: KeyKind,
    name: &'a str,
    grant: &KeyGrant,
    exists: impl Fn(&str) -> bool,
) -> Result<&'a str, GrantError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(GrantError::invalid("name", "name must be 1 to 128 characters"));
    }
    if let Some(environment) = &grant.environment {
        if kind == KeyKind::Admin {
            let message = "an admin key has no environment: it names one on each request with ?env= or X-Vexil-Env";
            return Err(GrantError::invalid("environment", message));
        }
        if !exists(environment) {
            return Err(GrantError::unknown("environment", environment));
        }
    }
    if kind != KeyKind::Admin {
        for (field, given) in [("role", grant.role.is_some()), ("environments", grant.environments.is_some())] {
            if given {
                let message = format!("{field} is for admin keys; a {kind} key acts in its environment");
                return Err(GrantError::invalid(field, message));
            }
        }
    }
    if let Some(list) = &grant.environments {
        check_scope(list, exists)?;
    }
    Ok(name)
}

/// Checks the environments an admin key or a person may act in: at least one, each existing.
pub fn check_scope(environments: &[String], exists: impl Fn(&str) -> bool) -> Result<(), GrantError> {
    if environments.is_empty() {
        let message = "environments must name at least one environment, or be null for every one";
        return Err(GrantError::invalid("environments", message));
    }
    if let Some((i, unknown)) = environments.iter().enumerate().find(|(_, e)| !exists(e)) {
        return Err(GrantError::unknown(format!("environments[{i}]"), unknown));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vexil_store::Role;

    #[test]
    fn grants_follow_the_kind_of_key() {
        let exists = |e: &str| e == "staging";
        let staging = KeyGrant::in_environment("staging");
        assert_eq!(check_new_key(KeyKind::Server, " web ", &staging, exists), Ok("web"));
        let error = check_new_key(KeyKind::Client, "web", &KeyGrant::in_environment("qa"), exists).unwrap_err();
        assert_eq!((error.field.as_str(), error.unknown_environment), ("environment", true));
        assert_eq!(check_new_key(KeyKind::Admin, "ops", &staging, exists).unwrap_err().field, "environment");
        let viewer = KeyGrant { role: Some(Role::Viewer), ..KeyGrant::default() };
        assert_eq!(check_new_key(KeyKind::Server, "web", &viewer, exists).unwrap_err().field, "role");
        let scoped = KeyGrant { environments: Some(vec!["staging".into(), "qa".into()]), ..KeyGrant::default() };
        assert_eq!(check_new_key(KeyKind::Admin, "ops", &scoped, exists).unwrap_err().field, "environments[1]");
        assert_eq!(check_new_key(KeyKind::Admin, " ", &KeyGrant::default(), exists).unwrap_err().field, "name");
    }
}
