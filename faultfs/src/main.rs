//! `faultfs BACKING MOUNTPOINT`: mount the fault filesystem by hand and keep it mounted until
//! Ctrl-C or SIGTERM. (No faults from here: they are struck through the library's handle.)

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    use nix::sys::signal::{SigSet, Signal};

    /// Mount BACKING at MOUNTPOINT through the fault filesystem until Ctrl-C or SIGTERM.
    #[derive(Parser)]
    #[command(name = "faultfs")]
    struct Args {
        /// The directory whose files the mount shows.
        backing: std::path::PathBuf,
        /// Where to mount it.
        mountpoint: std::path::PathBuf,
        /// Unsynced data held in memory at most, in MiB.
        #[arg(long, default_value_t = 512)]
        dirty_mib: u64,
    }

    let args = Args::parse();
    // Blocked before any thread starts, so that only `wait` below takes them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(e) = signals.thread_block() {
        eprintln!("faultfs: blocking signals: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let options = faultfs::Options {
        dirty_bytes_max: args.dirty_mib << 20,
        ..faultfs::Options::default()
    };
    let mounted = match faultfs::FaultFs::mount_with(&args.backing, &args.mountpoint, &options) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("faultfs: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!(
        "faultfs: {} mounted at {}; Ctrl-C or SIGTERM unmounts",
        mounted.backing().display(),
        mounted.mountpoint().display()
    );
    match signals.wait() {
        Ok(sig) => eprintln!("faultfs: {sig}, unmounting"),
        Err(e) => eprintln!("faultfs: waiting for a signal: {e}; unmounting"),
    }
    match mounted.unmount() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultfs: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("faultfs: Linux only (it needs the kernel's FUSE)");
    std::process::ExitCode::FAILURE
}
