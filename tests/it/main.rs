//! Integration tests: one binary, real SQLite files, real processes.
mod admin;
mod app;
mod bench;
mod browser;
mod crash;
mod engine;
mod hardening;
mod helpers;
mod input;
mod leases;
mod nodes;
mod postgres;
mod regressions;
mod secrets;
mod security;
mod streams;
mod wakeup;
