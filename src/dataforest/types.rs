//! Request and response bodies of the AI Apps API, parsed leniently: the service is
//! loosely documented, so every response field is optional and unknown values are kept.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crd::{AiAppData, AiAppResource, AiAppSpec};

/// The body of `submit`: the six submitted fields of an AiApp, with the prefix resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubmitRequest {
    pub ai_workspace_id: String,
    pub name_prefix: String,
    pub queue_name: String,
    pub data: AiAppData,
    pub docker: SubmitDocker,
    pub resource: AiAppResource,
}

impl SubmitRequest {
    /// Builds the body from a spec without `docker.envFrom` (its env is `docker.env`);
    /// `name_prefix` is the one the caller resolved (the spec's own, or a derived one) so
    /// that it can be recorded before the call. A spec with `envFrom` needs
    /// [`SubmitRequest::with_env`]: only the operator reads Secrets.
    pub fn from_spec(spec: &AiAppSpec, name_prefix: &str) -> Self {
        debug_assert!(
            spec.docker.env_from.is_empty(),
            "envFrom is resolved by the operator: use SubmitRequest::with_env"
        );
        Self::with_env(spec, name_prefix, SubmitEnv(spec.docker.env.clone()))
    }

    /// Builds the body from a spec and the env to send: `docker.env` merged over what
    /// `docker.envFrom` read (see [`crate::env_from`]). `envFrom` itself is never sent.
    pub fn with_env(spec: &AiAppSpec, name_prefix: &str, env: SubmitEnv) -> Self {
        let docker = &spec.docker;
        Self {
            ai_workspace_id: spec.ai_workspace_id.to_string(),
            name_prefix: name_prefix.to_owned(),
            queue_name: spec.queue_name.to_string(),
            data: spec.data.clone(),
            docker: SubmitDocker {
                image: docker.image.clone(),
                command: docker.command.clone(),
                args: docker.args.clone(),
                env,
                expose_tcp_ports: docker.expose_tcp_ports.clone(),
                workdir: docker.workdir.clone(),
            },
            resource: spec.resource.clone(),
        }
    }
}

/// `docker` of the submit body: the API's fields only (the spec's `envFrom` is resolved
/// into `env` before).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubmitDocker {
    pub image: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    #[serde(default, skip_serializing_if = "SubmitEnv::is_empty")]
    pub env: SubmitEnv,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_tcp_ports: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
}

/// The env sent to Data Forest. Its values may come from Secrets, so `Debug` shows the
/// names only.
#[derive(Serialize, Deserialize, Clone, Default, PartialEq)]
#[serde(transparent)]
pub struct SubmitEnv(pub BTreeMap<String, String>);

impl SubmitEnv {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SubmitEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Redacted;
        impl std::fmt::Debug for Redacted {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("<redacted>")
            }
        }
        f.debug_map()
            .entries(self.0.keys().map(|name| (name, Redacted)))
            .finish()
    }
}

/// Body of `getDetail` and `kill`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IdRequest {
    pub id: String,
}

/// Body of `getList`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ListRequest {
    pub search: ListSearch,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListSearch {
    pub account_id: String,
}

impl ListRequest {
    pub fn for_account(account_id: &str) -> Self {
        Self {
            search: ListSearch {
                account_id: account_id.to_owned(),
            },
        }
    }
}

/// YARN states after which an app never changes again.
pub const TERMINAL_STATES: [&str; 3] = ["FINISHED", "FAILED", "KILLED"];

/// Whether a `state` value is terminal; unknown values are not.
pub fn is_terminal_state(state: &str) -> bool {
    TERMINAL_STATES.contains(&state)
}

/// Answer of `submit`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SubmitResponse {
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    #[serde(with = "time", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(with = "time", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub elapsed_millis: Option<i64>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub final_status: Option<String>,
}

/// Answer of `getDetail`: one app, with its containers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct AppDetail {
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// YARN application id.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    #[serde(with = "time", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(with = "time", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub elapsed_millis: Option<i64>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub final_status: Option<String>,
    /// Keyed by an opaque name (container id or component).
    #[serde(
        deserialize_with = "lenient_or_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub containers: BTreeMap<String, Container>,
}

impl AppDetail {
    /// Whether the app ended (FINISHED, FAILED or KILLED); judge the outcome by `final_status`.
    pub fn is_terminal(&self) -> bool {
        self.state.as_deref().is_some_and(is_terminal_state)
    }
}

/// One container of an app, as getDetail reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<i64>,
    #[serde(with = "time", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    /// Undocumented vocabulary; diagnostics only.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Answer of `getList`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ListResponse {
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(deserialize_with = "every_item_or_unreadable")]
    pub contents: Vec<AppSummary>,
}

/// One item of getList.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct AppSummary {
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub final_status: Option<String>,
    #[serde(with = "time", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(with = "time", skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<Timestamp>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    #[serde(with = "time", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub workspace_name: Option<String>,
}

impl AppSummary {
    pub fn is_terminal(&self) -> bool {
        self.state.as_deref().is_some_and(is_terminal_state)
    }
}

/// Answer of `kill`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct KillResponse {
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A field of the wrong type becomes `None` rather than failing the whole answer: one odd
/// field must not hide an app's state from the controller. Numbers sent as strings are read.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    if let Ok(parsed) = serde_json::from_value::<T>(value.clone()) {
        return Ok(Some(parsed));
    }
    Ok(match value {
        serde_json::Value::String(s) => serde_json::from_str::<T>(s.trim()).ok(),
        _ => None,
    })
}

fn lenient_or_default<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(lenient(d)?.unwrap_or_default())
}

/// getList's items, all or none. Unlike single fields, a list cannot be read leniently:
/// dropping one odd item (or the whole list) would read as "that app does not exist", and
/// recovery would submit a second job. So an item that is not an object, or `contents`
/// that is not an array, makes the whole answer unreadable (retried); `null` or absent
/// contents is an empty list.
///
/// Items are read one by one as the answer streams, each straight into an [`AppSummary`]:
/// no tree of the whole list is built first, so a listing of thousands of apps a second
/// (the shared listing polls may use) costs the apps, not several times their text.
fn every_item_or_unreadable<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AppSummary>, D::Error> {
    d.deserialize_any(Items)
}

/// Reads `contents`: null, or a list of app objects.
struct Items;

impl<'de> serde::de::Visitor<'de> for Items {
    type Value = Vec<AppSummary>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("getList contents as a list of apps")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        // The hint comes from the answer: capped, so an odd one cannot reserve much.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            let index = items.len();
            match seq.next_element::<AppObject>() {
                Ok(Some(AppObject(item))) => items.push(item),
                Ok(None) => return Ok(items),
                Err(e) => return Err(A::Error::custom(format!("getList item {index}: {e}"))),
            }
        }
    }
}

/// One getList item, which must be a JSON object: serde's derived struct reading would
/// also take an array, by position.
struct AppObject(AppSummary);

impl<'de> Deserialize<'de> for AppObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(AppObjectVisitor)
    }
}

struct AppObjectVisitor;

impl<'de> serde::de::Visitor<'de> for AppObjectVisitor {
    type Value = AppObject;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an app object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
        AppSummary::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(AppObject)
    }
}

/// Parses a Data Forest timestamp: RFC 3339 with `Z` or an offset. Empty, unparsable and
/// the epoch (Data Forest's "not finished", in any offset) all mean absent.
pub fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let ts: Timestamp = text.trim().parse().ok()?;
    (ts != Timestamp::UNIX_EPOCH).then_some(ts)
}

mod time {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => parse_timestamp(&s),
            _ => None,
        })
    }

    pub fn serialize<S: Serializer>(value: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(ts) => s.serialize_str(&ts.to_string()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_submit_example_parses_with_an_epoch_finished_at_as_absent() {
        let body = json!({
            "success": true, "id": "dN2vdAwrCMZdUzGKKiFy6Z", "accountName": "acct",
            "name": "abcd-cvbp-1zqz", "queueName": "gpu",
            "startedAt": "2022-08-01T11:08:33.086+09:00", "finishedAt": "1970-01-01T09:00:00+09:00",
            "elapsedMillis": 12, "state": "ACCEPTED", "finalStatus": "UNDEFINED"
        });
        let r: SubmitResponse = serde_json::from_value(body).unwrap();
        assert_eq!(r.id.as_deref(), Some("dN2vdAwrCMZdUzGKKiFy6Z"));
        assert_eq!(
            r.started_at,
            Some("2022-08-01T02:08:33.086Z".parse().unwrap())
        );
        assert_eq!(r.finished_at, None);
        assert_eq!(r.elapsed_millis, Some(12));
        assert_eq!(r.state.as_deref(), Some("ACCEPTED"));
    }

    #[test]
    fn timestamps_accept_z_and_offsets_and_reject_empty_or_epoch() {
        let cases = [
            ("2023-05-17T01:44:47.805Z", Some("2023-05-17T01:44:47.805Z")),
            ("2025-02-25T15:49:07+09:00", Some("2025-02-25T06:49:07Z")),
            ("1970-01-01T09:00:00+09:00", None),
            ("1970-01-01T00:00:00Z", None),
            ("", None),
            ("  ", None),
            ("yesterday", None),
        ];
        for (text, expected) in cases {
            let expected: Option<Timestamp> = expected.map(|e| e.parse().unwrap());
            assert_eq!(parse_timestamp(text), expected, "{text:?}");
        }
    }

    #[test]
    fn unknown_states_and_fields_are_kept_or_ignored_not_fatal() {
        let body = json!({
            "id": "x", "state": "SOMETHING_NEW", "finalStatus": "ENDED", "brandNew": {"a": 1},
            "elapsedMillis": "integer", "containers": {"c1": {"status": "COMPLETE", "cpuCount": "2", "extra": 1}}
        });
        let d: AppDetail = serde_json::from_value(body).unwrap();
        assert_eq!(d.state.as_deref(), Some("SOMETHING_NEW"));
        assert_eq!(d.final_status.as_deref(), Some("ENDED"));
        assert_eq!(d.elapsed_millis, None);
        assert!(!d.is_terminal());
        assert_eq!(d.containers["c1"].cpu_count, Some(2));
        assert_eq!(d.containers["c1"].status.as_deref(), Some("COMPLETE"));
    }

    #[test]
    fn an_empty_object_parses_as_all_absent() {
        let d: AppDetail = serde_json::from_str("{}").unwrap();
        assert_eq!(d, AppDetail::default());
        let l: ListResponse = serde_json::from_str(r#"{"contents": null}"#).unwrap();
        assert!(l.contents.is_empty());
    }

    #[test]
    fn terminal_states_are_exactly_finished_failed_and_killed() {
        for (state, terminal) in [
            ("FINISHED", true),
            ("FAILED", true),
            ("KILLED", true),
            ("RUNNING", false),
            ("ACCEPTED", false),
            ("NEW_SAVING", false),
            ("finished", false),
            ("", false),
        ] {
            assert_eq!(is_terminal_state(state), terminal, "{state}");
        }
    }

    #[test]
    fn a_list_with_an_item_it_cannot_read_is_refused_whole_never_shortened() {
        for contents in [
            json!([{"id": "a"}, null]),
            json!([7, {"id": "a"}]),
            json!([{"id": "a"}, "b"]),
            json!([{"id": "a"}, ["b"]]),
            json!({"id": "a"}),
            json!("a"),
        ] {
            let body = json!({"success": true, "contents": contents});
            let parsed = serde_json::from_value::<ListResponse>(body.clone());
            assert!(parsed.is_err(), "{body} read as {parsed:?}");
            // The client reads the answer's text, item by item.
            let parsed = serde_json::from_str::<ListResponse>(&body.to_string());
            assert!(parsed.is_err(), "{body} read from text as {parsed:?}");
        }
        let odd_fields = json!({"contents": [{"id": "a", "state": 3}, {"id": "b"}]});
        let list: ListResponse = serde_json::from_value(odd_fields).unwrap();
        let ids: Vec<_> = list
            .contents
            .iter()
            .filter_map(|a| a.id.as_deref())
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn a_list_item_parses_every_documented_field() {
        let body = json!({"contents": [{
            "accountName": "a", "appId": "application_1_0001", "disabled": false, "finalStatus": "SUCCEEDED",
            "finishedAt": "2023-05-17T01:44:47.805Z", "id": "i", "modifiedAt": "2023-05-17T01:44:47.805Z",
            "name": "ab-cdef-ghij", "queueName": "gpu", "startedAt": "2023-05-17T01:40:00Z",
            "state": "FINISHED", "workspaceName": "ws"
        }], "success": true, "message": "success"});
        let l: ListResponse = serde_json::from_value(body).unwrap();
        let item = &l.contents[0];
        assert!(item.is_terminal());
        assert_eq!(item.disabled, Some(false));
        assert_eq!(item.workspace_name.as_deref(), Some("ws"));
        assert!(
            item.finished_at.is_some() && item.modified_at.is_some() && item.started_at.is_some()
        );
    }

    #[test]
    fn a_request_with_env_from_sends_the_merged_env_only_and_its_debug_shows_no_value() {
        let spec: AiAppSpec = serde_json::from_value(json!({
            "aiWorkspaceId": "ws1", "docker": {"image": "img:1", "command": "c", "env": {"A": "1"},
                "envFrom": [{"name": "TOKEN", "secretKeyRef": {"name": "s", "key": "k"}}]},
        }))
        .unwrap();
        let env = SubmitEnv(
            [("A", "1"), ("TOKEN", "LEAKCANARY-types")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
        );
        let request = SubmitRequest::with_env(&spec, "abc12345", env);
        let body = serde_json::to_value(&request).unwrap();
        assert_eq!(
            body["docker"],
            json!({"image": "img:1", "command": "c", "env": {"A": "1", "TOKEN": "LEAKCANARY-types"}})
        );
        assert!(!body.to_string().contains("envFrom"), "{body}");
        let debug = format!("{request:?} {request:#?}");
        assert!(debug.contains("TOKEN"), "{debug}");
        assert!(!debug.contains("LEAKCANARY"), "{debug}");
    }

    #[test]
    fn a_submit_request_carries_the_six_fields_in_camel_case_and_no_operator_fields() {
        let spec: AiAppSpec = serde_json::from_value(json!({
            "aiWorkspaceId": "ws1", "docker": {"image": "img:1", "command": "python x.py", "env": {"A": "1"}},
            "resource": {"gpuCount": 2, "gpuModel": "T4"},
            "credentials": {"secretName": "s"}, "deletionPolicy": "Orphan"
        }))
        .unwrap();
        let body = serde_json::to_value(SubmitRequest::from_spec(&spec, "abc12345")).unwrap();
        assert_eq!(
            body,
            json!({
                "aiWorkspaceId": "ws1", "namePrefix": "abc12345", "queueName": "gpu",
                "data": {"input": [], "output": []},
                "docker": {"image": "img:1", "command": "python x.py", "env": {"A": "1"}},
                "resource": {"gpuCount": 2, "gpuModel": "T4"}
            })
        );
    }
}
