//! The weekly trend digest: one email per watch and week with charts, what drives
//! negativity and where in the customer journey it hurts.
//!
//! Building blocks: [`charts`] draws the inline PNG charts, [`drivers`] finds the terms
//! over-represented in this week's negative mentions, [`journey`] maps a text or a term to
//! a stage of the customer journey; [`report`] computes the figures from the store,
//! renders the email and queues it once per watch and week.

pub mod charts;
pub mod drivers;
pub mod journey;
pub mod report;

pub use report::{compute, preview, queue, render, Digest, Queued};
