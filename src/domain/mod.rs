//! Typed domain values parsed from untrusted input: no HTTP, no SQL.

pub mod error_report;
pub mod message;
