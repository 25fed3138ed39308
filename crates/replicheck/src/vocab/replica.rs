//! Replica names: `r0..r{N-1}`, generations, which count restarts (`r1#2`), and where
//! an incarnation listens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A replica's name, kept across restarts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaId(pub u16);

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl FromStr for ReplicaId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.strip_prefix('r')
            .and_then(|n| n.parse().ok())
            .map(ReplicaId)
            .ok_or_else(|| format!("`{s}` is not a replica name such as r0"))
    }
}

/// One incarnation of a replica: its name and how many times it has been started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Incarnation {
    pub id: ReplicaId,
    pub generation: u32,
}

impl Incarnation {
    pub fn first(id: ReplicaId) -> Self {
        Self { id, generation: 1 }
    }

    pub fn next(self) -> Self {
        Self {
            id: self.id,
            generation: self.generation + 1,
        }
    }
}

/// `r1` for a first start, `r1#2` after one restart.
impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.generation == 1 {
            write!(f, "{}", self.id)
        } else {
            write!(f, "{}#{}", self.id, self.generation)
        }
    }
}

impl FromStr for Incarnation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (id, generation) = match s.split_once('#') {
            Some((id, generation)) => (id, generation.parse().map_err(|_| format!("`{s}` has no valid generation"))?),
            None => (s, 1),
        };
        Ok(Self {
            id: id.parse()?,
            generation,
        })
    }
}

macro_rules! serde_as_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_string!(ReplicaId);
serde_as_string!(Incarnation);

/// Where a replica can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub replica: Incarnation,
    pub addr: std::net::SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let first = Incarnation::first(ReplicaId(1));
        assert_eq!(first.to_string(), "r1");
        assert_eq!(first.next().to_string(), "r1#2");
        assert_eq!("r1#2".parse::<Incarnation>().unwrap(), first.next());
        assert!("x1".parse::<ReplicaId>().is_err());
    }
}
