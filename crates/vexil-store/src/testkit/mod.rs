//! The conformance suite: the behaviour every [`Store`] backend must show, written once against
//! the traits so that each backend runs it unchanged.
//!
//! A backend provides a [`TestBackend`] — one empty data set that can be opened several times,
//! the way several processes open one database — and instantiates the suite in a test file:
//!
//! ```text
//! async fn backend() -> MyBackend { MyBackend::new_empty().await }
//! vexil_store::conformance_suite!(backend);
//! ```
//!
//! That expands to one `#[tokio::test]` per check (the test crate needs `tokio` with the
//! `macros` and `rt-multi-thread` features), each on a fresh backend. The checks are public
//! too, for a backend that wants to call them its own way.

mod assignments;
mod audit;
mod documents;
mod environments;
mod keys;
pub mod postgres;
mod users;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::{Backend, ChangeMeta, EntityKind, Scoped, Store, StoredDocument, Write, DEFAULT_ENVIRONMENT};

/// The value of a variable that names something a test needs from outside the process (an
/// engine, a tool); `how` says what sets it.
///
/// A missing variable fails the test: a run that did not exercise the engine must never look
/// green. Only with `VEXIL_TEST_ALLOW_SKIPS=1` (a local run without the engines) does the test
/// skip instead: it returns `None` and records the test's name in the file that
/// `VEXIL_TEST_SKIP_LOG` names, so `scripts/test.sh` reports it as skipped rather than passed.
pub fn required_variable(variable: &str, how: &str) -> Option<String> {
    if let Ok(value) = std::env::var(variable) {
        if !value.is_empty() {
            return Some(value);
        }
    }
    if std::env::var("VEXIL_TEST_ALLOW_SKIPS").as_deref() != Ok("1") {
        panic!("{variable} is not set ({how}); VEXIL_TEST_ALLOW_SKIPS=1 skips this test instead")
    }
    // libtest names each test's thread after the test; the log is counted by distinct names.
    let test = std::thread::current().name().unwrap_or("an unnamed test").to_string();
    eprintln!("skipped {test}: {variable} is not set ({how})");
    if let Ok(log) = std::env::var("VEXIL_TEST_SKIP_LOG") {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot open VEXIL_TEST_SKIP_LOG {log}: {e}"));
        writeln!(file, "{test}").unwrap_or_else(|e| panic!("cannot write VEXIL_TEST_SKIP_LOG {log}: {e}"));
    }
    None
}

pub use assignments::*;
pub use audit::*;
pub use documents::*;
pub use environments::*;
pub use keys::*;
pub use users::*;

/// One empty data set of a backend, for one check.
#[async_trait::async_trait]
pub trait TestBackend: Send + Sync {
    /// Opens a new handle on the data set. Handles must share nothing in memory, exactly as
    /// two processes would not, so what one sees of another's changes went through storage.
    async fn open_backend(&self) -> Arc<dyn Backend>;

    /// A new handle on the data set's default environment, where most checks work.
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(Scoped::new(self.open_backend().await, DEFAULT_ENVIRONMENT))
    }

    /// Whether `needle` occurs anywhere in what the backend persisted (files, tables): the
    /// suite checks that secrets never do.
    async fn persisted_data_contains(&self, needle: &str) -> bool;
}

/// Expands to one `#[tokio::test]` per conformance check, each given a fresh backend by
/// `$new_backend`, an async function (a path) returning a [`TestBackend`].
///
/// `conformance_suite!(optional $new_backend)` takes a function returning an `Option` instead,
/// for a backend on an external server: `None` skips the checks (the function says why).
#[macro_export]
macro_rules! conformance_suite {
    ($new_backend:path) => {
        $crate::conformance_suite!(@checks $new_backend, ::std::option::Option::Some);
    };
    (optional $new_backend:path) => {
        $crate::conformance_suite!(@checks $new_backend, ::std::convert::identity);
    };
    (@checks $new_backend:path, $as_option:path) => {
        $crate::__conformance_checks!(
            $new_backend, $as_option;
            documents_round_trip,
            documents_list_by_kind_in_key_order,
            shown_documents_are_the_listed_documents_as_the_api_shows_them,
            create_of_an_existing_document_fails,
            expected_version_guards_updates_and_deletes,
            missing_documents_are_not_found,
            upsert_creates_then_replaces,
            recreated_document_gets_a_new_identity,
            batch_writes_see_earlier_writes,
            failed_batch_changes_nothing,
            writes_are_audited_with_before_and_after,
            audit_query_filters_limits_and_pages,
            audit_records_other_actions,
            revision_grows_with_each_change,
            watch_sees_own_changes_at_once,
            watch_sees_changes_of_another_handle,
            keys_create_list_authenticate_revoke,
            key_secrets_are_stored_only_hashed,
            imported_key_authenticates,
            first_assignment_wins,
            expired_assignment_is_replaced_and_purged,
            assign_many_keeps_input_order,
            concurrent_first_assignments_agree,
            a_fresh_store_has_the_production_environment,
            environments_keep_documents_and_audit_apart,
            deleting_an_environment_deletes_what_it_holds,
            keys_carry_their_environment,
            changes_since_lists_what_changed_in_the_environment,
            users_are_created_listed_changed_and_audited,
            sessions_last_until_they_expire_end_or_their_user_is_disabled,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks {
    ($new_backend:path, $as_option:path; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let ::std::option::Option::Some(backend) = $as_option($new_backend().await) else {
                    return;
                };
                $crate::testkit::$check(&backend).await;
            }
        )+
    };
}

/// How long a change committed through another handle may take to be noticed. The spec gives
/// a configuration change 1 s to reach every node; the slack is for loaded CI machines.
const CROSS_PROCESS_NOTICE: Duration = Duration::from_secs(3);

fn meta() -> ChangeMeta {
    ChangeMeta::new("key_tester").with_reason("conformance")
}

fn body(key: &str, n: u64) -> Value {
    json!({"key": key, "n": n, "tags": ["t"]})
}

fn create(kind: EntityKind, key: &str, n: u64) -> Write {
    Write::Create { kind, key: key.into(), body: body(key, n) }
}

/// Applies one write that must succeed and return a document.
async fn apply_one(store: &dyn Store, write: Write) -> StoredDocument {
    let mut docs = store.apply(vec![write], &meta()).await.expect("write");
    assert_eq!(docs.len(), 1, "one result per write");
    docs.pop().unwrap().expect("a stored document")
}

/// Waits until the watched revision reaches `target`.
async fn wait_for_revision(rx: &mut watch::Receiver<u64>, target: u64) {
    let reached =
        tokio::time::timeout(CROSS_PROCESS_NOTICE, rx.wait_for(|r| *r >= target)).await.map(|waited| waited.is_ok());
    match reached {
        Ok(true) => {}
        Ok(false) => panic!("the watch channel closed while its store was alive"),
        Err(_) => {
            panic!("watch showed revision {} and did not reach {target} within {CROSS_PROCESS_NOTICE:?}", *rx.borrow())
        }
    }
}
