//! The `sim` binary. Built with `--cfg madsim`: run, check, sweep and shrink scenarios in
//! simulation ([`sim::commands`]; use it through `cargo xtask sim …`). Built normally: `sim
//! real`, a scenario on real broker processes ([`sim::real`]; `cargo xtask sim real …`).

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("real") => sim::real::command::main(),
        Some("fidelity") => sim::real::command::fidelity_main(),
        _ => {
            eprintln!(
                "sim: built without --cfg madsim, this binary only runs `sim real SCENARIO` and \
                 `sim fidelity`; use `cargo xtask sim ...` for simulation"
            );
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    sim::commands::main()
}
