//! The simulation testbed. It is built by the simulation issue; until then it is an empty crate
//! so that the workspace layout of DESIGN.md exists from the start.
