//! The model reference grammar the CRD admits and the server accepts, so a spec the apiserver
//! admits never crash-loops the server on its `--model` flag.

/// The CEL rule on `spec.model.huggingFace.revision`: what [`valid_hf_revision`] accepts.
pub const HF_REVISION_CEL: &str = "self.matches('^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$') && !self.contains('..')";

/// Longest revision accepted (the CRD's `maxLength`).
pub const HF_REVISION_MAX_LEN: usize = 255;

/// A Hugging Face revision: a branch, tag or commit, or a ref path such as `refs/pr/1`. Its
/// slash-separated components are non-empty, start with neither `.` nor `/`, and no `..`
/// appears (git's ref-name rules, which also keep it inside the cache's `refs/` directory).
pub fn valid_hf_revision(revision: &str) -> bool {
    !revision.is_empty()
        && revision.len() <= HF_REVISION_MAX_LEN
        && !revision.contains("..")
        && revision.split('/').all(|part| {
            part.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// Revisions on both sides of the rule, for the tests that hold the CRD, the operator and the
/// server to it.
pub const HF_REVISION_SAMPLES: &[(&str, bool)] = &[
    ("main", true),
    ("v1.0", true),
    ("41b61a33a2483885c981aa79e0df6b32407ed873", true),
    ("refs/pr/1", true),
    ("release_2024-01", true),
    ("", false),
    ("../etc", false),
    ("a/../b", false),
    ("a..b", false),
    (".hidden", false),
    ("a//b", false),
    ("/abs", false),
    ("trailing/", false),
    ("sp ace", false),
    ("a@b", false),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_say_what_the_grammar_does() {
        for &(rev, ok) in HF_REVISION_SAMPLES {
            assert_eq!(valid_hf_revision(rev), ok, "{rev:?}");
        }
        assert!(!valid_hf_revision(&"a".repeat(HF_REVISION_MAX_LEN + 1)));
    }
}
