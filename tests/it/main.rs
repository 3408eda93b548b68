//! Integration tests: one binary, real SQLite files, real processes.
mod crash;
mod engine;
mod helpers;
mod postgres;
