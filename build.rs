//! Build script of `dataforest-operator`: records the commit the binary is built from, for
//! `--version`, as the compile-time variable `DATAFOREST_COMMIT`.
//!
//! In order: `DATAFOREST_BUILD_COMMIT` when set (an image build has no `.git`, so the
//! Dockerfile passes it as a build argument); else `git rev-parse --short=12 HEAD`; else
//! `unknown`. No `-dirty` mark: whether the tree is dirty changes with every edit, which
//! the build script would have to watch file by file; the commit alone is reproducible.
//!
//! The script reruns when that variable, `.git/HEAD`, the branch HEAD points to or
//! `packed-refs` change, and not at every build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set by the Dockerfile (or anyone) to name the commit without asking git.
const COMMIT_OVERRIDE_ENV: &str = "DATAFOREST_BUILD_COMMIT";
/// What the binary reads with `env!`.
const COMMIT_ENV: &str = "DATAFOREST_COMMIT";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={COMMIT_OVERRIDE_ENV}");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));

    let commit = match std::env::var(COMMIT_OVERRIDE_ENV) {
        Ok(given) if !given.trim().is_empty() => checked_override(given.trim()),
        _ => {
            for path in git_files_naming_head(&manifest_dir) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            git(&manifest_dir, &["rev-parse", "--short=12", "HEAD"])
                .unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env={COMMIT_ENV}={commit}");
}

/// The override goes into a cargo directive and the version line: one short token only.
fn checked_override(given: &str) -> String {
    let fits = given.len() <= 64
        && given
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    assert!(
        fits,
        "{COMMIT_OVERRIDE_ENV} must be a commit id (at most 64 letters, digits, '.', '-', '_' or '+'), got {given:?}"
    );
    given.to_owned()
}

/// The files whose change means HEAD names another commit: HEAD itself, the loose ref it
/// points to (or, while that ref is packed, its folder, where a new commit writes it), and
/// `packed-refs`. Only existing paths: cargo reruns every time for a missing one.
fn git_files_naming_head(manifest_dir: &Path) -> Vec<PathBuf> {
    let Some(head) = git_path(manifest_dir, "HEAD") else {
        return Vec::new();
    };
    let mut watched = vec![head.clone()];
    let branch = std::fs::read_to_string(&head)
        .ok()
        .and_then(|text| text.strip_prefix("ref:").map(|r| r.trim().to_owned()));
    if let Some(branch_ref) = branch.and_then(|r| git_path(manifest_dir, &r)) {
        if branch_ref.exists() {
            watched.push(branch_ref);
        } else if let Some(folder) = branch_ref.parent().filter(|f| f.exists()) {
            watched.push(folder.to_owned());
        }
    }
    watched.extend(git_path(manifest_dir, "packed-refs").filter(|p| p.exists()));
    watched
}

/// Where git keeps `name` for this checkout (worktrees keep HEAD and refs apart).
fn git_path(manifest_dir: &Path, name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(git(manifest_dir, &["rev-parse", "--git-path", name])?);
    Some(if path.is_absolute() {
        path
    } else {
        manifest_dir.join(path)
    })
}

/// One line of git's output, or None when git is missing, fails, or this is no checkout.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.trim();
    (output.status.success() && !line.is_empty()).then(|| line.to_owned())
}
