//! `cargo xtask package`: the Debian package — the release broker as
//! `/usr/bin/stillwater-broker`, its systemd unit (`packaging/stillwater.service`: Type=notify,
//! a dedicated user, LimitNOFILE, a bounded graceful stop), a commented configuration
//! (`packaging/broker.toml` as `/etc/stillwater/broker.toml`, a conffile) and the maintainer
//! scripts (`packaging/debian/`: the `stillwater` user and `/var/lib/stillwater`), built with
//! `dpkg-deb` from a staging tree under `<target>/package/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{repo_root, target_dir};

#[derive(Args, Debug)]
pub struct PackageArgs {
    /// Package this broker binary instead of building the release one (the tests package the
    /// debug build they already have).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Where to put the `.deb` (default: `<target>/package`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &PackageArgs) -> Result<()> {
    let deb = build(args.binary.clone(), args.out.clone())?;
    println!("{}", deb.display());
    Ok(())
}

/// Build the package; its path.
pub fn build(binary: Option<PathBuf>, out: Option<PathBuf>) -> Result<PathBuf> {
    let binary = match binary {
        Some(b) => b,
        None => crate::cluster::release_broker()?,
    };
    let version = version_of(&binary)?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let out = out.unwrap_or_else(|| target_dir().join("package"));
    let stage = target_dir()
        .join("package")
        .join(format!("stillwater_{version}_{arch}"));
    let _ = std::fs::remove_dir_all(&stage);
    let root = repo_root();
    let packaging = root.join("packaging");
    let put = |from: &Path, to: &str, mode: u32| -> Result<()> {
        let dest = stage.join(to);
        std::fs::create_dir_all(dest.parent().expect("a parent"))?;
        std::fs::copy(from, &dest)
            .with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    put(&binary, "usr/bin/stillwater-broker", 0o755)?;
    put(
        &packaging.join("stillwater.service"),
        "lib/systemd/system/stillwater.service",
        0o644,
    )?;
    put(
        &packaging.join("broker.toml"),
        "etc/stillwater/broker.toml",
        0o644,
    )?;
    put(
        &root.join("README.md"),
        "usr/share/doc/stillwater/README.md",
        0o644,
    )?;
    put(
        &root.join("docs/operations.md"),
        "usr/share/doc/stillwater/operations.md",
        0o644,
    )?;
    for script in ["postinst", "prerm", "postrm"] {
        put(
            &packaging.join("debian").join(script),
            &format!("DEBIAN/{script}"),
            0o755,
        )?;
    }
    let size_kb = dir_size(&stage)? / 1024;
    let control = format!(
        "Package: stillwater\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: Stillwater developers <stillwater@localhost>\n\
         Installed-Size: {size_kb}\n\
         Depends: adduser, libc6\n\
         Section: net\n\
         Priority: optional\n\
         Description: Kafka-compatible message broker, tested by deterministic simulation\n \
         Kafka clients talk to it as to Apache Kafka: produce, fetch, consumer groups,\n \
         transactions, ACLs, quotas; a single node or a Raft-replicated cluster. Runs as the\n \
         systemd service stillwater, configured in /etc/stillwater/broker.toml.\n"
    );
    std::fs::write(stage.join("DEBIAN/control"), control)?;
    std::fs::write(
        stage.join("DEBIAN/conffiles"),
        "/etc/stillwater/broker.toml\n",
    )?;
    std::fs::create_dir_all(&out)?;
    let deb = out.join(format!("stillwater_{version}_{arch}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&stage)
        .arg(&deb)
        .status()
        .context("running dpkg-deb (Debian's dpkg package)")?;
    if !status.success() {
        bail!("dpkg-deb --build failed ({status})");
    }
    Ok(deb)
}

/// The version `broker --version` prints.
fn version_of(binary: &Path) -> Result<String> {
    let text = output(Command::new(binary).arg("--version"))?;
    text.split_whitespace()
        .nth(1)
        .map(str::to_string)
        .with_context(|| format!("{} --version printed {text:?}", binary.display()))
}

fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
