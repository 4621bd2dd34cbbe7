//! The Data Forest AI Apps API: signing, bodies, errors, and the HTTP client behind a trait.

pub mod budget;
pub mod client;
pub mod error;
pub mod name_prefix;
pub mod types;
pub mod validate;

pub use client::{
    ClientBuildError, ClientConfig, DataForestApi, DataForestClient, PreparedRequest, RetryPolicy,
};
pub use dataforest_common::Operation;
pub use dataforest_common::sign;
pub use error::{ApiError, TransportKind};
pub use sign::{Credentials, SecretKey};
pub use types::{
    AppDetail, AppSummary, Container, KillResponse, ListResponse, SubmitDocker, SubmitEnv,
    SubmitRequest, SubmitResponse, is_terminal_state,
};

/// The public Data Forest gateway.
pub const DEFAULT_ENDPOINT: &str = "https://df.apigw.ntruss.com";
