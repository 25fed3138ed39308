//! Inspection findings: what the replicas' own answers show about forwarded headers and
//! signing keys (telemetry has its own module).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::finding::{ArtifactEvidence, FindingKind};
use super::twice::{Assessment, Candidate};
use crate::cluster::Vantage;
use crate::history::{Answer, History, InspectionRun, Observed, Question};
use crate::inspect::{FORGED_CLIENT, FORGED_SCHEME};
use crate::target::BalancerSettings;

/// What one run of an inspection shows. `users` is the history of the plan's users, whose
/// redirects can show an ignored X-Forwarded-Proto too.
/// `vantage` says where the app saw the proxy's and strangers' connections come from.
pub fn assess(run: &InspectionRun, settings: &BalancerSettings, vantage: Vantage, users: &History, public_authority: &str) -> Assessment {
    let mut assessment = Assessment {
        error: run.error.clone(),
        users: 0,
        requests: run.answers.len(),
        ..Assessment::default()
    };
    let mut found: BTreeMap<_, Candidate> = BTreeMap::new();
    let mut add = |candidate: Candidate| {
        found.entry(candidate.key()).and_modify(|c| c.occurrences += 1).or_insert(candidate);
    };
    match run.inspection.as_str() {
        "forwarded-headers" => {
            assessment.baseline = echo_baseline(run, vantage.stranger);
            for candidate in forwarded(run, settings, vantage) {
                add(candidate);
            }
            for candidate in http_redirects(users, public_authority) {
                add(candidate);
            }
        }
        "telemetry" => return super::telemetry::assess(run),
        "signing-keys" => {
            assessment.baseline = keys_baseline(run);
            if let Some(candidate) = divergent_keys(run) {
                add(candidate);
            }
        }
        _ => {}
    }
    assessment.candidates = found.into_values().collect();
    assessment
}

/// The control: asked directly without forwarded headers, the echo reports the
/// connection as it is (the stranger's address, http).
fn echo_baseline(run: &InspectionRun, stranger: Option<IpAddr>) -> Option<String> {
    run.answers.iter().filter(|a| a.question == Question::EchoDirect).find_map(|answer| {
        // Where replicheck's address is not known, any address but the forged one will do.
        let wrong_client = match stranger {
            Some(stranger) => answer.client.as_deref().is_some_and(|c| c != stranger.to_string()),
            None => answer.client.as_deref() == Some(FORGED_CLIENT),
        };
        // An instance replicheck reaches over https (staging) rightly sees https.
        let wrong_scheme = stranger.is_some() && answer.scheme.as_deref().is_some_and(|s| s != "http");
        let unanswered = !answer.status.is_some_and(|s| (200..400).contains(&s));
        (unanswered || wrong_client || wrong_scheme).then(|| {
            format!(
                "asked directly from {}, {}'s echo answered {} (scheme {}, client {}): it does not report the connection",
                who(stranger),
                answer.replica,
                answer.status.map_or_else(|| answer.error.clone().unwrap_or_default(), |s| format!("status {s}")),
                answer.scheme.as_deref().unwrap_or("?"),
                answer.client.as_deref().unwrap_or("?"),
            )
        })
    })
}

/// An address replicheck connects from, for messages: `replicheck` where it is not known.
fn who(address: Option<IpAddr>) -> String {
    address.map_or_else(|| "replicheck".to_owned(), |address| address.to_string())
}

fn forwarded(run: &InspectionRun, settings: &BalancerSettings, vantage: Vantage) -> Vec<Candidate> {
    let mut found = Vec::new();
    let stranger = who(vantage.stranger);
    let control = |replica| format!("asked directly from {stranger}, {replica} reported that connection as it is");
    for answer in &run.answers {
        match answer.question {
            Question::EchoThroughBalancer => {
                if answer.scheme.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case("https")) {
                    found.push(candidate(
                        FindingKind::ForwardedProtoIgnored,
                        answer,
                        "the app sees https: the balancer sends X-Forwarded-Proto: https",
                        format!("behind the balancer the app saw scheme {}", answer.scheme.as_deref().unwrap_or("?")),
                        control(answer.replica),
                    ));
                }
                if let Some(proxy) = vantage.proxy
                    && answer.client.as_deref() == Some(proxy.to_string().as_str())
                {
                    found.push(candidate(
                        FindingKind::ForwardedForIgnored,
                        answer,
                        &format!("the app sees the client {}: the balancer sends it in X-Forwarded-For", settings.client_address),
                        format!("behind the balancer the app saw the proxy's address {proxy}"),
                        control(answer.replica),
                    ));
                }
            }
            Question::EchoForged => {
                let believed_client = answer.client.as_deref() == Some(FORGED_CLIENT);
                // Believed only if the forgery changed what the app saw without it.
                let direct_scheme = run
                    .answers
                    .iter()
                    .find(|a| a.question == Question::EchoDirect && a.replica == answer.replica)
                    .and_then(|a| a.scheme.as_deref());
                let is_forged = |scheme: Option<&str>| scheme.is_some_and(|s| s.eq_ignore_ascii_case(FORGED_SCHEME));
                let believed_scheme = is_forged(answer.scheme.as_deref()) && !is_forged(direct_scheme);
                if believed_client || believed_scheme {
                    let what: Vec<&str> = [(believed_client, "X-Forwarded-For"), (believed_scheme, "X-Forwarded-Proto")]
                        .into_iter()
                        .filter_map(|(believed, header)| believed.then_some(header))
                        .collect();
                    found.push(candidate(
                        FindingKind::ForwardedHeadersSpoofable,
                        answer,
                        &format!("X-Forwarded-* from {stranger}, which is not a known proxy, are ignored"),
                        format!("the app believed the forged {} from {stranger}", what.join(" and ")),
                        format!("without forged headers, the same direct question showed {stranger}'s own address and http"),
                    ));
                }
            }
            Question::EchoDirect | Question::KeySet | Question::TracedRequest => {}
        }
    }
    found
}

fn candidate(kind: FindingKind, answer: &Answer, expected: &str, reason: String, control: String) -> Candidate {
    Candidate {
        kind,
        scenario: "forwarded-headers".into(),
        step: format!("GET {}", answer.path),
        producer: answer.replica,
        consumer: answer.replica,
        after: None,
        expected: expected.into(),
        observed: Observed {
            reason,
            ..Observed::default()
        },
        control,
        artifact: ArtifactEvidence::named("none"),
        vu: None,
        at_ms: None,
        occurrences: 1,
        notes: vec![remedy(kind).into()],
    }
}

/// What to change, in words that hold for any framework.
pub fn remedy(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::ForwardedProtoIgnored | FindingKind::ForwardedForIgnored => {
            "remedy: have the app (or its server) take X-Forwarded-Proto and X-Forwarded-For from the proxy in front of it, trusting that proxy's address only (the target's `{proxy_address}`)"
        }
        FindingKind::ForwardedHeadersSpoofable => {
            "remedy: believe X-Forwarded-* only from the known proxy's address, not from any peer (not all of loopback or a private range)"
        }
        _ => "",
    }
}

/// Redirects to `http://` on the public host: the app built its own URL with the scheme it
/// believes, though the client used https. Seen by two users or more to count.
fn http_redirects(users: &History, public_authority: &str) -> Vec<Candidate> {
    let prefix = format!("http://{public_authority}/");
    let mut seen = users
        .vus
        .iter()
        .flat_map(|u| u.steps.iter().flat_map(move |s| s.requests.iter().map(move |r| (u, s, r))))
        .filter(|(_, _, r)| r.location.as_deref().is_some_and(|l| l.starts_with(&prefix)));
    let Some((user, step, request)) = seen.next() else { return Vec::new() };
    let others = seen.filter(|(u, _, _)| u.vu != user.vu).count();
    if others == 0 {
        return Vec::new();
    }
    let replica = match request.served_by {
        Some(replica) => replica,
        None => return Vec::new(),
    };
    vec![Candidate {
        kind: FindingKind::ForwardedProtoIgnored,
        scenario: user.scenario.clone(),
        step: step.name.clone(),
        producer: replica,
        consumer: replica,
        after: None,
        expected: "redirects keep the https the client used (the balancer sends X-Forwarded-Proto: https)".into(),
        observed: Observed {
            status: request.status,
            location: request.location.clone(),
            reason: format!("{} {} redirected to {}", request.method, request.path, request.location.as_deref().unwrap_or("")),
            ..Observed::default()
        },
        control: format!("{} other user(s) were redirected to http:// the same way", others),
        artifact: ArtifactEvidence::named("none"),
        vu: Some(user.vu),
        at_ms: Some(request.start_ms),
        occurrences: 1 + others as u32,
        notes: vec![remedy(FindingKind::ForwardedProtoIgnored).into()],
    }]
}

/// The control: every replica publishes the same key set each time it is asked.
fn keys_baseline(run: &InspectionRun) -> Option<String> {
    let mut by_replica: BTreeMap<_, Vec<&Answer>> = BTreeMap::new();
    for answer in run.answers.iter().filter(|a| a.question == Question::KeySet) {
        by_replica.entry(answer.replica).or_default().push(answer);
    }
    by_replica.iter().find_map(|(replica, answers)| {
        let sets: Vec<Option<&Vec<String>>> = answers.iter().map(|a| a.keys.as_ref().filter(|k| !k.is_empty())).collect();
        if sets.iter().any(Option::is_none) {
            return Some(format!("{replica} did not publish a key set"));
        }
        sets.windows(2).any(|pair| pair[0] != pair[1]).then(|| format!("{replica} published a different key set each time it was asked"))
    })
}

fn divergent_keys(run: &InspectionRun) -> Option<Candidate> {
    let mut first: BTreeMap<_, &Answer> = BTreeMap::new();
    for answer in run.answers.iter().filter(|a| a.question == Question::KeySet) {
        first.entry(answer.replica).or_insert(answer);
    }
    let mut replicas = first.values();
    let reference = replicas.next()?;
    let other = replicas.find(|a| a.keys != reference.keys)?;
    let unknown = other.keys.iter().flatten().filter(|k| !reference.keys.iter().flatten().any(|r| r == *k)).count();
    Some(Candidate {
        kind: FindingKind::SigningKeysDivergent,
        scenario: "signing-keys".into(),
        step: format!("GET {}", reference.path),
        producer: reference.replica,
        consumer: other.replica,
        after: None,
        expected: "every replica publishes the same signing keys".into(),
        observed: Observed {
            status: other.status,
            reason: format!("{} publishes {unknown} key(s) {} does not", other.replica, reference.replica),
            ..Observed::default()
        },
        control: "each replica published the same key set every time it was asked".into(),
        artifact: ArtifactEvidence::named("signing-keys"),
        vu: None,
        at_ms: None,
        occurrences: 1,
        notes: vec!["remedy: sign with keys from one shared store (or distribute one key set to every replica), so every replica publishes and accepts the same keys".into()],
    })
}
