//! The model reference grammar the CRD admits and the server accepts, so a spec the apiserver
//! admits never crash-loops the server on its `--model` flag: [`ModelRef`] is the `--model` (and
//! `POST /model/load`) value, written by the operator and the CLI and parsed by the server.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Models compiled into `sluice-server` (deterministic random weights, generated at start).
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Builtin {
    /// Small random-weight model for demos and tests (CPU friendly: about 10 MB).
    Tiny,
    /// TinyLlama-1.1B's shape with random weights, for benchmarks (about 4.4 GB in f32).
    Tinyllama,
}

impl Builtin {
    pub const ALL: &'static [Builtin] = <Self as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where the server's model comes from: the grammar of `--model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// `builtin:NAME`.
    Builtin(Builtin),
    /// A checkpoint directory (`config.json`, `*.safetensors`, `tokenizer.json`) or a `.gguf`
    /// file: any other non-empty value.
    Path(PathBuf),
    /// `hf:ORG/NAME[@REVISION]` (revision `main` when omitted), read from the local Hugging Face
    /// cache; never downloaded.
    HuggingFace { repo: String, revision: String },
}

/// Prefix of a built-in model reference.
const BUILTIN_PREFIX: &str = "builtin:";
/// Prefix of a Hugging Face cache reference.
const HF_PREFIX: &str = "hf:";

/// The CEL rule on `spec.model.huggingFace.repoId`: what [`valid_hf_repo`] accepts.
pub const HF_REPO_CEL: &str = "self.matches('^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$') && !self.contains('..')";

/// A Hugging Face repository id: `ORG/NAME`, each part starting with a letter or digit, then
/// letters, digits, `.`, `_` or `-`, and no `..` anywhere (the parts become directory names in
/// the cache).
pub fn valid_hf_repo(repo: &str) -> bool {
    let part = |p: &str| {
        p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    !repo.contains("..")
        && repo
            .split_once('/')
            .is_some_and(|(o, n)| part(o) && part(n))
}

/// Repository ids on both sides of the rule.
pub const HF_REPO_SAMPLES: &[(&str, bool)] = &[
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", true),
    ("org/name_2", true),
    ("org", false),
    ("a/b/c", false),
    ("org/na..me", false),
    ("../x", false),
    ("org/.hidden", false),
    ("-org/name", false),
    ("org/sp ace", false),
    ("", false),
];

impl FromStr for ModelRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(name) = s.strip_prefix(BUILTIN_PREFIX) {
            let names: Vec<&str> = Builtin::ALL.iter().map(|b| b.as_str()).collect();
            return name.parse().map(Self::Builtin).map_err(|_| {
                format!(
                    "unknown built-in model {name:?} (expected one of {})",
                    names.join(", ")
                )
            });
        }
        if let Some(spec) = s.strip_prefix(HF_PREFIX) {
            let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
            if !(valid_hf_repo(repo) && valid_hf_revision(revision)) {
                return Err(format!(
                    "invalid Hugging Face model {spec:?} (expected ORG/NAME[@REVISION])"
                ));
            }
            return Ok(Self::HuggingFace {
                repo: repo.into(),
                revision: revision.into(),
            });
        }
        if s.is_empty() {
            return Err("model must not be empty".into());
        }
        Ok(Self::Path(PathBuf::from(s)))
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin(b) => write!(f, "{BUILTIN_PREFIX}{}", b.as_str()),
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::HuggingFace { repo, revision } => write!(f, "{HF_PREFIX}{repo}@{revision}"),
        }
    }
}

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
    fn model_refs_round_trip_and_bad_ones_are_refused() {
        for (text, want) in [
            ("builtin:tiny", ModelRef::Builtin(Builtin::Tiny)),
            ("builtin:tinyllama", ModelRef::Builtin(Builtin::Tinyllama)),
            ("/models/m.gguf", ModelRef::Path("/models/m.gguf".into())),
            (
                "hf:org/name@refs/pr/1",
                ModelRef::HuggingFace {
                    repo: "org/name".into(),
                    revision: "refs/pr/1".into(),
                },
            ),
        ] {
            let parsed: ModelRef = text.parse().unwrap();
            assert_eq!(parsed, want);
            assert_eq!(parsed.to_string(), text);
        }
        let default_rev: ModelRef = "hf:org/name".parse().unwrap();
        assert_eq!(default_rev.to_string(), "hf:org/name@main");
        for bad in [
            "",
            "  ",
            "builtin:huge",
            "hf:org",
            "hf:org/../x",
            "hf:a/b/c",
            "hf:org/name@../x",
            "hf:/name",
        ] {
            assert!(bad.parse::<ModelRef>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn samples_say_what_the_grammar_does() {
        for &(rev, ok) in HF_REVISION_SAMPLES {
            assert_eq!(valid_hf_revision(rev), ok, "{rev:?}");
        }
        assert!(!valid_hf_revision(&"a".repeat(HF_REVISION_MAX_LEN + 1)));
        for &(repo, ok) in HF_REPO_SAMPLES {
            assert_eq!(valid_hf_repo(repo), ok, "{repo:?}");
        }
    }
}
