//! Integration tests: one binary, real SQLite files, real processes.
mod admin;
mod app;
mod browser;
mod crash;
mod engine;
mod helpers;
mod postgres;
mod security;
