//! Arbitrary bytes as a rollout plan (the body of `PUT /v1/admin/flags/{key}/rollout-plan`), a
//! flag and a script of readings, times and actions: decoded and validated as the API does,
//! then stepped through its lifecycle and the scheduler's decisions. See
//! `vexil_server::fuzz::rollout_plan`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vexil_server::fuzz::rollout_plan(data);
});
