//! What a refused or lost artifact rested on, read from the shapes of its values (see
//! `shape.rs`): the app's keys, a store kept on the server, or either.
//!
//! The same observation, a login cookie refused by another replica, has two causes with
//! opposite remedies: keys each replica makes for itself (share the keys) or sessions each
//! replica keeps in memory (share the store). A self-contained cookie points to the first,
//! an opaque id to the second; where nothing tells, both stay, each saying what would.

use crate::check::finding::Finding;
use crate::shape::{self, Shape};
use crate::target::Preset;

/// What the artifact's failure rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rests {
    /// A value that carries its data under the app's keys.
    Keys,
    /// An id into state the server keeps.
    Store,
    /// Could be either; the first named is the likelier.
    Either { store_first: bool },
    /// No value was seen (no cookie, no capture): the finding's kind alone decides.
    Untold,
}

/// The reading of one finding's artifact, with the evidence in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basis {
    pub rests: Rests,
    /// Which values decided, and how they look.
    pub evidence: String,
}

impl Basis {
    pub fn of(finding: &Finding, preset: Preset) -> Basis {
        let artifact = &finding.artifact;
        // A framework's session cookie is an id whatever its value looks like, unless the
        // value itself carries data.
        let mut values: Vec<Value> = artifact
            .shapes
            .iter()
            .map(|(name, shape)| Value {
                label: format!("the cookie `{name}`"),
                known: shape::session_cookie(name).is_some(),
                shape: *shape,
            })
            .collect();
        // A token in the page is evidence of keys only when it carries data; otherwise it
        // rests on whatever the cookies rest on (a token kept in the session).
        values.extend(artifact.captured.iter().filter_map(|c| {
            let shape = c.shape.filter(|shape| shape.is_self_contained())?;
            Some(Value { label: format!("the captured `{}`", c.name), known: false, shape })
        }));
        if values.is_empty() {
            return Basis {
                rests: Rests::Untold,
                evidence: String::new(),
            };
        }
        let known: Vec<(&String, &'static str)> = artifact
            .shapes
            .keys()
            .filter_map(|name| Some((name, shape::session_cookie(name)?)))
            .collect();
        let named = |wanted: &dyn Fn(&Value) -> bool| -> Vec<String> {
            values
                .iter()
                .filter(|v| wanted(v))
                .map(|v| format!("{} ({})", v.label, v.shape))
                .collect()
        };
        let signed = named(&|v| v.shape == Shape::Signed);
        let sealed = named(&|v| v.shape == Shape::Sealed && !v.known);
        let doubtful = named(&|v| v.shape == Shape::SignedId || (v.shape == Shape::Unknown && !v.known));
        let reissued = if artifact.reissued.is_empty() {
            String::new()
        } else {
            format!(
                "; the other replica answered with a new {}, as to a visitor it never saw",
                quoted(&artifact.reissued)
            )
        };
        let frameworks: Vec<String> = known
            .iter()
            .map(|(name, what)| format!("`{name}` is {what}"))
            .collect();
        let frameworks = if frameworks.is_empty() {
            String::new()
        } else {
            format!(" ({})", frameworks.join(", "))
        };

        if !signed.is_empty() {
            return Basis {
                rests: Rests::Keys,
                evidence: format!(
                    "{} carries its data under a signature: the keys decide whether another replica accepts it",
                    signed.join(" and ")
                ),
            };
        }
        if !sealed.is_empty() {
            if preset == Preset::Aspnetcore {
                return Basis {
                    rests: Rests::Keys,
                    evidence: format!(
                        "{} is sealed, as ASP.NET Core's data protection seals cookies and form tokens with its key ring",
                        sealed.join(" and ")
                    ),
                };
            }
            return Basis {
                rests: Rests::Either {
                    store_first: !known.is_empty(),
                },
                evidence: format!(
                    "{} is one long sealed value: it may carry the data under the app's keys, or an id sealed by them into a store kept per replica{frameworks}{reissued}; a short opaque id (the store) or a value in signed parts (the keys) would tell them apart",
                    sealed.join(" and ")
                ),
            };
        }
        if !doubtful.is_empty() {
            return Basis {
                rests: Rests::Either {
                    store_first: !known.is_empty(),
                },
                evidence: format!(
                    "{} is an id the app may also sign or seal{frameworks}{reissued}: the other replica may not know the id (a store kept per replica) or not trust its signature (keys not shared); the same steps with the keys shared, or with the store shared, would tell them apart",
                    doubtful.join(" and ")
                ),
            };
        }
        let ids = named(&|_| true);
        Basis {
            rests: Rests::Store,
            evidence: format!(
                "{} {} an opaque id with no data and no signature{frameworks}: what it stands for is kept on the server that issued it{reissued}",
                ids.join(" and "),
                if ids.len() == 1 { "is" } else { "are each" }
            ),
        }
    }
}

/// One value the artifact rests on, as the evidence names it.
struct Value {
    label: String,
    /// A framework's session cookie, known by its name.
    known: bool,
    shape: Shape,
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::finding::FindingKind;
    use crate::check::finding::tests::finding;
    use crate::history::Captured;

    fn login(cookies: &[(&str, Shape)], reissued: &[&str]) -> Finding {
        let mut f = finding(
            FindingKind::AuthCookieRejected,
            "login",
            "auth-cookie",
            (0, 1),
            (1, 1),
        );
        f.artifact.shapes = cookies.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect();
        f.artifact.reissued = reissued.iter().map(|n| (*n).to_owned()).collect();
        f
    }

    #[test]
    fn an_opaque_session_id_rests_on_the_store_and_says_why() {
        let basis = Basis::of(
            &login(&[("PHPSESSID", Shape::OpaqueId)], &["PHPSESSID"]),
            Preset::Generic,
        );
        assert_eq!(basis.rests, Rests::Store);
        assert!(
            basis
                .evidence
                .contains("`PHPSESSID` (opaque-id) is an opaque id"),
            "{}",
            basis.evidence
        );
        assert!(
            basis.evidence.contains("PHP's session id"),
            "{}",
            basis.evidence
        );
        assert!(
            basis.evidence.contains("answered with a new `PHPSESSID`"),
            "{}",
            basis.evidence
        );
    }

    #[test]
    fn a_known_session_cookie_with_a_routing_suffix_is_still_an_id() {
        // Jetty's `node0...node0` is no single token, but the name says what it is.
        let basis = Basis::of(
            &login(&[("JSESSIONID", Shape::Unknown)], &[]),
            Preset::Spring,
        );
        assert_eq!(basis.rests, Rests::Store, "{}", basis.evidence);
    }

    #[test]
    fn a_signed_cookie_rests_on_the_keys() {
        let basis = Basis::of(
            &login(
                &[("session", Shape::Signed), ("csrftoken", Shape::OpaqueId)],
                &["session"],
            ),
            Preset::Flask,
        );
        assert_eq!(basis.rests, Rests::Keys);
        assert!(
            basis
                .evidence
                .contains("`session` (signed) carries its data under a signature"),
            "{}",
            basis.evidence
        );
    }

    #[test]
    fn a_signed_form_token_rests_on_the_keys_even_with_an_opaque_session() {
        let mut f = login(&[("sessionid", Shape::OpaqueId)], &[]);
        f.artifact.captured = vec![Captured {
            name: "csrf_token".into(),
            fingerprint: "f".into(),
            shape: Some(Shape::Signed),
        }];
        assert_eq!(Basis::of(&f, Preset::Flask).rests, Rests::Keys);
    }

    #[test]
    fn a_sealed_value_could_be_either_unless_the_framework_seals_with_keys() {
        let f = login(&[("app.auth", Shape::Sealed)], &[]);
        let basis = Basis::of(&f, Preset::Generic);
        assert_eq!(basis.rests, Rests::Either { store_first: false });
        assert!(
            basis.evidence.contains("would tell them apart"),
            "{}",
            basis.evidence
        );
        assert_eq!(Basis::of(&f, Preset::Aspnetcore).rests, Rests::Keys);
    }

    #[test]
    fn a_signed_id_could_be_either_the_store_first_when_named_for_sessions() {
        let basis = Basis::of(
            &login(&[("connect.sid", Shape::SignedId)], &[]),
            Preset::Express,
        );
        assert_eq!(basis.rests, Rests::Either { store_first: true });
        assert!(
            basis.evidence.contains("express-session"),
            "{}",
            basis.evidence
        );
        // A signed random value of the app's own may be a secret, not an id.
        assert_eq!(
            Basis::of(
                &login(&[("csrf_id", Shape::SignedId)], &[]),
                Preset::Express
            )
            .rests,
            Rests::Either { store_first: false }
        );
    }

    #[test]
    fn no_value_seen_leaves_the_kind_to_decide() {
        assert_eq!(
            Basis::of(&login(&[], &[]), Preset::Generic).rests,
            Rests::Untold
        );
    }
}
