//! The bottom layer: the words every other layer speaks, with no behaviour that needs a
//! higher layer. Replica names and incarnations, the routing policies that pick among
//! them, and the kinds of findings, experiments and backends.
//!
//! Moving a word here lets a lower layer name it without importing the layer that acts
//! on it (see the layer table in the crate's docs).

pub mod backend;
pub mod experiment;
pub mod finding;
pub mod replica;
pub mod routing;
