//! The simulation testbed: the broker's second world (`../shared/DESIGN.md`, "The simulator").
//!
//! Built only with `--cfg madsim` (`cargo xtask test` does this in its own target directory);
//! in a normal build this crate is empty.
//!
//! So far: [`disk`], the simulated disk (madsim's own `fs` cannot lose data, stall or fail).

#[cfg(madsim)]
pub mod disk;
