//! Checks a spec against the API's documented limits and the CRD's own bounds, naming
//! the field that breaks one, as `kubectl apply` would. Pure.

use std::fmt;

use crate::crd::limits::*;
use crate::crd::{AiAppData, AiAppDocker, AiAppResource, AiAppSpec};

/// A field breaks a limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidSpec {
    /// Path of the field, e.g. `spec.resource.gpuCount`.
    pub field: String,
    pub problem: String,
}

/// The documented limits plus the CRD's bounds, as `kubectl apply` would apply them.
pub fn validate_spec(spec: &AiAppSpec) -> Result<(), InvalidSpec> {
    let parts = Parts {
        ai_workspace_id: &spec.ai_workspace_id,
        name_prefix: spec.name_prefix.as_deref(),
        queue_name: &spec.queue_name,
        data: &spec.data,
        docker: &spec.docker,
        resource: &spec.resource,
    };
    parts.documented("spec.")?;
    parts.bounds("spec.")
}

struct Parts<'a> {
    ai_workspace_id: &'a str,
    name_prefix: Option<&'a str>,
    queue_name: &'a str,
    data: &'a AiAppData,
    docker: &'a AiAppDocker,
    resource: &'a AiAppResource,
}

fn fail(prefix: &str, field: &str, problem: impl fmt::Display) -> Result<(), InvalidSpec> {
    Err(InvalidSpec {
        field: format!("{prefix}{field}"),
        problem: problem.to_string(),
    })
}

fn length(prefix: &str, field: &str, value: &str, min: u32, max: u32) -> Result<(), InvalidSpec> {
    let len = value.chars().count();
    if len < min as usize || len > max as usize {
        return fail(
            prefix,
            field,
            format_args!("must be {min} to {max} characters, got {len}"),
        );
    }
    Ok(())
}

fn range<T: PartialOrd + fmt::Display>(
    prefix: &str,
    field: &str,
    value: Option<T>,
    min: T,
    max: T,
) -> Result<(), InvalidSpec> {
    match value {
        Some(v) if v < min || v > max => fail(
            prefix,
            field,
            format_args!("must be {min} to {max}, got {v}"),
        ),
        _ => Ok(()),
    }
}

fn charset(
    prefix: &str,
    field: &str,
    value: &str,
    ok: fn(char) -> bool,
    what: &str,
) -> Result<(), InvalidSpec> {
    match value.chars().find(|c| !ok(*c)) {
        Some(c) => fail(prefix, field, format_args!("must be {what}, found {c:?}")),
        None => Ok(()),
    }
}

impl Parts<'_> {
    fn documented(&self, p: &str) -> Result<(), InvalidSpec> {
        length(p, "aiWorkspaceId", self.ai_workspace_id, 1, ID_MAX)?;
        if let Some(prefix) = self.name_prefix {
            length(p, "namePrefix", prefix, NAME_PREFIX_MIN, NAME_PREFIX_MAX)?;
        }
        if self.queue_name.is_empty() {
            return fail(p, "queueName", "must not be empty");
        }
        length(p, "docker.image", &self.docker.image, 1, IMAGE_MAX)?;
        length(p, "docker.command", &self.docker.command, 1, COMMAND_MAX)?;
        range(
            p,
            "resource.gpuCount",
            self.resource.gpu_count,
            GPU_COUNT_MIN,
            GPU_COUNT_MAX,
        )
    }

    fn bounds(&self, p: &str) -> Result<(), InvalidSpec> {
        charset(
            p,
            "aiWorkspaceId",
            self.ai_workspace_id,
            |c| c.is_ascii_alphanumeric(),
            "Base62 (letters and digits)",
        )?;
        if let Some(prefix) = self.name_prefix {
            let lower = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            charset(
                p,
                "namePrefix",
                prefix,
                lower,
                "lower-case letters and digits",
            )?;
        }
        length(p, "queueName", self.queue_name, 1, QUEUE_NAME_MAX)?;
        let queue_char = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
        charset(
            p,
            "queueName",
            self.queue_name,
            queue_char,
            "letters, digits, '_', '.' or '-'",
        )?;
        self.data_bounds(p)?;
        self.docker_bounds(p)?;
        let r = self.resource;
        range(p, "resource.cpuCount", r.cpu_count, 1, CPU_COUNT_MAX)?;
        if let Some(model) = &r.gpu_model {
            length(p, "resource.gpuModel", model, 1, GPU_MODEL_MAX)?;
        }
        range(p, "resource.memoryMb", r.memory_mb, 1, MEMORY_MB_MAX)
    }

    fn data_bounds(&self, p: &str) -> Result<(), InvalidSpec> {
        let (input, output) = (&self.data.input, &self.data.output);
        for (field, len) in [("data.input", input.len()), ("data.output", output.len())] {
            if len > DATA_ITEMS_MAX as usize {
                return fail(
                    p,
                    field,
                    format_args!("must have at most {DATA_ITEMS_MAX} items, got {len}"),
                );
            }
        }
        let paths = input
            .iter()
            .enumerate()
            .flat_map(|(i, d)| {
                [
                    (format!("data.input[{i}].hdfs"), &d.hdfs),
                    (format!("data.input[{i}].path"), &d.path),
                ]
            })
            .chain(output.iter().enumerate().flat_map(|(i, d)| {
                [
                    (format!("data.output[{i}].hdfs"), &d.hdfs),
                    (format!("data.output[{i}].path"), &d.path),
                ]
            }));
        for (field, value) in paths {
            length(p, &field, value, 1, PATH_MAX)?;
        }
        Ok(())
    }

    fn docker_bounds(&self, p: &str) -> Result<(), InvalidSpec> {
        let d = self.docker;
        if let Some(args) = &d.args {
            length(p, "docker.args", args, 0, COMMAND_MAX)?;
        }
        if let Some(workdir) = &d.workdir {
            length(p, "docker.workdir", workdir, 0, PATH_MAX)?;
        }
        if d.env.len() > ENV_MAX as usize {
            return fail(
                p,
                "docker.env",
                format_args!("must have at most {ENV_MAX} entries, got {}", d.env.len()),
            );
        }
        for (name, value) in &d.env {
            length(p, &format!("docker.env.{name}"), value, 0, ENV_VALUE_MAX)?;
        }
        if d.expose_tcp_ports.len() > PORTS_MAX as usize {
            let n = d.expose_tcp_ports.len();
            return fail(
                p,
                "docker.exposeTcpPorts",
                format_args!("must have at most {PORTS_MAX} items, got {n}"),
            );
        }
        for (i, port) in d.expose_tcp_ports.iter().enumerate() {
            range(
                p,
                &format!("docker.exposeTcpPorts[{i}]"),
                Some(*port),
                1,
                65535,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spec_with(patch: Value) -> AiAppSpec {
        let mut base = json!({
            "aiWorkspaceId": "6ZKSGoSJMMwctK257nxgiL",
            "docker": {"image": "img:1", "command": "python train.py"},
            "resource": {"gpuCount": 1}
        });
        merge(&mut base, patch);
        serde_json::from_value(base).unwrap()
    }

    fn merge(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(b), Value::Object(p)) => {
                for (k, v) in p {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, p) => *b = p,
        }
    }

    #[test]
    fn a_spec_within_every_limit_passes() {
        assert_eq!(validate_spec(&spec_with(json!({}))), Ok(()));
    }

    #[test]
    fn each_broken_limit_is_named_with_its_field() {
        let cases = [
            (
                json!({"resource": {"gpuCount": 9}}),
                "spec.resource.gpuCount: must be 1 to 8, got 9",
            ),
            (
                json!({"resource": {"gpuCount": 0}}),
                "spec.resource.gpuCount: must be 1 to 8, got 0",
            ),
            (
                json!({"aiWorkspaceId": "a".repeat(23)}),
                "spec.aiWorkspaceId: must be 1 to 22 characters, got 23",
            ),
            (
                json!({"aiWorkspaceId": ""}),
                "spec.aiWorkspaceId: must be 1 to 22 characters, got 0",
            ),
            (
                json!({"aiWorkspaceId": "ab-c"}),
                "spec.aiWorkspaceId: must be Base62 (letters and digits), found '-'",
            ),
            (
                json!({"namePrefix": "a"}),
                "spec.namePrefix: must be 2 to 8 characters, got 1",
            ),
            (
                json!({"namePrefix": "abcdefghi"}),
                "spec.namePrefix: must be 2 to 8 characters, got 9",
            ),
            (
                json!({"namePrefix": "AB"}),
                "spec.namePrefix: must be lower-case letters and digits, found 'A'",
            ),
            (
                json!({"queueName": ""}),
                "spec.queueName: must not be empty",
            ),
            (
                json!({"docker": {"image": ""}}),
                "spec.docker.image: must be 1 to 512 characters, got 0",
            ),
            (
                json!({"docker": {"command": ""}}),
                "spec.docker.command: must be 1 to 4096 characters, got 0",
            ),
            (
                json!({"docker": {"exposeTcpPorts": [80, 70000]}}),
                "spec.docker.exposeTcpPorts[1]: must be 1 to 65535, got 70000",
            ),
            (
                json!({"resource": {"cpuCount": 0}}),
                "spec.resource.cpuCount: must be 1 to 128, got 0",
            ),
            (
                json!({"resource": {"memoryMb": 0}}),
                "spec.resource.memoryMb: must be 1 to 4194304, got 0",
            ),
            (
                json!({"data": {"input": [{"hdfs": "", "path": "in"}]}}),
                "spec.data.input[0].hdfs: must be 1 to 1024 characters, got 0",
            ),
        ];
        for (patch, expected) in cases {
            let spec = spec_with(patch.clone());
            assert_eq!(
                validate_spec(&spec).map_err(|e| e.to_string()),
                Err(expected.to_owned()),
                "{patch}"
            );
        }
    }
}
