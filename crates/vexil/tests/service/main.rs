//! End-to-end tests of `vexil serve` over real HTTP on loopback: one test binary, one module
//! per area, all sharing the harness.

mod harness;

mod admin;
mod archive;
mod assign;
mod auth;
mod change_requests;
mod cli;
mod config;
mod console;
mod console_reads;
mod crash;
mod dlq;
mod edge;
mod enrichment;
mod environment_events;
mod environments;
mod evaluation;
mod events;
mod experiments;
mod http;
mod limits;
mod ofrep;
mod operators;
mod people;
mod promotion;
mod readme;
mod results;
mod safety;
mod scale;
mod sdk;
mod sdk_client;
mod sdk_differential;
