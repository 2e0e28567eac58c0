//! Typed domain values parsed from untrusted input, free of HTTP and SQL:
//! input is parsed into these types once at the edge, and everything behind
//! the edge can rely on them.

pub mod api_key_name;
pub mod attention;
pub mod error_report;
pub mod message;
pub mod user;
