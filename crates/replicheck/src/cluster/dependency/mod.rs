//! Shared infrastructure the replicas need, started by replicheck for the run from the
//! machine's own server binaries, each on a free loopback port with its data in the run's
//! directory, and each a chaos target like the replicas.

mod postgres;
mod redis;
mod service;

pub use postgres::Postgres;
pub use redis::{Redis, ping, wait_for_pong};
pub use service::Service;
