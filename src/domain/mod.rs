//! Typed domain values, free of HTTP and SQL: input is parsed into these
//! types once at the edge, and everything behind the edge can rely on them.

pub mod user;
