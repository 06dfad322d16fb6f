//! Arbitrary bytes as an experiment (the body of `POST /v1/admin/experiments`), a flags
//! document, a context and a script: decoded, validated and compiled as the service does, then
//! users placed, metric filters applied, and lifecycle calls and replacements made. See
//! `vexil_server::fuzz::experiment`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vexil_server::fuzz::experiment(data);
});
