//! zmot: a self-hosted review and feedback-loop monitor.
//!
//! The program is one pipeline with clear rooms: [`sources`] fetch and normalise into one
//! [`domain::Mention`] type, [`sentiment`] scores them, [`store`] (the only place that
//! writes SQL) keeps them, trends and rules read the store and decide alerts, [`notify`]
//! sends email through a persisted outbox; the [`scheduler`] drives it and the CLI reads it.

pub mod alerts;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod digest;
pub mod domain;
pub mod health;
pub mod import;
pub mod notify;
pub mod pipeline;
pub mod push;
pub mod redact;
pub mod rules;
pub mod scheduler;
pub mod sentiment;
pub mod sources;
pub mod store;
pub mod testutil;
pub mod trends;
pub mod web;
