//! What `dataforest-operator` and `dataforest-emulator` share: the Data Forest wire
//! contract both ends must agree on (signature v2, the four operations and their paths),
//! and the process plumbing of both binaries (logging, duration flags, the stop signal,
//! HTTP serving). The operator's client types and the emulator's JSON stay apart on
//! purpose: that independence is what catches drift between them.

#![forbid(unsafe_code)]

pub mod duration;
pub mod operation;
pub mod serve;
pub mod sign;
pub mod signal;
pub mod telemetry;

pub use operation::Operation;
