//! The web console in a real browser: each test starts a real `vexil serve` (the service
//! tests' harness), seeds what it needs through the HTTP API with the admin key, and drives
//! headless Chromium through the console as a person would, checking what the page shows and
//! what the API then answers. One browser session per test.

// The service tests' harness, shared rather than copied; this binary uses part of it.
#[path = "../service/harness.rs"]
#[allow(dead_code)]
mod harness;

mod browser;

mod access;
mod audit;
mod environments;
mod events;
mod experiments;
mod flags;
mod owners;
mod safety;
mod weight;
