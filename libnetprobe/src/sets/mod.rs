//! Probe sets: one module per set. Each configures, loads and attaches its BPF programs and
//! turns what they report into domain types.
pub mod drop;
pub mod flow;
