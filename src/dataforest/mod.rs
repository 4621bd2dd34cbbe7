//! The Data Forest AI Apps API: signing, bodies, errors, and the HTTP client behind a trait.

pub mod client;
pub mod error;
pub mod name_prefix;
pub mod sign;
pub mod types;
pub mod validate;

use std::fmt;

pub use client::{
    ClientBuildError, ClientConfig, DataForestApi, DataForestClient, PreparedRequest, RetryPolicy,
};
pub use error::{ApiError, TransportKind};
pub use sign::{Credentials, SecretKey};
pub use types::{
    AppDetail, AppSummary, Container, KillResponse, ListResponse, SubmitRequest, SubmitResponse,
    is_terminal_state,
};

/// The public Data Forest gateway.
pub const DEFAULT_ENDPOINT: &str = "https://df.apigw.ntruss.com";

/// The four AI Apps operations; every one is a signed `POST` with a JSON body.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    Submit,
    GetDetail,
    GetList,
    Kill,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Submit,
        Operation::GetDetail,
        Operation::GetList,
        Operation::Kill,
    ];

    /// The name in the API's path, also used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Submit => "submit",
            Operation::GetDetail => "getDetail",
            Operation::GetList => "getList",
            Operation::Kill => "kill",
        }
    }

    /// Path below the endpoint's base path.
    pub fn path(self) -> &'static str {
        match self {
            Operation::Submit => "/api/v2/aiapps/submit",
            Operation::GetDetail => "/api/v2/aiapps/getDetail",
            Operation::GetList => "/api/v2/aiapps/getList",
            Operation::Kill => "/api/v2/aiapps/kill",
        }
    }

    pub fn from_path(path: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.path() == path)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
