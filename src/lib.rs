//! dataforest-operator: runs `AiApp` custom resources as GPU jobs on NAVER Cloud Data Forest.

#![forbid(unsafe_code)]

pub mod attempts;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod dataforest;
pub mod env_from;
pub mod health;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod reasons;
pub mod run;
pub mod shard;
pub mod status;
pub mod submit;
pub mod summary;
pub mod transition;

pub use dataforest_common::telemetry;

/// Installs the one rustls crypto provider of the process (ring), before any TLS client
/// is built, so that kube and reqwest never disagree about it.
pub fn install_crypto_provider() {
    // Err means another caller installed it first, which is the same provider here.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
