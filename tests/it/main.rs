//! Integration tests: one binary, real SQLite files, real processes.
mod admin;
mod app;
mod crash;
mod engine;
mod helpers;
mod postgres;
