//! Integration tests through the real server: one binary, one module per
//! capability (zero2prod's `tests/api/` layout).

#[path = "../common/mod.rs"]
mod common;

mod api_fuzz_findings;
mod apikey_rates;
mod apikeys;
mod attention;
mod audit;
mod cli_config;
mod cli_identity;
mod cli_unlock;
mod concurrency;
mod crash;
mod db_cap;
mod delivery;
mod demo;
mod deploy_kubernetes;
mod deploy_systemd;
mod flood;
mod guard;
mod inbox;
mod ingest;
mod limits;
mod login;
mod login_hardening;
mod logs;
mod messages;
mod metrics;
mod openapi;
mod ops;
mod outage;
mod passwords;
mod reload;
mod replication;
mod reports;
mod restore;
mod retention;
mod sd_notify;
mod secrets;
mod session_probe;
mod shutdown;
mod startup;
mod static_binary;
mod storage;
mod tls;
mod tokens;
mod upgrade;
mod users;
