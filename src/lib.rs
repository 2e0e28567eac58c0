//! energyload: one binary that takes energy-meter messages from data
//! producers, stores them durably in SQLite and delivers them to eSight.
//! See `ARCHITECTURE.md` for the map of modules and threads.

pub mod access_log;
pub mod admin_ui;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod build_info;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod domain;
pub mod esight;
pub mod housekeeping;
pub mod http;
pub mod inbox;
pub mod ingest;
pub mod invalid_traffic;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod replication;
pub mod simulator;
pub mod storage;
pub mod systemd_notify;
pub mod users;
