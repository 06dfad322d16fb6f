//! Loads an arbitrary flags document (JSON or YAML) and evaluates every flag for a few users
//! and an arbitrary context. Nothing may panic, and a document that loads must survive a round
//! trip (export, reload) with identical results.
//!
//! Input: the document, optionally followed by a line `---context` and a JSON context object.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use vexil_core::{Context, FlagSet, Format};

const USERS: [&str; 4] = ["user_1", "", " ", "ünïcødé"];
/// The evaluation time (milliseconds since the epoch) that schedules are judged at.
const NOW_MILLIS: i64 = 1_796_000_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (document, context) = text.split_once("\n---context\n").unwrap_or((&text, "{}"));
    let format = if document.trim_start().starts_with('{') { Format::Json } else { Format::Yaml };
    let Ok(set) = FlagSet::from_text(document, format) else { return };
    let attributes: Map<String, Value> = serde_json::from_str(context).unwrap_or_default();

    let exported = serde_json::to_value(set.document()).expect("a document always serializes");
    let reloaded = FlagSet::from_value(&exported).unwrap_or_else(|e| panic!("export does not reload: {e}\n{exported}"));

    for user in USERS {
        let ctx = Context::new(user, &attributes);
        let first = set.evaluate_all(&ctx, NOW_MILLIS).map(|all| all.iter().map(|r| (r.variant, r.reason)).collect::<Vec<_>>());
        let again = reloaded.evaluate_all(&ctx, NOW_MILLIS).map(|all| all.iter().map(|r| (r.variant, r.reason)).collect::<Vec<_>>());
        assert_eq!(first, again, "round trip changed results for {user:?}");
        for flag in set.flags() {
            let _ = set.evaluate(&flag.key, &ctx, NOW_MILLIS);
        }
    }
});
