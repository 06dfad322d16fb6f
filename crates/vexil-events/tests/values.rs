//! Event values are exact: whatever f64 a client writes comes back, after the log, the DLQ or
//! the archive, as the same number. serde_json's default float parser is off by one unit in
//! the last place for about a tenth of 17-digit numbers; the workspace enables its
//! `float_roundtrip` parser, and this test fails without it.

use rand::{Rng, SeedableRng};
use vexil_events::Event;

#[test]
fn every_f64_survives_json_unchanged() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut checked = 0;
    while checked < 200_000 {
        let value = f64::from_bits(rng.gen());
        if !value.is_finite() {
            continue;
        }
        let text = serde_json::to_string(&value).unwrap();
        let back: f64 = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_bits(), value.to_bits(), "{text} read back as {back}");
        checked += 1;
    }
}

#[test]
fn an_event_value_keeps_every_digit() {
    for text in ["-519684.51526932395", "0.30000000000000004", "123456789.12345679", "2.2250738585072014e-308"] {
        let json = format!(
            r#"{{"event_id": "e1", "event": "purchase", "type": "track", "user_id": "u1",
                "timestamp": "2026-11-21T10:00:00Z", "value": {text}}}"#
        );
        let event: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(event.value, Some(text.parse::<f64>().unwrap()), "value {text}");
    }
}
