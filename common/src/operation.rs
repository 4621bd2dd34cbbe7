//! The four AI Apps operations and the paths the gateway serves them on.

use std::fmt;

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

    /// The name in the API's path, also used in logs, metrics and the emulator's stats.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_found_again_by_its_path_and_nothing_else_is() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_path(op.path()), Some(op));
            assert!(op.path().ends_with(op.as_str()));
        }
        assert_eq!(Operation::from_path("/api/v2/aiapps/delete"), None);
        assert_eq!(Operation::from_path("/api/v2/aiapps/submit/"), None);
    }
}
