//! The engines of the distributed mode as tests find them, and a database of its own for each
//! test on the PostgreSQL server that `VEXIL_TEST_DATABASE_URL`
//! names (`scripts/test.sh` starts a throwaway cluster and sets it), for the store's
//! conformance checks and the distributed-mode tests alike.

use std::sync::atomic::{AtomicU32, Ordering};

/// Creates an empty database on the test server and returns its URL. A missing server fails the
/// test, or skips it (`None`) under `VEXIL_TEST_ALLOW_SKIPS=1`: see [`engine_variable`].
pub async fn fresh_database() -> Option<String> {
    let server = engine_variable("VEXIL_TEST_DATABASE_URL", "postgres.sh")?;
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to VEXIL_TEST_DATABASE_URL: {e}"));
    tokio::spawn(connection);
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let name = format!("vexil_test_{}_{nanos}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create a test database");
    Some(with_database(&server, &name))
}

/// The value of a variable naming a test engine that `scripts/services/<script>` starts (and
/// `scripts/test.sh` runs); see [`super::required_variable`] for what happens when it is missing.
pub fn engine_variable(variable: &str, script: &str) -> Option<String> {
    super::required_variable(variable, &format!("scripts/services/{script} starts the engine; scripts/test.sh runs it"))
}

/// `url` with its database name replaced (`postgres://user@host:port/name?options`).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced() {
        let with = super::with_database;
        assert_eq!(with("postgres://u@h:1/postgres", "t"), "postgres://u@h:1/t");
        assert_eq!(with("postgres://u@h:1", "t"), "postgres://u@h:1/t");
        assert_eq!(with("postgresql://u:p@h/db?sslmode=disable", "t"), "postgresql://u:p@h/t?sslmode=disable");
    }
}
