//! Arbitrary bytes as a cost budget (the body of `POST /v1/admin/budgets`) and a script of
//! readings and times: decoded and validated as the API does, then checked as the scheduler
//! does. See `vexil_server::fuzz::budget`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vexil_server::fuzz::budget(data);
});
