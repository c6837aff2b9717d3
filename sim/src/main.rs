//! The `sim` binary. Built with `--cfg madsim`: run, check, sweep and shrink scenarios in
//! simulation ([`sim::commands`]; use it through `cargo xtask sim …`). Built normally: `sim
//! real`, a scenario on real broker processes ([`sim::real`]; `cargo xtask sim real …`).

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() != Some("real") {
        eprintln!(
            "sim: built without --cfg madsim, this binary only runs `sim real SCENARIO`; \
             use `cargo xtask sim ...` for simulation"
        );
        return std::process::ExitCode::from(2);
    }
    sim::real::command::main()
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    sim::commands::main()
}
