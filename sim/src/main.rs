//! The `sim` binary: run, check, sweep and shrink scenarios ([`sim::commands`]). Use it through
//! `cargo xtask sim …`, which builds it with `--cfg madsim`.

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    eprintln!("sim: this binary must be built with --cfg madsim; use `cargo xtask sim ...`");
    std::process::ExitCode::from(2)
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    sim::commands::main()
}
