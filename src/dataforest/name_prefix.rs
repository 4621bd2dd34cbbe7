//! Derives the `namePrefix` of an AiApp that sets none: unique to the AiApp, so that
//! recovery after a lost response finds its app by name and no other.

use sha2::{Digest, Sha256};

use crate::crd::limits::{NAME_PREFIX_MAX, NAME_PREFIX_MIN};

/// Letters of the name kept when a UID is given; the rest of the prefix is the UID's hash.
const STEM_WITH_UID: usize = 3;

/// A valid prefix (lower-case letters and digits, 2 to 8 characters) for an AiApp named
/// `name`. With a UID: up to three characters of the name for people, then a base-36
/// hash of the UID for uniqueness (two AiApps of the same name, one recreated after the
/// other, get different prefixes). Without one: the name itself, padded by a hash.
pub fn derive(name: &str, uid: Option<&str>) -> String {
    let max = NAME_PREFIX_MAX as usize;
    let stem: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match uid {
        Some(uid) => {
            let stem: String = stem.chars().take(STEM_WITH_UID).collect();
            let hash = base36_hash(uid, max - stem.len());
            format!("{stem}{hash}")
        }
        None => {
            let mut prefix: String = stem.chars().take(max).collect();
            if prefix.len() < NAME_PREFIX_MIN as usize {
                prefix.push_str(&base36_hash(name, max - prefix.len()));
            }
            prefix
        }
    }
}

/// The prefix of attempt `attempt` of an AiApp that sets none. The first attempt's is
/// [`derive`]'s, as before attempts had prefixes of their own; each later one is derived
/// from the attempt number as well, so recovery can tell by an app's name alone which
/// attempt made it.
pub fn derive_for_attempt(name: &str, uid: Option<&str>, attempt: i32) -> String {
    if attempt <= 1 {
        return derive(name, uid);
    }
    let seed = format!("{}/attempt-{attempt}", uid.unwrap_or(name));
    derive(name, Some(&seed))
}

/// Whether `prefix` is one the operator derived for some attempt of this AiApp (up to
/// `attempts`): an app under it is certainly this AiApp's, since no person chose it.
pub fn is_derived(name: &str, uid: Option<&str>, attempts: i32, prefix: &str) -> bool {
    (1..=attempts.max(1)).any(|attempt| derive_for_attempt(name, uid, attempt) == prefix)
}

/// Whether `prefix` is one the operator would send (the CRD's pattern and bounds).
pub fn is_valid(prefix: &str) -> bool {
    (NAME_PREFIX_MIN as usize..=NAME_PREFIX_MAX as usize).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn base36_hash(input: &str, len: usize) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(input.as_bytes());
    let mut n = u128::from_be_bytes(
        digest[..16]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    );
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_attempt_gets_its_own_valid_prefix_and_the_first_keeps_the_old_one() {
        let uid = Some("0f1e2d3c-aaaa-bbbb-cccc-111122223333");
        let prefixes: Vec<String> = (1..=12)
            .map(|attempt| derive_for_attempt("train-resnet", uid, attempt))
            .collect();
        assert_eq!(prefixes[0], derive("train-resnet", uid));
        let distinct: std::collections::HashSet<&String> = prefixes.iter().collect();
        assert_eq!(distinct.len(), prefixes.len(), "{prefixes:?}");
        assert!(
            prefixes.iter().all(|p| is_valid(p) && p.starts_with("tra")),
            "{prefixes:?}"
        );
        assert!(is_derived("train-resnet", uid, 12, &prefixes[11]));
        assert!(!is_derived("train-resnet", uid, 11, &prefixes[11]));
        assert!(!is_derived("train-resnet", uid, 12, "mine"));
        let other = derive_for_attempt("train-resnet", Some("another-uid"), 2);
        assert_ne!(other, prefixes[1]);
    }

    #[test]
    fn a_derived_prefix_is_always_valid() {
        let names = [
            "",
            "a",
            "ab",
            "train-resnet50",
            "Ünïcödé",
            "---",
            "X",
            "a-b-c-d-e-f-g-h-i-j",
            "123456789012",
        ];
        let uids = [None, Some("0f1e2d3c-aaaa-bbbb-cccc-111122223333"), Some("")];
        for name in names {
            for uid in uids {
                let p = derive(name, uid);
                assert!(is_valid(&p), "{name:?} {uid:?} -> {p:?}");
            }
        }
    }

    #[test]
    fn the_prefix_starts_with_the_name_so_people_recognise_it() {
        assert!(derive("Train-ResNet", Some("u1")).starts_with("tra"));
        assert_eq!(derive("trainer", None), "trainer");
        assert_eq!(derive("my-long-training-job", None), "mylongtr");
    }

    #[test]
    fn the_same_inputs_give_the_same_prefix_and_another_uid_another() {
        let a = derive("job", Some("uid-1"));
        assert_eq!(a, derive("job", Some("uid-1")));
        assert_ne!(a, derive("job", Some("uid-2")));
        assert_eq!(a.len(), NAME_PREFIX_MAX as usize);
    }

    #[test]
    fn validity_follows_the_documented_bounds_and_the_safe_alphabet() {
        for (p, ok) in [
            ("ab", true),
            ("a", false),
            ("abcdefgh", true),
            ("abcdefghi", false),
            ("Ab", false),
            ("a-b", false),
            ("a1", true),
        ] {
            assert_eq!(is_valid(p), ok, "{p}");
        }
    }
}
