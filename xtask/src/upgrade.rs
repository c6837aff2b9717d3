//! `cargo xtask upgrade`: the rolling-upgrade test (`tests/integration/test_upgrade.py`) — a
//! three-node cluster of the release broker of an earlier version rolled to this one, one
//! broker at a time, under an acks=all producer and a consumer group; then the format level
//! raised, and the earlier version refused on a directory of the new format.
//!
//! The earlier version is a tag of this repository ([`FROM_TAG`]; its commit, [`FROM_COMMIT`],
//! where a clone lacks the tag), built once from its sources (`git archive`) in release and
//! kept as `<target>/upgrade-from/<tag>/broker` — later runs reuse it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::test::step;
use crate::{cargo, repo_root, target_dir};

/// The version the test upgrades from.
pub const FROM_TAG: &str = "v0.2.0";
/// Its commit, for a clone without tags.
pub const FROM_COMMIT: &str = "6f77ef28ab8375975fee001af054f24738b6a54c";

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// Only build (or find) the earlier version's broker and print its path.
    #[arg(long)]
    pub build_only: bool,
}

pub fn run(args: &UpgradeArgs) -> Result<()> {
    let old = old_broker()?;
    if args.build_only {
        println!("{}", old.display());
        return Ok(());
    }
    let new = crate::test::build_broker()?;
    let python = crate::test::python_env(&repo_root().join("tests/integration/requirements.txt"))?;
    let mut pytest = Command::new(python);
    pytest
        .args([
            "-m",
            "pytest",
            "tests/integration/test_upgrade.py",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(repo_root())
        .env("STILLWATER_BROKER_BIN", &new)
        .env(OLD_BROKER_ENV, &old);
    step(
        &format!("rolling upgrade from {FROM_TAG} (tests/integration/test_upgrade.py)"),
        pytest,
    )
}

/// The variable that gives the tests the earlier version's broker.
pub const OLD_BROKER_ENV: &str = "STILLWATER_OLD_BROKER_BIN";

/// The release broker of [`FROM_TAG`], built once and kept.
pub fn old_broker() -> Result<PathBuf> {
    let dir = target_dir().join("upgrade-from").join(FROM_TAG);
    let kept = dir.join("broker");
    if kept.is_file() {
        return Ok(kept);
    }
    let commit = resolve()?;
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    let mut archive = Command::new("sh");
    archive.arg("-c").arg(format!(
        "git -C '{}' archive --format=tar {commit} | tar -x -C '{}'",
        repo_root().display(),
        src.display()
    ));
    step(
        &format!("sources of {FROM_TAG} (git archive {commit})"),
        archive,
    )?;
    let build_target = dir.join("target");
    let mut build = cargo();
    build
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", &build_target)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "broker",
            "--bin",
            "broker",
        ]);
    step(
        &format!("the {FROM_TAG} release broker (cargo build --release -p broker, once)"),
        build,
    )?;
    let built = build_target.join("release").join("broker");
    std::fs::copy(&built, &kept)
        .with_context(|| format!("keeping {} as {}", built.display(), kept.display()))?;
    // Only the binary is kept: the build's 1-2 GB would sit in the cache for nothing.
    let _ = std::fs::remove_dir_all(&build_target);
    let _ = std::fs::remove_dir_all(&src);
    Ok(kept)
}

/// The commit of [`FROM_TAG`] (or [`FROM_COMMIT`] without the tag), checked to be in this
/// repository.
fn resolve() -> Result<String> {
    let root = repo_root();
    let rev = |what: &str| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&root)
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{what}^{{commit}}"),
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    if let Some(c) = rev(FROM_TAG) {
        if c != FROM_COMMIT {
            bail!("tag {FROM_TAG} is at {c}, not at {FROM_COMMIT} as xtask/src/upgrade.rs says");
        }
        return Ok(c);
    }
    rev(FROM_COMMIT).with_context(|| {
        format!(
            "neither tag {FROM_TAG} nor commit {FROM_COMMIT} is in {} (a shallow clone?): \
             the rolling-upgrade test builds that version",
            root.display()
        )
    })
}
