//! The condition reasons after which nothing changes until a person acts: the one list
//! that the `Stalled` condition, `status.reason` and the Argo CD health check all follow.

/// Reasons that no retry cures: the spec, a Secret, an annotation, the keys or the
/// endpoint must change, or a person must tell an ambiguous submit apart. An AiApp whose
/// phase these explain is `Stalled` (kstatus) and Degraded (Argo CD), whatever its phase,
/// so a running app whose keys stopped working shows it too.
pub const NEEDS_A_PERSON: &[&str] = &[
    // Credentials and where they may be sent.
    "CredentialsNotFound",
    "SecretUnreadable",
    "EndpointNotAllowed",
    // Secrets of spec.docker.envFrom.
    "EnvSecretNotFound",
    "EnvSecretKeyNotFound",
    "EnvSecretKeyInvalid",
    "EnvTooLarge",
    // The dataforest.dev/adopt-id annotation.
    "InvalidAnnotation",
    "AdoptIdClaimed",
    // What Data Forest refused for good (documented errors, see docs/status.md).
    "Unauthorized",
    "InvalidSpec",
    "EndpointNotFound",
    "NotFound",
    "ApiError",
    // Phase Unknown: which app is this AiApp's is for a person to say.
    "SubmissionAmbiguous",
    "AppNotFound",
];

/// Whether `reason` waits for a person (see [`NEEDS_A_PERSON`]).
pub fn needs_a_person(reason: &str) -> bool {
    NEEDS_A_PERSON.contains(&reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_reasons_do_not_wait_for_a_person() {
        for retried in [
            "QuotaExceeded",
            "Throttled",
            "ApiUnavailable",
            "ClockSkew",
            "Paused",
        ] {
            assert!(!needs_a_person(retried), "{retried}");
        }
        assert!(needs_a_person("InvalidSpec"));
    }

    #[test]
    fn the_list_names_each_reason_once() {
        let mut names = NEEDS_A_PERSON.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), NEEDS_A_PERSON.len());
    }
}
