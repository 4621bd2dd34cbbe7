//! How `submit` and `apps` reach the Data Forest API: the key pair, the endpoint and the
//! timeout, as one set of flags (each with its environment variable) that both share.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueHint;

use super::CliError;
use crate::dataforest::{
    ApiError, ClientConfig, Credentials, DEFAULT_ENDPOINT, DataForestClient, RetryPolicy, SecretKey,
};
use dataforest_common::duration::parse_duration;

/// Environment variable holding the access key id.
pub const ACCESS_KEY_ENV: &str = "NCP_ACCESS_KEY";
/// Environment variable holding the secret key.
pub const SECRET_KEY_ENV: &str = "NCP_SECRET_KEY";
/// Environment variable holding the API base URL.
pub const ENDPOINT_ENV: &str = "DATAFOREST_ENDPOINT";

/// The connection flags. `Debug` shows the secret key as `<redacted>`.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Connection")]
pub struct ApiArgs {
    /// NCP API access key id.
    #[arg(long, env = ACCESS_KEY_ENV, value_name = "ID")]
    pub access_key: Option<String>,
    /// NCP API secret key. The environment or --secret-key-file is safer: a flag shows in
    /// the process list.
    #[arg(
        long,
        env = SECRET_KEY_ENV,
        hide_env_values = true,
        value_name = "KEY",
        value_parser = secret_key,
        // A key starting with '-' must be taken as the value, never echoed back as an
        // unknown flag.
        allow_hyphen_values = true
    )]
    pub secret_key: Option<SecretKey>,
    /// File holding the secret key (surrounding whitespace is ignored); it takes
    /// precedence over --secret-key and NCP_SECRET_KEY.
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub secret_key_file: Option<PathBuf>,
    /// API base URL.
    #[arg(long, env = ENDPOINT_ENV, value_name = "URL", default_value = DEFAULT_ENDPOINT, value_hint = ValueHint::Url)]
    pub endpoint: String,
    /// Bound on each API call, e.g. 500ms, 30s, 2m.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "30s")]
    pub timeout: Duration,
}

fn secret_key(text: &str) -> Result<SecretKey, std::convert::Infallible> {
    Ok(SecretKey::from(text))
}

/// The project's one duration format, less zero, which would time out every call.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("{text:?} is no time at all: give more than 0s")),
        duration => Ok(duration),
    }
}

impl ApiArgs {
    /// The key pair: flags or environment, the secret from `--secret-key-file` first.
    /// Values are trimmed; an empty one counts as unset.
    pub fn credentials(&self) -> Result<Credentials, CliError> {
        self.credentials_with(|path| std::fs::read_to_string(path))
    }

    /// [`ApiArgs::credentials`] with the file system given, for tests.
    pub fn credentials_with(
        &self,
        read_file: impl Fn(&Path) -> io::Result<String>,
    ) -> Result<Credentials, CliError> {
        let access_key = non_empty(self.access_key.as_deref()).ok_or(CliError::MissingAccessKey)?;
        let secret_key = match &self.secret_key_file {
            Some(path) => {
                let text = read_file(path).map_err(|source| CliError::SecretKeyFile {
                    path: path.clone(),
                    source,
                })?;
                let text = non_empty(Some(&text))
                    .ok_or_else(|| CliError::EmptySecretKeyFile { path: path.clone() })?;
                SecretKey::from(text)
            }
            None => {
                let given = self.secret_key.as_ref().map(SecretKey::expose);
                SecretKey::from(non_empty(given).ok_or(CliError::MissingSecretKey)?)
            }
        };
        Ok(Credentials::new(access_key, secret_key))
    }

    /// The endpoint; an empty `DATAFOREST_ENDPOINT` counts as unset.
    pub fn endpoint(&self) -> &str {
        non_empty(Some(&self.endpoint)).unwrap_or(DEFAULT_ENDPOINT)
    }

    /// A client with these credentials, endpoint and timeout, retrying as `retry` says.
    pub fn connect(&self, retry: RetryPolicy) -> Result<ApiConnection, CliError> {
        let credentials = self.credentials()?;
        let access_key = credentials.access_key.clone();
        let config = ClientConfig {
            endpoint: self.endpoint().to_owned(),
            timeout: self.timeout,
            retry,
            ..ClientConfig::default()
        };
        let client = DataForestClient::new(config, credentials)?;
        Ok(ApiConnection { client, access_key })
    }
}

/// A client, and the access key id it signs with, which messages may name.
#[derive(Debug)]
pub struct ApiConnection {
    pub client: DataForestClient,
    pub access_key: String,
}

impl ApiConnection {
    /// A failed call as the command reports it; see [`CliError::from_api`].
    pub fn failure(
        &self,
        error: ApiError,
        account_id: Option<&str>,
        hint: impl FnOnce(&ApiError) -> Option<String>,
    ) -> CliError {
        CliError::from_api(error, &self.access_key, account_id, hint)
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(access: Option<&str>, secret: Option<&str>, file: Option<&str>) -> ApiArgs {
        ApiArgs {
            access_key: access.map(str::to_owned),
            secret_key: secret.map(SecretKey::from),
            secret_key_file: file.map(PathBuf::from),
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            timeout: Duration::from_secs(30),
        }
    }

    fn no_file(path: &Path) -> io::Result<String> {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no {}", path.display()),
        ))
    }

    #[test]
    fn a_key_pair_from_flags_or_environment_is_trimmed() {
        let c = args(Some(" AK1 "), Some("sk-1\n"), None)
            .credentials_with(no_file)
            .unwrap();
        assert_eq!(c.access_key, "AK1");
        assert_eq!(c.secret_key.expose(), "sk-1");
    }

    #[test]
    fn the_secret_key_file_wins_over_the_flag_and_is_trimmed() {
        let read = |path: &Path| {
            assert_eq!(path, Path::new("/keys/sk"));
            Ok("from-file\n".to_owned())
        };
        let c = args(Some("AK1"), Some("from-flag"), Some("/keys/sk"))
            .credentials_with(read)
            .unwrap();
        assert_eq!(c.secret_key.expose(), "from-file");
    }

    #[test]
    fn missing_or_empty_keys_name_the_variable_and_the_flag() {
        for (access, secret, variable, flag) in [
            (None, Some("sk"), ACCESS_KEY_ENV, "--access-key"),
            (Some(""), Some("sk"), ACCESS_KEY_ENV, "--access-key"),
            (Some("AK1"), None, SECRET_KEY_ENV, "--secret-key-file"),
            (Some("AK1"), Some("  "), SECRET_KEY_ENV, "--secret-key-file"),
        ] {
            let e = args(access, secret, None)
                .credentials_with(no_file)
                .unwrap_err();
            let message = e.to_string();
            assert!(
                message.contains(variable) && message.contains(flag),
                "{message}"
            );
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn an_unreadable_or_empty_secret_key_file_is_bad_input_naming_the_path() {
        let e = args(Some("AK1"), Some("sk"), Some("/keys/none"))
            .credentials_with(no_file)
            .unwrap_err();
        assert!(e.to_string().contains("/keys/none"), "{e}");
        assert_eq!(e.exit_code(), 2);
        let e = args(Some("AK1"), None, Some("/keys/empty"))
            .credentials_with(|_| Ok("\n".to_owned()))
            .unwrap_err();
        assert!(e.to_string().contains("/keys/empty is empty"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn the_debug_output_redacts_the_secret_key() {
        let debug = format!("{:?}", args(Some("AK1"), Some("very-secret"), None));
        assert!(
            debug.contains("AK1") && debug.contains("<redacted>"),
            "{debug}"
        );
        assert!(!debug.contains("very-secret"), "{debug}");
    }

    #[test]
    fn an_empty_endpoint_means_the_public_gateway() {
        let mut a = args(None, None, None);
        a.endpoint = String::new();
        assert_eq!(a.endpoint(), DEFAULT_ENDPOINT);
        a.endpoint = "http://127.0.0.1:9".to_owned();
        assert_eq!(a.endpoint(), "http://127.0.0.1:9");
    }

    #[test]
    fn timeouts_take_the_one_duration_format_and_refuse_zero_and_bare_numbers() {
        assert_eq!(positive_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(positive_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(
            positive_duration("30")
                .unwrap_err()
                .contains("like 500ms, 30s or 2m")
        );
        assert!(
            positive_duration("0s")
                .unwrap_err()
                .contains("more than 0s")
        );
    }
}
