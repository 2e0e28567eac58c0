//! Knowledge about the eSight platform shared by the delivery workers and the
//! simulator: no HTTP client here, only what eSight's answers mean.

pub mod status;
