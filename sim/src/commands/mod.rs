//! What the `sim` binary does.

pub mod shrink;
