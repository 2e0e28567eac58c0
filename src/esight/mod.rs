//! Knowledge about the eSight platform shared by the delivery workers and the
//! simulator: no HTTP client here, only what eSight's answers mean
//! (`status`), what a failure code means to an operator and whether a retry
//! can succeed (`failure_cause`), and since when eSight fails (`reachability`).

pub mod failure_cause;
pub mod reachability;
pub mod status;
