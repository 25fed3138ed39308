//! Keeping secrets out of everything replicheck writes: cookie and token values, captured
//! values and the target's passwords are replaced by a marker, and identified in reports
//! only by a short fingerprint.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use sha2::{Digest, Sha256};

pub const MARKER: &str = "[redacted]";

/// Values shorter than this are left alone: replacing every "on" or "10" in a page would
/// destroy the text and protect nothing.
const MIN_LEN: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: BTreeSet<String>,
    /// Built on first use after a change: a user redacts every request it records, and
    /// building one for each cost a rolling restart's load minutes of CPU.
    matcher: OnceLock<Option<AhoCorasick>>,
}

impl Secrets {
    pub fn add(&mut self, value: &str) {
        if value.len() >= MIN_LEN && self.values.insert(value.to_owned()) {
            self.matcher = OnceLock::new();
        }
    }

    pub fn extend(&mut self, other: &Secrets) {
        for value in &other.values {
            self.add(value);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(String::as_str)
    }

    /// `text` with every known secret replaced by the marker (longest first, so a secret
    /// that contains another is not half redacted).
    pub fn redact(&self, text: &str) -> String {
        match self.matcher() {
            Some(matcher) => matcher.replace_all(text, &vec![MARKER; self.values.len()]),
            None => text.to_owned(),
        }
    }

    /// Rewrites files with their secrets redacted. A run sees thousands of secrets, so
    /// the matcher is built once for all the files. A file that cannot be rewritten is
    /// left as it was; the others are still done, and the first error is returned.
    pub fn redact_files(&self, paths: &[impl AsRef<Path>]) -> std::io::Result<()> {
        let Some(matcher) = self.matcher() else { return Ok(()) };
        let markers = vec![MARKER.as_bytes(); self.values.len()];
        let mut first_error = Ok(());
        for path in paths {
            let redacted = std::fs::read(path).and_then(|bytes| match matcher.find(&bytes) {
                None => Ok(()),
                Some(_) => std::fs::write(path, matcher.replace_all_bytes(&bytes, &markers)),
            });
            if first_error.is_ok() {
                first_error = redacted;
            }
        }
        first_error
    }

    /// A contiguous NFA: it builds in time linear in the secrets (a DFA, which the builder
    /// would pick for a few of them, takes far longer to build than the short texts it
    /// scans would save) and still scans a report's files fast. One too large for it is
    /// built as the slower noncontiguous NFA, which holds any set.
    fn matcher(&self) -> Option<&AhoCorasick> {
        self.matcher
            .get_or_init(|| {
                if self.values.is_empty() {
                    return None;
                }
                let build = |kind| {
                    AhoCorasick::builder()
                        .kind(Some(kind))
                        .match_kind(MatchKind::LeftmostLongest)
                        .build(&self.values)
                        .ok()
                };
                build(AhoCorasickKind::ContiguousNFA).or_else(|| build(AhoCorasickKind::NoncontiguousNFA))
            })
            .as_ref()
    }
}

/// A short, stable fingerprint of a secret: enough to tell two values apart in a report,
/// useless for recovering either.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `url` with the password in its user information, if any, replaced by the marker: a
/// dependency's URL is shown, its credentials are not.
pub fn url_password(url: &str) -> String {
    match url::Url::parse(url).ok().and_then(|parsed| parsed.password().map(str::to_owned)) {
        Some(password) => url.replacen(&format!(":{password}@"), &format!(":{MARKER}@"), 1),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_everything_but_their_password() {
        assert_eq!(url_password("amqp://guest:s3cret@127.0.0.1:5672/"), "amqp://guest:[redacted]@127.0.0.1:5672/");
        assert_eq!(url_password("postgresql://app@127.0.0.1:5432/app"), "postgresql://app@127.0.0.1:5432/app");
        assert_eq!(url_password("not a url"), "not a url");
    }

    #[test]
    fn redacts_longest_first_and_ignores_short_values() {
        let mut secrets = Secrets::default();
        secrets.add("abcd");
        secrets.add("abcdef");
        secrets.add("on");
        assert_eq!(secrets.redact("x=abcdef y=abcd on"), "x=[redacted] y=[redacted] on");
    }

    #[test]
    fn a_secret_added_after_a_redaction_is_redacted_too() {
        let mut secrets = Secrets::default();
        secrets.add("first-secret");
        assert_eq!(secrets.redact("a first-secret b second-secret"), "a [redacted] b second-secret");
        secrets.add("second-secret");
        assert_eq!(secrets.redact("a first-secret b second-secret"), "a [redacted] b [redacted]");
        let mut more = Secrets::default();
        more.add("third-secret");
        secrets.extend(&more);
        assert_eq!(secrets.redact("third-secret"), "[redacted]");
    }

    #[test]
    fn fingerprints_are_stable_and_short() {
        assert_eq!(fingerprint("secret"), fingerprint("secret"));
        assert_ne!(fingerprint("secret"), fingerprint("secret2"));
        assert_eq!(fingerprint("x").len(), "sha256:".len() + 8);
    }

    #[test]
    fn redacts_files_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r0.log");
        std::fs::write(&path, "login as alice with wonderland\n").unwrap();
        let mut secrets = Secrets::default();
        secrets.add("wonderland");
        secrets.redact_files(&[&path]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "login as alice with [redacted]\n");
    }
}
