//! NCP API Gateway signature v2: pure functions, no I/O, no clock.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the epoch-millisecond timestamp that was signed.
pub const HEADER_TIMESTAMP: &str = "x-ncp-apigw-timestamp";
/// Header carrying the access key id.
pub const HEADER_ACCESS_KEY: &str = "x-ncp-iam-access-key";
/// Header carrying the Base64 HMAC-SHA256 signature.
pub const HEADER_SIGNATURE: &str = "x-ncp-apigw-signature-v2";

/// An NCP secret key. It prints as `<redacted>` so that no `{:?}` or `{}` can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The key itself; call sites are few and greppable on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for SecretKey {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for SecretKey {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

/// An NCP API key pair; `Debug` shows the access key id only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: SecretKey,
}

impl Credentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<SecretKey>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }
}

/// Milliseconds since the epoch, as the gateway expects in the timestamp header and
/// compares with its own clock.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The three headers that authenticate one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeaders {
    pub timestamp: String,
    pub access_key: String,
    pub signature: String,
}

impl SignedHeaders {
    /// `(name, value)` pairs in the order they are sent.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (HEADER_TIMESTAMP, self.timestamp.as_str()),
            (HEADER_ACCESS_KEY, self.access_key.as_str()),
            (HEADER_SIGNATURE, self.signature.as_str()),
        ]
    }
}

/// The exact text that is signed. `path_and_query` is what goes on the wire after the
/// host: the gateway signs the raw bytes, so nothing here re-encodes, sorts or appends.
pub fn string_to_sign(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    access_key: &str,
) -> String {
    format!("{method} {path_and_query}\n{timestamp}\n{access_key}")
}

/// Base64 (standard alphabet, padded) HMAC-SHA256 of [`string_to_sign`].
pub fn signature(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    access_key: &str,
    secret: &SecretKey,
) -> String {
    let mac = mac_of(method, path_and_query, timestamp, access_key, secret);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs one request at `timestamp_ms`; callers pass a fresh time on every attempt.
pub fn sign(
    credentials: &Credentials,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
) -> SignedHeaders {
    let timestamp = timestamp_ms.to_string();
    let signature = signature(
        method,
        path_and_query,
        &timestamp,
        &credentials.access_key,
        &credentials.secret_key,
    );
    SignedHeaders {
        timestamp,
        access_key: credentials.access_key.clone(),
        signature,
    }
}

/// Checks a received signature in constant time, as the gateway does.
pub fn verify(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    access_key: &str,
    secret: &SecretKey,
    received_signature: &str,
) -> bool {
    let Ok(received) = STANDARD.decode(received_signature) else {
        return false;
    };
    mac_of(method, path_and_query, timestamp, access_key, secret)
        .verify_slice(&received)
        .is_ok()
}

fn mac_of(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    access_key: &str,
    secret: &SecretKey,
) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign(method, path_and_query, timestamp, access_key).as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's vectors, computed independently with Python `hmac` and openssl.
    const VECTORS: [(&str, &str, &str, &str, &str, &str); 3] = [
        (
            "GET",
            "/photos/puppy.jpg?query1=&query2",
            "1658898041497",
            "17F9A6E9F72BD92ED94B",
            "EXAMPLESECRETKEY0123456789abcdefghijklmn",
            "pg9E94Mm+HI0Q+ImXjJSRHcxJUvqye2V64WYsousDhE=",
        ),
        (
            "POST",
            "/api/v2/aiapps/getDetail",
            "1658898041497",
            "17F9A6E9F72BD92ED94B",
            "EXAMPLESECRETKEY0123456789abcdefghijklmn",
            "RKX4VObHPBHt4dlLBbVLfJKOMUOsOJzO7daq3IMKNyo=",
        ),
        (
            "POST",
            "/api/v2/aiapps/submit",
            "1700000000000",
            "ACCESS_KEY_ID",
            "ncp-secret-example",
            "ZyK5fvTzBqujFiItlj7qzGXMKmL4yXNDMxQiyg3wRgY=",
        ),
    ];

    #[test]
    fn every_reference_vector_signs_to_its_published_signature() {
        for (method, uri, ts, ak, sk, expected) in VECTORS {
            assert_eq!(
                signature(method, uri, ts, ak, &SecretKey::from(sk)),
                expected,
                "{method} {uri}"
            );
        }
    }

    #[test]
    fn every_reference_vector_verifies_and_a_changed_one_does_not() {
        for (method, uri, ts, ak, sk, expected) in VECTORS {
            let secret = SecretKey::from(sk);
            assert!(verify(method, uri, ts, ak, &secret, expected));
            assert!(!verify(method, uri, "1", ak, &secret, expected));
            assert!(!verify(
                method,
                uri,
                ts,
                ak,
                &SecretKey::from("other"),
                expected
            ));
            assert!(!verify(method, uri, ts, ak, &secret, "not base64!"));
        }
    }

    #[test]
    fn the_string_to_sign_is_method_space_uri_then_lf_separated_timestamp_and_key() {
        assert_eq!(
            string_to_sign(
                "POST",
                "/api/v2/aiapps/getDetail",
                "1658898041497",
                "17F9A6E9F72BD92ED94B"
            ),
            "POST /api/v2/aiapps/getDetail\n1658898041497\n17F9A6E9F72BD92ED94B"
        );
    }

    #[test]
    fn a_query_string_is_signed_exactly_as_sent() {
        let queries = ["a=1&b=2", "b=2&a=1", "q=%2Fx%20y", "flag", "k=&k2"];
        for query in queries {
            let uri = format!("/api/v2/x?{query}");
            let signed = string_to_sign("GET", &uri, "1", "AK");
            assert!(
                signed.starts_with(&format!("GET /api/v2/x?{query}\n")),
                "{signed}"
            );
        }
        // Re-ordering the query changes the signature: nothing is normalised.
        let secret = SecretKey::from("s");
        assert_ne!(
            signature("GET", "/x?a=1&b=2", "1", "AK", &secret),
            signature("GET", "/x?b=2&a=1", "1", "AK", &secret)
        );
    }

    #[test]
    fn any_path_and_query_round_trip_and_any_changed_byte_breaks_the_signature() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet: Vec<char> = "abcXYZ019/-_.~%&=?+ ".chars().collect();
        for _ in 0..300 {
            let len = rng.usize(1..40);
            let tail: String = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let uri = format!("/{tail}");
            let secret = SecretKey::new(format!("secret-{}", rng.u32(..)));
            let ts = rng.u64(..).to_string();
            let sig = signature("POST", &uri, &ts, "AK", &secret);
            assert!(verify("POST", &uri, &ts, "AK", &secret, &sig), "{uri:?}");
            assert!(string_to_sign("POST", &uri, &ts, "AK").starts_with(&format!("POST {uri}\n")));
            let changed = format!("{uri}x");
            assert!(
                !verify("POST", &changed, &ts, "AK", &secret, &sig),
                "{uri:?}"
            );
            assert!(!verify("GET", &uri, &ts, "AK", &secret, &sig), "{uri:?}");
        }
    }

    #[test]
    fn a_path_without_query_gets_no_trailing_question_mark() {
        let credentials = Credentials::new("AK", "s");
        let headers = sign(&credentials, "POST", "/api/v2/aiapps/kill", 42);
        let expected = signature(
            "POST",
            "/api/v2/aiapps/kill",
            "42",
            "AK",
            &credentials.secret_key,
        );
        assert_eq!(headers.signature, expected);
        assert!(!string_to_sign("POST", "/api/v2/aiapps/kill", "42", "AK").contains('?'));
    }

    #[test]
    fn the_timestamp_header_is_the_string_that_was_signed() {
        let credentials = Credentials::new(
            "17F9A6E9F72BD92ED94B",
            "EXAMPLESECRETKEY0123456789abcdefghijklmn",
        );
        let headers = sign(
            &credentials,
            "POST",
            "/api/v2/aiapps/getDetail",
            1658898041497,
        );
        assert_eq!(headers.timestamp, "1658898041497");
        assert_eq!(headers.access_key, "17F9A6E9F72BD92ED94B");
        assert_eq!(
            headers.signature,
            "RKX4VObHPBHt4dlLBbVLfJKOMUOsOJzO7daq3IMKNyo="
        );
    }

    #[test]
    fn signatures_are_padded_standard_base64_of_32_bytes() {
        for ts in 0..50u64 {
            let s = sign(&Credentials::new("AK", "secret"), "POST", "/p", ts).signature;
            assert_eq!(s.len(), 44, "{s}");
            assert!(s.ends_with('='));
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
            );
        }
    }

    #[test]
    fn a_secret_key_never_prints_itself() {
        let credentials = Credentials::new("AK", "super-secret-value");
        assert_eq!(format!("{}", credentials.secret_key), "<redacted>");
        assert_eq!(format!("{:?}", credentials.secret_key), "<redacted>");
        let debug = format!("{credentials:?} {credentials:#?}");
        assert!(!debug.contains("super-secret-value"), "{debug}");
        assert!(debug.contains("AK"));
    }
}
