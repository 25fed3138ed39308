//! Routing policies: which replica a request goes to. Pure functions, used by the planner
//! (which resolves every virtual user request ahead of the run, from the seed) and by the
//! balancer for traffic that arrives without a planned route (`replicheck up`).

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::vocab::replica::ReplicaId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoutingPolicy {
    /// A seeded random replica for each request.
    Random,
    /// Replicas in turn.
    RoundRobin,
    /// The replica that served this user's previous request (a random one at first).
    Sticky,
    /// Always a replica other than the one that served this user's previous request.
    Switch,
    /// Always this replica.
    Pin(ReplicaId),
}

impl RoutingPolicy {
    /// Picks among `candidates` (the replicas that can take traffic, in name order).
    /// `previous` is the replica of this user's previous request and `turn` counts the
    /// requests routed so far. Returns `None` only when no candidate fits.
    pub fn choose<R: Rng + ?Sized>(
        &self,
        candidates: &[ReplicaId],
        previous: Option<ReplicaId>,
        turn: usize,
        rng: &mut R,
    ) -> Option<ReplicaId> {
        match self {
            RoutingPolicy::Random => candidates.choose(rng).copied(),
            RoutingPolicy::RoundRobin => match candidates.len() {
                0 => None,
                n => Some(candidates[turn % n]),
            },
            RoutingPolicy::Sticky => previous
                .filter(|p| candidates.contains(p))
                .or_else(|| candidates.choose(rng).copied()),
            RoutingPolicy::Switch => {
                let others: Vec<ReplicaId> = candidates.iter().copied().filter(|c| Some(*c) != previous).collect();
                others.choose(rng).copied().or_else(|| candidates.first().copied())
            }
            RoutingPolicy::Pin(replica) => candidates.contains(replica).then_some(*replica),
        }
    }
}

impl fmt::Display for RoutingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutingPolicy::Random => f.write_str("random"),
            RoutingPolicy::RoundRobin => f.write_str("round-robin"),
            RoutingPolicy::Sticky => f.write_str("sticky"),
            RoutingPolicy::Switch => f.write_str("switch"),
            RoutingPolicy::Pin(replica) => write!(f, "pin:{replica}"),
        }
    }
}

impl FromStr for RoutingPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(RoutingPolicy::Random),
            "round-robin" => Ok(RoutingPolicy::RoundRobin),
            "sticky" => Ok(RoutingPolicy::Sticky),
            "switch" => Ok(RoutingPolicy::Switch),
            other => match other.strip_prefix("pin:") {
                Some(replica) => replica.parse().map(RoutingPolicy::Pin),
                None => Err(format!(
                    "`{other}` is not a routing policy: use random, round-robin, sticky, switch or pin:rK"
                )),
            },
        }
    }
}

impl Serialize for RoutingPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RoutingPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const THREE: [ReplicaId; 3] = [ReplicaId(0), ReplicaId(1), ReplicaId(2)];

    #[test]
    fn switch_never_repeats_the_previous_replica() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut previous = None;
        for turn in 0..200 {
            let next = RoutingPolicy::Switch.choose(&THREE, previous, turn, &mut rng).unwrap();
            assert_ne!(Some(next), previous);
            previous = Some(next);
        }
    }

    #[test]
    fn sticky_keeps_the_previous_replica_while_it_is_a_candidate() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let sticky = RoutingPolicy::Sticky;
        assert_eq!(sticky.choose(&THREE, Some(ReplicaId(2)), 0, &mut rng), Some(ReplicaId(2)));
        let without_r2 = &THREE[..2];
        assert!(without_r2.contains(&sticky.choose(without_r2, Some(ReplicaId(2)), 0, &mut rng).unwrap()));
    }

    #[test]
    fn round_robin_and_pin_are_deterministic() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let picks: Vec<_> = (0..4).map(|t| RoutingPolicy::RoundRobin.choose(&THREE, None, t, &mut rng).unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2, 0]);
        let pin = RoutingPolicy::Pin(ReplicaId(1));
        assert_eq!(pin.choose(&THREE, None, 0, &mut rng), Some(ReplicaId(1)));
        assert_eq!(pin.choose(&THREE[..1], None, 0, &mut rng), None);
    }

    #[test]
    fn policies_parse_and_print() {
        for text in ["random", "round-robin", "sticky", "switch", "pin:r3"] {
            assert_eq!(text.parse::<RoutingPolicy>().unwrap().to_string(), text);
        }
        assert!("pin:x".parse::<RoutingPolicy>().is_err());
        assert!("fastest".parse::<RoutingPolicy>().unwrap_err().contains("not a routing policy"));
    }
}
