//! Request bodies as the service reads them, written here independently of the operator's
//! client types: if the two drift apart (a renamed field, a changed shape), the tests that
//! run the client against the emulator fail instead of both sides agreeing on a mistake.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Identifiers (`id`, `aiWorkspaceId`, `accountId`): Base62, at most this long.
pub const ID_MAX: usize = 22;
/// `namePrefix`: 2 to 8 characters.
pub const NAME_PREFIX: std::ops::RangeInclusive<usize> = 2..=8;
/// `resource.gpuCount`: 1 to 8.
pub const GPU_COUNT: std::ops::RangeInclusive<i64> = 1..=8;

/// A submit body with every documented field present.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitBody {
    pub ai_workspace_id: String,
    pub name_prefix: String,
    pub queue_name: String,
    pub data: Data,
    pub docker: Docker,
    pub resource: Resource,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Data {
    #[serde(default)]
    pub input: Vec<Value>,
    #[serde(default)]
    pub output: Vec<Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Docker {
    pub image: String,
    pub command: String,
    #[serde(default)]
    pub args: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub expose_tcp_ports: Vec<i64>,
    #[serde(default)]
    pub workdir: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    #[serde(default)]
    pub cpu_count: Option<i64>,
    #[serde(default)]
    pub gpu_count: Option<i64>,
    #[serde(default)]
    pub gpu_model: Option<String>,
    #[serde(default)]
    pub memory_mb: Option<i64>,
}

/// Reads a submit body as the service documents it: all six fields present, the
/// documented limits met. The error says what was wrong, for the emulator's log; the
/// caller answers with the service's own words.
pub fn parse_submit(body: &[u8]) -> Result<SubmitBody, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    for field in [
        "aiWorkspaceId",
        "namePrefix",
        "queueName",
        "data",
        "docker",
        "resource",
    ] {
        if value.get(field).is_none_or(Value::is_null) {
            return Err(format!("{field} is required"));
        }
    }
    let body: SubmitBody = serde_json::from_value(value).map_err(|e| e.to_string())?;
    body.check_documented_limits()?;
    Ok(body)
}

impl SubmitBody {
    /// Only what Data Forest documents: the operator's own, stricter bounds are its business.
    fn check_documented_limits(&self) -> Result<(), String> {
        let chars = |s: &str| s.chars().count();
        let id_len = chars(&self.ai_workspace_id);
        if !(1..=ID_MAX).contains(&id_len) {
            return Err(format!(
                "aiWorkspaceId: must be 1 to {ID_MAX} characters, got {id_len}"
            ));
        }
        let prefix_len = chars(&self.name_prefix);
        if !NAME_PREFIX.contains(&prefix_len) {
            return Err(format!(
                "namePrefix: must be {} to {} characters, got {prefix_len}",
                NAME_PREFIX.start(),
                NAME_PREFIX.end()
            ));
        }
        if self.queue_name.is_empty() {
            return Err("queueName: must not be empty".to_owned());
        }
        if self.docker.image.is_empty() {
            return Err("docker.image: is required".to_owned());
        }
        if self.docker.command.is_empty() {
            return Err("docker.command: is required".to_owned());
        }
        if let Some(gpus) = self.resource.gpu_count.filter(|n| !GPU_COUNT.contains(n)) {
            return Err(format!(
                "resource.gpuCount: must be {} to {}, got {gpus}",
                GPU_COUNT.start(),
                GPU_COUNT.end()
            ));
        }
        Ok(())
    }
}

/// Body of getDetail and kill.
#[derive(Deserialize)]
struct IdBody {
    id: String,
}

/// The `id` of a getDetail or kill body, if it is one the service would look up.
pub fn parse_id(body: &[u8]) -> Option<String> {
    let IdBody { id } = serde_json::from_slice(body).ok()?;
    (!id.is_empty() && id.len() <= ID_MAX).then_some(id)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Search {
    account_id: String,
}

#[derive(Deserialize)]
struct ListBody {
    search: Search,
}

/// The account id a getList body asks for.
pub fn parse_list(body: &[u8]) -> Option<String> {
    let ListBody { search } = serde_json::from_slice(body).ok()?;
    Some(search.account_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn valid() -> Value {
        json!({
            "aiWorkspaceId": "6ZKSGoSJMMwctK257nxgiL", "namePrefix": "ab", "queueName": "gpu",
            "data": {"input": [], "output": []}, "docker": {"image": "i", "command": "c"},
            "resource": {"gpuCount": 1}
        })
    }

    #[test]
    fn a_documented_submit_body_is_accepted() {
        let parsed = parse_submit(&body(valid())).unwrap();
        assert_eq!(parsed.name_prefix, "ab");
        assert_eq!(parsed.resource.gpu_count, Some(1));
    }

    #[test]
    fn a_submit_body_missing_a_field_or_breaking_a_limit_is_refused_with_a_reason() {
        let cases: [(&str, Value, &str); 8] = [
            ("/resource", Value::Null, "resource is required"),
            ("/data", Value::Null, "data is required"),
            ("/namePrefix", json!("a"), "namePrefix: must be 2 to 8"),
            (
                "/namePrefix",
                json!("abcdefghi"),
                "namePrefix: must be 2 to 8",
            ),
            (
                "/aiWorkspaceId",
                json!("x".repeat(23)),
                "aiWorkspaceId: must be 1 to 22",
            ),
            (
                "/resource/gpuCount",
                json!(9),
                "resource.gpuCount: must be 1 to 8",
            ),
            ("/docker/image", json!(""), "docker.image"),
            ("/docker/command", json!(""), "docker.command"),
        ];
        for (pointer, replacement, reason) in cases {
            let mut v = valid();
            *v.pointer_mut(pointer).unwrap() = replacement;
            let err = parse_submit(&body(v)).unwrap_err();
            assert!(err.contains(reason), "{pointer}: {err}");
        }
        assert!(parse_submit(b"<xml/>").unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn docker_env_is_an_object_of_strings_as_the_json_examples_show() {
        let mut v = valid();
        v["docker"]["env"] = json!({"A": "1", "EMPTY": ""});
        let parsed = parse_submit(&body(v.clone())).unwrap();
        assert_eq!(parsed.docker.env["A"], "1");
        assert_eq!(parsed.docker.env["EMPTY"], "");
        for env in [
            json!("A=1"),
            json!({"A": 1}),
            json!([{"name": "A", "value": "1"}]),
        ] {
            v["docker"]["env"] = env.clone();
            assert!(parse_submit(&body(v.clone())).is_err(), "{env}");
        }
    }

    #[test]
    fn limits_the_api_does_not_document_are_not_enforced() {
        let mut v = valid();
        v["resource"]["cpuCount"] = json!(100_000);
        v["docker"]["image"] = json!("i".repeat(5000));
        assert!(parse_submit(&body(v)).is_ok());
    }

    #[test]
    fn ids_longer_than_22_characters_or_empty_are_invalid() {
        assert_eq!(
            parse_id(&body(json!({"id": "abc"}))).as_deref(),
            Some("abc")
        );
        assert_eq!(parse_id(&body(json!({"id": "x".repeat(23)}))), None);
        assert_eq!(parse_id(&body(json!({"id": ""}))), None);
        assert_eq!(parse_id(&body(json!({"ID": "abc"}))), None);
    }

    #[test]
    fn a_list_body_names_its_account() {
        assert_eq!(
            parse_list(&body(json!({"search": {"accountId": "acct"}}))).as_deref(),
            Some("acct")
        );
        assert_eq!(parse_list(&body(json!({"accountId": "acct"}))), None);
    }
}
