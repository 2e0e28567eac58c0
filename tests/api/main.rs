//! Integration tests through the real server: one binary, one module per
//! capability (zero2prod's `tests/api/` layout).

#[path = "../common/mod.rs"]
mod common;

mod cli_config;
mod demo;
mod limits;
mod openapi;
mod ops;
mod shutdown;
mod static_binary;
mod storage;
