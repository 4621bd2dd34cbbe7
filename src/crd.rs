//! The `AiApp` custom resource: its spec (the Data Forest submit body plus what the
//! operator needs), its status, and the names other parts of the system depend on.

use std::collections::BTreeMap;

// Short strings (ids, state words, key names) are `CompactString`: held inline, with no
// heap allocation, in the cached copy the operator keeps of every AiApp.
use compact_str::CompactString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every resource this operator owns.
pub const GROUP: &str = "dataforest.dev";
/// Finalizer that lets the operator kill the Data Forest app before the AiApp goes.
pub const FINALIZER: &str = "dataforest.dev/cleanup";
/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "dataforest-operator";

/// Documented limits of the submit API, shared by the schema and by
/// [`crate::dataforest::validate::validate_spec`].
pub mod limits {
    /// `aiWorkspaceId` and app ids: Base62 UUIDs of at most 22 characters.
    pub const ID_MAX: u32 = 22;
    /// `namePrefix`: 2 to 8 characters.
    pub const NAME_PREFIX_MIN: u32 = 2;
    pub const NAME_PREFIX_MAX: u32 = 8;
    /// `resource.gpuCount`: 1 to 8.
    pub const GPU_COUNT_MIN: i32 = 1;
    pub const GPU_COUNT_MAX: i32 = 8;
    /// Bounds the API does not document; they keep objects small and CEL cost low.
    pub const QUEUE_NAME_MAX: u32 = 64;
    pub const PATH_MAX: u32 = 1024;
    pub const DATA_ITEMS_MAX: u32 = 16;
    pub const IMAGE_MAX: u32 = 512;
    pub const COMMAND_MAX: u32 = 4096;
    pub const ENV_MAX: u32 = 64;
    pub const ENV_VALUE_MAX: u32 = 4096;
    pub const PORTS_MAX: u32 = 16;
    pub const GPU_MODEL_MAX: u32 = 32;
    pub const CPU_COUNT_MAX: i32 = 128;
    pub const MEMORY_MB_MAX: i64 = 4 * 1024 * 1024;
    pub const SECRET_NAME_MAX: u32 = 253;
    pub const SECRET_KEY_MAX: u32 = 253;
    /// `docker.envFrom`: Secret references per AiApp, and the length of a variable's name
    /// or prefix.
    pub const ENV_FROM_MAX: u32 = 16;
    pub const ENV_NAME_MAX: u32 = 128;
    /// Attempts recorded in status: far more than automatic resubmits and retries make.
    pub const ATTEMPTS_MAX: u32 = 64;
    /// Candidate apps recorded for one ambiguous attempt.
    pub const CANDIDATES_MAX: u32 = 16;
    /// Deadlines: at most 30 days.
    pub const DEADLINE_MAX: i64 = 30 * 24 * 3600;
    /// Retries of failed apps.
    pub const BACKOFF_LIMIT_MAX: i32 = 10;
}
use limits::*;

/// Base62: the alphabet of Data Forest identifiers.
const BASE62_PATTERN: &str = "^[0-9A-Za-z]+$";
/// Lower-case letters and digits: the safe subset for the server-built app name.
const NAME_PREFIX_PATTERN: &str = "^[a-z0-9]+$";
const QUEUE_NAME_PATTERN: &str = "^[A-Za-z0-9_.-]+$";
/// A Secret's name, as Kubernetes requires (DNS-1123 subdomain).
const SECRET_NAME_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A key in a Secret's data.
const SECRET_KEY_PATTERN: &str = "^[-._a-zA-Z0-9]+$";
/// An environment variable's name (or a prefix of one), as a shell can use it: letters,
/// digits and `_`, not starting with a digit. [`crate::env_from`] checks the names it
/// builds from Secret keys against the same rule.
pub const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// What to run on Data Forest (the submit body, in the API's own field names) and how the
/// operator handles it.
// clippy reads the repeated `printcolumn(...)` arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dataforest.dev",
    version = "v1alpha1",
    kind = "AiApp",
    plural = "aiapps",
    shortname = "aiapp",
    shortname = "aia",
    category = "dataforest",
    namespaced,
    status = "AiAppStatus",
    derive = "PartialEq",
    doc = "An AI app (GPU job) on NAVER Cloud Data Forest, submitted and followed by dataforest-operator.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason"),
    printcolumn(
        name = "GPUs",
        type_ = "integer",
        json_path = ".spec.resource.gpuCount"
    ),
    printcolumn(name = "Attempt", type_ = "integer", json_path = ".status.attempt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "App ID",
        type_ = "string",
        json_path = ".status.id",
        priority = 1
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.state",
        priority = 1
    ),
    printcolumn(
        name = "Final Status",
        type_ = "string",
        json_path = ".status.finalStatus",
        priority = 1
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1
    )
)]
#[x_kube(validation = immutable(".aiWorkspaceId", "self.aiWorkspaceId == oldSelf.aiWorkspaceId"))]
#[x_kube(validation = immutable(
    ".namePrefix",
    "has(self.namePrefix) == has(oldSelf.namePrefix) && (!has(self.namePrefix) || self.namePrefix == oldSelf.namePrefix)"
))]
#[x_kube(validation = immutable(".queueName", "self.queueName == oldSelf.queueName"))]
#[x_kube(validation = immutable(".data", "self.data == oldSelf.data"))]
#[x_kube(validation = immutable(".docker", "self.docker == oldSelf.docker"))]
#[x_kube(validation = immutable(".resource", "self.resource == oldSelf.resource"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.namePrefix) || !has(self.backoffLimit) || self.backoffLimit == 0")
    .message("spec.backoffLimit above 0 needs spec.namePrefix unset: each retry gets its own derived name prefix, so that recovery after a lost answer can tell which attempt made an app")
    .field_path(".backoffLimit")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct AiAppSpec {
    /// AI workspace the app runs in (Base62 id of at most 22 characters, from the AI
    /// Workspaces getList API). Immutable.
    #[schemars(with = "String", length(min = 1, max = ID_MAX), regex(pattern = BASE62_PATTERN))]
    pub ai_workspace_id: CompactString,

    /// Prefix of the app name Data Forest generates (`<prefix>-xxxx-xxxx`): 2 to 8
    /// lower-case letters or digits. When absent, the operator derives one unique to
    /// this AiApp, which keeps recovery after a lost response unambiguous. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", length(min = NAME_PREFIX_MIN, max = NAME_PREFIX_MAX), regex(pattern = NAME_PREFIX_PATTERN))]
    pub name_prefix: Option<CompactString>,

    /// YARN queue the app is scheduled on. Immutable.
    #[serde(default = "default_queue_name")]
    #[schemars(with = "String", length(min = 1, max = QUEUE_NAME_MAX), regex(pattern = QUEUE_NAME_PATTERN))]
    pub queue_name: CompactString,

    /// HDFS data copied into the container before the run and out of it after. Immutable.
    #[serde(default)]
    pub data: AiAppData,

    /// The container to run. Immutable.
    pub docker: AiAppDocker,

    /// CPU, memory and GPU for the container. Immutable.
    #[serde(default)]
    pub resource: AiAppResource,

    /// Where the NCP API keys come from: a Secret in this AiApp's namespace. Mutable.
    /// When absent, the operator's default credentials Secret (in the operator's own
    /// namespace) is used, but only if the operator was installed with one and its own
    /// settings list this namespace (flag --default-credentials-namespaces, chart value
    /// defaultCredentials.namespaces); nothing in this namespace can opt it in. Anywhere
    /// else an AiApp without credentials never runs: the chart's admission policy refuses
    /// to create it, and without that policy it waits with reason CredentialsNotFound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsRef>,

    /// What deleting this AiApp does to a live app: `Kill` (default) or `Orphan`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Whether the app may run, as a Job's `suspend`. Setting it on an AiApp not yet
    /// submitted keeps it from being submitted; on one that runs, the operator kills the
    /// app and, once Data Forest shows it ended, the phase is `Suspended`. Setting it back
    /// to false submits a new app as a new attempt. Mutable. (The `dataforest.dev/paused`
    /// annotation differs: it stops every API call, kills nothing, and wins over this.)
    #[serde(default)]
    pub suspend: bool,

    /// Longest time, in seconds, from a submit to the app running (a GPU queue can hold
    /// an app for hours). Counted per attempt from its marker in `status.attempts`. When it
    /// passes the operator kills the app; the phase becomes `Failed` (reason
    /// `DeadlineExceeded`) once Data Forest shows the app ended. Mutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = DEADLINE_MAX))]
    pub start_deadline_seconds: Option<i64>,

    /// Longest time, in seconds, from the first submit to the end, across every retry.
    /// Like a Job's, the clock starts again when a suspended AiApp resumes, so suspended
    /// time never counts. When it passes the operator kills the app and submits no more
    /// retries; the phase becomes `Failed` (reason `DeadlineExceeded`) once Data Forest
    /// shows the app ended. Mutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = DEADLINE_MAX))]
    pub active_deadline_seconds: Option<i64>,

    /// How many times an app that ended failed (state FAILED, or final status FAILED or
    /// ENDED) is replaced by a new one, 0 to 10 (default 0). Apps killed by a person, by
    /// deletion, by `suspend` or by a deadline are never retried. Retries wait 10 s, then
    /// twice as long each time, at most 10 minutes (`status.nextAttemptAt`). Each retry is
    /// an attempt with its own derived name prefix, so `backoffLimit` above 0 needs
    /// `namePrefix` unset.
    #[serde(default)]
    #[schemars(range(min = 0, max = BACKOFF_LIMIT_MAX))]
    pub backoff_limit: i32,
}

fn default_queue_name() -> CompactString {
    CompactString::const_new("gpu")
}

/// Builds the immutability rule of one submitted field.
fn immutable(field_path: &str, rule: &str) -> kube::core::Rule {
    let field = field_path.trim_start_matches('.');
    let message = format!(
        "spec.{field} is immutable: the app was submitted with it; delete and recreate the AiApp to change it"
    );
    kube::core::Rule::new(rule)
        .message(message.as_str())
        .field_path(field_path)
        .reason(kube::core::Reason::FieldValueInvalid)
}

/// HDFS paths copied into and out of the container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AiAppData {
    /// HDFS paths copied into the container before it starts.
    #[serde(default)]
    #[schemars(length(max = DATA_ITEMS_MAX))]
    pub input: Vec<DataInput>,
    /// Container paths copied to HDFS when it ends.
    #[serde(default)]
    #[schemars(length(max = DATA_ITEMS_MAX))]
    pub output: Vec<DataOutput>,
}

/// One HDFS input.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DataInput {
    /// HDFS path to copy from.
    #[schemars(length(min = 1, max = PATH_MAX))]
    pub hdfs: String,
    /// Path inside the container that receives it.
    #[schemars(length(min = 1, max = PATH_MAX))]
    pub path: String,
}

/// One HDFS output.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DataOutput {
    /// HDFS path to copy the results to.
    #[schemars(length(min = 1, max = PATH_MAX))]
    pub hdfs: String,
    /// Whether to overwrite what is already at the HDFS path.
    #[serde(default)]
    pub overwrite: bool,
    /// Path inside the container that holds the results.
    #[schemars(length(min = 1, max = PATH_MAX))]
    pub path: String,
}

/// The container Data Forest runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AiAppDocker {
    /// Image and tag, for example `nvcr.io/nvidia/pytorch:24.01-py3`.
    #[schemars(length(min = 1, max = IMAGE_MAX))]
    pub image: String,
    /// Script or command to run.
    #[schemars(length(min = 1, max = COMMAND_MAX))]
    pub command: String,
    /// Arguments to the command, as one string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = COMMAND_MAX))]
    pub args: Option<String>,
    /// Environment variables of the container. Never put secrets here: the spec is
    /// readable by anyone who can read the AiApp; use `envFrom`. A name set here wins over
    /// the same name from `envFrom`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "env_schema")]
    pub env: BTreeMap<String, String>,
    /// Environment variables from Secrets in the AiApp's namespace, shaped like a Pod's
    /// (at most 16 entries): `secretRef` makes every key of a Secret a variable, or `name`
    /// with `secretKeyRef` makes one key a variable. The operator reads the Secrets when it
    /// submits the app and sends their values to Data Forest as plain `env`, visible to
    /// whoever can read the app there; they never appear in the AiApp's status, its Events
    /// or the operator's log. Entries apply in order, a later one winning over an earlier
    /// one for the same name, and `env` wins over all of them, as in a Pod. A missing
    /// Secret or key keeps the AiApp Pending (reason `EnvSecretNotFound` or
    /// `EnvSecretKeyNotFound`) until it appears. Whoever may create AiApps in a namespace
    /// can thereby send any Secret of it to Data Forest, as creating a Pod can mount it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = ENV_FROM_MAX))]
    pub env_from: Vec<EnvFromSource>,
    /// TCP ports the container exposes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = PORTS_MAX), inner(range(min = 1, max = 65535)))]
    pub expose_tcp_ports: Vec<i32>,
    /// Working directory. Data Forest removed it from the workspace APIs in 2024 and
    /// may ignore it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = PATH_MAX))]
    pub workdir: Option<String>,
}

/// One source of environment variables in a Secret of the AiApp's namespace: either
/// `secretRef` (with an optional `prefix`) or `name` with `secretKeyRef`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.secretRef) != has(self.secretKeyRef)")
    .message("set exactly one of secretRef (every key of a Secret) or secretKeyRef (one key, with name)")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[x_kube(validation = kube::core::Rule::new("!has(self.secretKeyRef) || has(self.name)")
    .message("name, the variable's name, is required with secretKeyRef")
    .field_path(".name")
    .reason(kube::core::Reason::FieldValueRequired))]
#[x_kube(validation = kube::core::Rule::new("!has(self.name) || has(self.secretKeyRef)")
    .message("name goes with secretKeyRef only: with secretRef every key of the Secret is a variable named by its key (see prefix)")
    .field_path(".name")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[x_kube(validation = kube::core::Rule::new("!has(self.prefix) || has(self.secretRef)")
    .message("prefix goes with secretRef only: with secretKeyRef, name is the variable's whole name")
    .field_path(".prefix")
    .reason(kube::core::Reason::FieldValueForbidden))]
pub struct EnvFromSource {
    /// Every key of this Secret becomes a variable of the same name, after `prefix`. A
    /// key that does not make a valid variable name keeps the AiApp Pending (reason
    /// `EnvSecretKeyInvalid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<EnvSecretRef>,
    /// Put before each key of `secretRef`'s Secret to make its variable's name, for
    /// example `DB_`: letters, digits and `_`, not starting with a digit. Only with
    /// `secretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ENV_NAME_MAX), regex(pattern = ENV_NAME_PATTERN))]
    pub prefix: Option<String>,
    /// Name of the variable that `secretKeyRef`'s value becomes: letters, digits and `_`,
    /// not starting with a digit. Required with `secretKeyRef`, and only with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ENV_NAME_MAX), regex(pattern = ENV_NAME_PATTERN))]
    pub name: Option<String>,
    /// One key of a Secret, whose value becomes the variable `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<EnvSecretKeyRef>,
}

/// A whole Secret in the AiApp's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EnvSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = SECRET_NAME_MAX), regex(pattern = SECRET_NAME_PATTERN))]
    pub name: String,
}

/// One key of a Secret in the AiApp's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EnvSecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = SECRET_NAME_MAX), regex(pattern = SECRET_NAME_PATTERN))]
    pub name: String,
    /// Key in the Secret's data whose value is the variable's value.
    #[schemars(length(min = 1, max = SECRET_KEY_MAX), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

/// A string map bounded in entries and value length (schemars has no bound for maps).
fn env_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": ENV_MAX,
        "additionalProperties": {"type": "string", "maxLength": ENV_VALUE_MAX},
    })
}

/// CPU, memory and GPU of the container; Data Forest's defaults apply to what is left out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AiAppResource {
    /// CPU cores (Data Forest's default: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = CPU_COUNT_MAX))]
    pub cpu_count: Option<i32>,
    /// GPUs, 1 to 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = GPU_COUNT_MIN, max = GPU_COUNT_MAX))]
    pub gpu_count: Option<i32>,
    /// GPU model, for example `T4` or `V100` (Data Forest's default: `V100`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", length(min = 1, max = GPU_MODEL_MAX))]
    pub gpu_model: Option<CompactString>,
    /// Container memory in MiB (Data Forest's default: 15 GB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MEMORY_MB_MAX))]
    pub memory_mb: Option<i64>,
}

/// The Secret, in the AiApp's namespace, that holds the NCP API keys.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of the Secret.
    #[schemars(with = "String", length(min = 1, max = SECRET_NAME_MAX), regex(pattern = SECRET_NAME_PATTERN))]
    pub secret_name: CompactString,
    /// Names of the keys inside the Secret, when they differ from the defaults.
    #[serde(default)]
    pub keys: CredentialKeys,
}

/// Key names inside the credentials Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialKeys {
    /// Key holding the NCP access key id.
    #[serde(default = "default_access_key_key")]
    #[schemars(with = "String", length(min = 1, max = SECRET_KEY_MAX), regex(pattern = SECRET_KEY_PATTERN))]
    pub access_key: CompactString,
    /// Key holding the NCP secret key.
    #[serde(default = "default_secret_key_key")]
    #[schemars(with = "String", length(min = 1, max = SECRET_KEY_MAX), regex(pattern = SECRET_KEY_PATTERN))]
    pub secret_key: CompactString,
    /// Key holding the Data Forest account id (optional in the Secret; without it an
    /// ambiguous submission cannot be recovered automatically).
    #[serde(default = "default_account_id_key")]
    #[schemars(with = "String", length(min = 1, max = SECRET_KEY_MAX), regex(pattern = SECRET_KEY_PATTERN))]
    pub account_id: CompactString,
    /// Key holding the API base URL (optional in the Secret; it must be on the
    /// operator's allow-list).
    #[serde(default = "default_endpoint_key")]
    #[schemars(with = "String", length(min = 1, max = SECRET_KEY_MAX), regex(pattern = SECRET_KEY_PATTERN))]
    pub endpoint: CompactString,
}

impl Default for CredentialKeys {
    fn default() -> Self {
        Self {
            access_key: default_access_key_key(),
            secret_key: default_secret_key_key(),
            account_id: default_account_id_key(),
            endpoint: default_endpoint_key(),
        }
    }
}

fn default_access_key_key() -> CompactString {
    CompactString::const_new("accessKey")
}
fn default_secret_key_key() -> CompactString {
    CompactString::const_new("secretKey")
}
fn default_account_id_key() -> CompactString {
    CompactString::const_new("accountId")
}
fn default_endpoint_key() -> CompactString {
    CompactString::const_new("endpoint")
}

/// What deleting the AiApp does to its Data Forest app.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Kill a live app, and wait until Data Forest shows it ended.
    #[default]
    Kill,
    /// Leave the app running on Data Forest.
    Orphan,
}

/// What the operator and Data Forest last said about the app.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AiAppStatus {
    /// Where the AiApp is in its life; see the phase table in the docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Why the AiApp is in its phase, in one word: the outcome of an ended app, or what
    /// holds it up (the reason of the condition that explains the phase, e.g.
    /// CredentialsNotFound, Throttled, Paused, DeadlineExceeded). Empty while an app
    /// simply runs or waits for GPUs. The conditions carry the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub reason: Option<CompactString>,
    /// The `metadata.generation` this status was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The current attempt's marker: written before the API is called so that a lost
    /// answer can be recovered without submitting twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<SubmissionMarker>,
    /// Every attempt to submit this AiApp, oldest first: each names the app it created,
    /// or the apps it may have created. Attempt numbers only go up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = ATTEMPTS_MAX))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["attempt"]))]
    pub attempts: Vec<AttemptRecord>,
    /// The current attempt's number (1 for the first submit), as the Attempt column shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i32>,
    /// When the next retry of a failed app is submitted (`spec.backoffLimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Time>,
    /// While the AiApp waits for a person in phase Unknown after a submit whose outcome is
    /// unknown: the value of the `dataforest.dev/resubmit` annotation that confirms one more
    /// submit. It is bound to this AiApp and this attempt, so it confirms nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub resubmit_token: Option<CompactString>,
    /// Data Forest's id of the app (Base62).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub id: Option<CompactString>,
    /// Name Data Forest gave the app (`<prefix>-xxxx-xxxx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub name: Option<CompactString>,
    /// YARN application id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub app_id: Option<CompactString>,
    /// Data Forest account the app runs under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub account_name: Option<CompactString>,
    /// YARN queue the app runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub queue_name: Option<CompactString>,
    /// YARN state as Data Forest reports it (NEW, ACCEPTED, RUNNING, FINISHED, FAILED, KILLED, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub state: Option<CompactString>,
    /// YARN final status (UNDEFINED while running; SUCCEEDED, FAILED, KILLED, ENDED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub final_status: Option<CompactString>,
    /// When the app started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the app finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Run time in milliseconds, as Data Forest reported it when the state last changed,
    /// and the whole run time once the app ended. A poll that finds the app in the same
    /// state does not rewrite it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_millis: Option<i64>,
    /// Last message from Data Forest or the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The app's containers, with their status and log URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub containers: Vec<ContainerStatus>,
    /// Kubernetes conditions: Submitted, Synced, Succeeded, Failed, Suspended,
    /// FailureTarget, Finished (True once the app ended, any outcome), and kstatus's
    /// Reconciling (present while the operator works) and Stalled (present while a person
    /// must act).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One aspect of the AiApp's state, written as Kubernetes conditions are
/// (`metav1.Condition`).
// Our own type rather than k8s-openapi's, for memory: type, status and reason are short
// words held inline instead of in three heap allocations, and the operator caches every
// AiApp with its five to seven conditions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type, in CamelCase.
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub type_: CompactString,
    /// True, False or Unknown.
    #[schemars(with = "String")]
    pub status: CompactString,
    /// Why the condition last changed, in CamelCase.
    #[schemars(with = "String")]
    pub reason: CompactString,
    /// What happened, for a person; may be empty.
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: Time,
    /// The `metadata.generation` the condition was set from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub observed_generation: Option<i64>,
}

/// One container of the app, as getDetail reports it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// Key of the container in Data Forest's answer.
    #[schemars(with = "String")]
    pub name: CompactString,
    /// Container status, in Data Forest's own words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub status: Option<CompactString>,
    /// Where the container's log can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
}

/// A submit the operator started: which attempt, when, and with which name prefix.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionMarker {
    /// 1 for the first submit; raised by a confirmed resubmit.
    pub attempt: i32,
    /// When the submit was started; recovery only adopts apps started after it.
    pub started_at: Time,
    /// Name prefix sent with the submit.
    #[schemars(with = "String")]
    pub name_prefix: CompactString,
}

/// One attempt to submit the AiApp: when, with which name prefix, and what came of it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// The attempt's number: 1 for the first; never reused.
    pub attempt: i32,
    /// When its marker was written, before the submit call.
    pub started_at: Time,
    /// The name prefix sent with its submit.
    #[schemars(with = "String")]
    pub name_prefix: CompactString,
    /// The app it created, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub id: Option<CompactString>,
    /// Apps that recovery found and could not tell apart: one of them may be this attempt's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>", length(max = CANDIDATES_MAX))]
    pub candidates: Vec<CompactString>,
    /// What came of it.
    pub outcome: AttemptOutcome,
    /// Why the operator killed its app, when it did: written before the kill is sent, so
    /// the kill is sent again until Data Forest shows the app ended, across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_by: Option<KillCause>,
    /// When the operator decided to kill its app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_at: Option<Time>,
    /// How its app ended, once Data Forest showed it ended: `Succeeded`, `Failed`,
    /// `Killed`, or `Suspended` (killed because `spec.suspend` was set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Phase>,
}

/// Why the operator killed an app it had submitted (deletion aside).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillCause {
    /// `spec.suspend` was set: the AiApp becomes `Suspended`, and a new attempt follows
    /// when it is unset.
    Suspend,
    /// `spec.startDeadlineSeconds` passed before the app was running.
    StartDeadline,
    /// `spec.activeDeadlineSeconds` passed before the app ended.
    ActiveDeadline,
}

/// What came of one attempt.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The submit is under way, or its outcome is unknown and recovery looks for its app.
    Pending,
    /// Data Forest answered with the app's id.
    Created,
    /// Recovery found the app of a submit whose answer was lost.
    Recovered,
    /// A person named the app with the `dataforest.dev/adopt-id` annotation.
    Adopted,
    /// No app can exist: Data Forest refused the submit, or the operator did not send it.
    NotCreated,
    /// The outcome was unknown and no app was listed within the recovery grace; a later
    /// attempt followed. An app may still show up for it: recovery keeps looking.
    NotListed,
    /// Recovery found several apps that may be this attempt's (listed in `candidates`).
    Ambiguous,
    /// Its app was listed only after a later attempt had started: a second app of this
    /// AiApp. The operator killed it when the name prefix is certainly this AiApp's, and
    /// otherwise named it in a Warning Event.
    Duplicate,
}

impl AttemptOutcome {
    /// Whether this attempt may have created an app that no one knows the id of.
    pub fn may_have_unknown_app(self) -> bool {
        matches!(
            self,
            AttemptOutcome::Pending | AttemptOutcome::NotListed | AttemptOutcome::Ambiguous
        )
    }
}

/// Where an AiApp is in its life.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not submitted yet: waiting for credentials or a Secret of envFrom, paused, refused
    /// by the API without an app, or waiting to retry a failed app (spec.backoffLimit).
    Pending,
    /// The marker is written and a submit is under way, or recovery looks for the app of
    /// a submit whose answer was lost; the app id is not known yet.
    Submitting,
    /// Data Forest accepted the app; it waits in its queue for GPUs.
    Accepted,
    /// The app runs.
    Running,
    /// Terminal: the app ended with final status SUCCEEDED.
    Succeeded,
    /// Terminal: the app ended without success and no retry is left, or a deadline
    /// (startDeadlineSeconds, activeDeadlineSeconds) ended it.
    Failed,
    /// Terminal: the app was killed by a person or by the AiApp's deletion.
    Killed,
    /// Not an end: the operator cannot tell which app is this AiApp's (an ambiguous
    /// recovery) or Data Forest no longer knows it; a person must resolve it, and
    /// nothing is submitted until then.
    Unknown,
    /// `spec.suspend` is set: nothing was submitted, or the app was killed and Data Forest
    /// shows it ended. Not terminal: unsetting `suspend` submits a new attempt.
    Suspended,
}

impl Phase {
    /// Terminal phases never change again and cost no further API calls.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Killed)
    }
}

/// The CRD of [`AiApp`], with the meaning of every enum value in the description of each
/// field that takes it. A CRD's structural schema keeps a plain `enum` list only, so
/// without this `kubectl explain` would show the values and lose what they mean.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(AiApp::crd()).expect("the CRD always serializes");
    let meanings = [
        value_meanings(schemars::schema_for!(Phase)),
        value_meanings(schemars::schema_for!(DeletionPolicy)),
        value_meanings(schemars::schema_for!(KillCause)),
        value_meanings(schemars::schema_for!(AttemptOutcome)),
    ];
    describe_enums(&mut crd, &meanings);
    serde_json::from_value(crd).expect("describing values keeps the CRD's shape")
}

/// Each value of a documented string enum with its variant's doc comment.
fn value_meanings(schema: schemars::Schema) -> Vec<(String, String)> {
    let variants = schema.get("oneOf").and_then(|v| v.as_array());
    variants
        .into_iter()
        .flatten()
        .filter_map(|variant| {
            let value = variant
                .get("const")
                .or_else(|| variant.get("enum").and_then(|e| e.get(0)))?
                .as_str()?;
            let meaning = variant.get("description")?.as_str()?.replace('\n', " ");
            Some((value.to_owned(), meaning))
        })
        .collect()
}

/// Appends "Values:" and each value's meaning to every schema node whose `enum` is exactly
/// the values of one of `meanings`.
fn describe_enums(node: &mut serde_json::Value, meanings: &[Vec<(String, String)>]) {
    match node {
        serde_json::Value::Object(object) => {
            let values: Option<Vec<&str>> = object
                .get("enum")
                .and_then(|e| e.as_array())
                .map(|e| e.iter().filter_map(|v| v.as_str()).collect());
            let known = values.and_then(|values| {
                meanings.iter().find(|m| {
                    m.len() == values.len() && m.iter().all(|(v, _)| values.contains(&v.as_str()))
                })
            });
            if let Some(known) = known {
                let head = object
                    .get("description")
                    .and_then(|d| d.as_str())
                    .unwrap_or_default();
                let lines: Vec<String> = known
                    .iter()
                    .map(|(value, meaning)| format!("- {value}: {meaning}"))
                    .collect();
                let description = format!("{head}\n\nValues:\n{}", lines.join("\n"));
                object.insert(
                    "description".into(),
                    description.trim_start().to_owned().into(),
                );
            }
            for child in object.values_mut() {
                describe_enums(child, meanings);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                describe_enums(item, meanings);
            }
        }
        _ => {}
    }
}

/// The CRD as YAML, exactly what `crds/aiapps.dataforest.dev.yaml` holds.
pub fn crd_yaml() -> String {
    let body = serde_yaml_ng::to_string(&crd()).expect("the CRD always serializes to YAML");
    format!(
        "# DO_NOT_EDIT: generated from src/crd.rs by `dataforest-operator crd` (make generate).\n---\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_crd_matches_the_rust_types() {
        let committed = include_str!("../crds/aiapps.dataforest.dev.yaml");
        assert!(
            committed == crd_yaml(),
            "crds/aiapps.dataforest.dev.yaml is stale: run `make generate` and commit it"
        );
    }

    #[test]
    fn a_condition_reads_and_writes_the_json_of_a_kubernetes_condition() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as KubeCondition;
        for generation in [Some(3), None] {
            let kube = KubeCondition {
                type_: "Submitted".into(),
                status: "True".into(),
                reason: "Accepted".into(),
                message: "app 6f1c2a9e-52a4-4a8e-9d39-0c6a1f1d2b3c accepted on queue default"
                    .into(),
                last_transition_time: Time("2026-12-04T10:00:00Z".parse().unwrap()),
                observed_generation: generation,
            };
            let json = serde_json::to_value(&kube).unwrap();
            let ours: Condition = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(ours.type_, "Submitted");
            assert_eq!(ours.observed_generation, generation);
            assert_eq!(serde_json::to_value(&ours).unwrap(), json);
        }
    }

    #[test]
    fn every_enum_value_says_what_it_means() {
        fn walk(path: &str, node: &serde_json::Value, seen: &mut usize) {
            if let Some(object) = node.as_object() {
                if let Some(values) = object.get("enum").and_then(|e| e.as_array()) {
                    let description = object["description"].as_str().unwrap_or_default();
                    for value in values.iter().filter_map(|v| v.as_str()) {
                        assert!(
                            description.contains(&format!("- {value}: ")),
                            "{path}: the description does not say what {value} means"
                        );
                    }
                    *seen += 1;
                }
                for (key, child) in object {
                    walk(&format!("{path}.{key}"), child, seen);
                }
            }
            for (index, item) in node.as_array().into_iter().flatten().enumerate() {
                walk(&format!("{path}[{index}]"), item, seen);
            }
        }
        let crd = serde_json::to_value(crd()).unwrap();
        let mut seen = 0;
        walk("", &crd, &mut seen);
        // deletionPolicy, phase, and per attempt outcome, killedBy and ended.
        assert_eq!(seen, 5);
    }

    #[test]
    fn every_submitted_field_has_its_own_immutability_rule() {
        let crd = serde_json::to_value(crd()).unwrap();
        let rules = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["x-kubernetes-validations"];
        let immutability: Vec<&serde_json::Value> = rules
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| rule["rule"].as_str().unwrap().contains("oldSelf"))
            .collect();
        let paths: Vec<&str> = immutability
            .iter()
            .map(|rule| rule["fieldPath"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                ".aiWorkspaceId",
                ".namePrefix",
                ".queueName",
                ".data",
                ".docker",
                ".resource"
            ]
        );
        for rule in immutability {
            let message = rule["message"].as_str().unwrap();
            assert!(message.contains("delete and recreate"), "{message}");
        }
    }

    #[test]
    fn an_env_from_entry_carries_a_rule_per_pairing_each_naming_its_field() {
        let crd = serde_json::to_value(crd()).unwrap();
        let env_from = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["docker"]["properties"]["envFrom"];
        assert_eq!(env_from["maxItems"], ENV_FROM_MAX);
        let rules: Vec<(&str, &str)> = env_from["items"]["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let path = r["fieldPath"].as_str().unwrap_or("");
                (r["rule"].as_str().unwrap(), path)
            })
            .collect();
        assert_eq!(
            rules,
            [
                ("has(self.secretRef) != has(self.secretKeyRef)", ""),
                ("!has(self.secretKeyRef) || has(self.name)", ".name"),
                ("!has(self.name) || has(self.secretKeyRef)", ".name"),
                ("!has(self.prefix) || has(self.secretRef)", ".prefix"),
            ]
        );
        for field in ["name", "prefix"] {
            let schema = &env_from["items"]["properties"][field];
            assert_eq!(schema["pattern"], ENV_NAME_PATTERN, "{field}");
            assert_eq!(schema["maxLength"], ENV_NAME_MAX, "{field}");
        }
    }

    #[test]
    fn a_minimal_spec_gets_the_documented_defaults() {
        let spec: AiAppSpec = serde_json::from_value(serde_json::json!({
            "aiWorkspaceId": "6ZKSGoSJMMwctK257nxgiL",
            "docker": {"image": "busybox", "command": "true"},
        }))
        .unwrap();
        assert_eq!(spec.queue_name, "gpu");
        assert_eq!(spec.deletion_policy, DeletionPolicy::Kill);
        assert_eq!(spec.name_prefix, None);
        assert_eq!(spec.data, AiAppData::default());
    }

    #[test]
    fn only_succeeded_failed_and_killed_are_terminal() {
        use Phase::*;
        let terminal: Vec<Phase> = [
            Pending, Submitting, Accepted, Running, Succeeded, Failed, Killed, Unknown, Suspended,
        ]
        .into_iter()
        .filter(|phase| phase.is_terminal())
        .collect();
        assert_eq!(terminal, [Succeeded, Failed, Killed]);
    }
}
