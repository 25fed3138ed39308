//! Rate limits and lockouts as a target file describes them (`[limit.NAME]`): the attempt a
//! client repeats, how many tries the app documents per window, and how a limited try looks.

use std::time::Duration;

use serde::Deserialize;

use crate::file::{FileError, SourceFile};
use crate::step::{Expect, RequestSpec, StatusSet};

/// The most tries a limit may allow: each check sends a few times the limit, paced.
pub const MAX_LIMIT: u32 = 50;

/// A limit as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimitFile {
    attempt: toml::Spanned<RequestSpec>,
    limit: toml::Spanned<u32>,
    #[serde(with = "humantime_serde")]
    window: Duration,
    limited: Option<Expect>,
}

/// A limit on how often one client may send `attempt`: `limit` tries per `window`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub name: String,
    /// One try; `{value}` is a value of the client's own, the same on each of its tries.
    pub attempt: RequestSpec,
    pub limit: u32,
    pub window: Duration,
    /// How a limited try looks (default: status 429).
    pub limited: Expect,
}

impl RateLimit {
    /// Whether each client's tries differ from another's (by `{value}`), so that a limit
    /// keyed on what the request names (an account) is not shared by design.
    pub fn sends_value(&self) -> bool {
        self.attempt.templates().any(|t| t.vars().any(|name| name == "value"))
    }

    /// How soon a limit that refills (a token bucket, a sliding window) gives a limited
    /// client one more try: tries that span less than this got at most one back.
    pub fn refill(&self) -> Duration {
        self.window / self.limit.max(1)
    }
}

impl RateLimitFile {
    pub(super) fn resolve(self, name: &str, file: &SourceFile) -> Result<RateLimit, FileError> {
        let table = format!("limit.{name}");
        let span = self.attempt.span();
        let attempt = self.attempt.into_inner();
        attempt.validate().map_err(|(at, message)| file.error_at(if at.is_empty() { span.clone() } else { at }, format!("[{table}] attempt: {message}")))?;
        for template in attempt.templates() {
            template.check_vars(|name| name == "value").map_err(|unknown| {
                file.error_at(template.span(), format!("unknown placeholder `{{{unknown}}}` in [{table}] attempt"))
                    .with_help(Some("the only placeholder here is {value}, a value of each client's own, such as the account it tries".into()))
            })?;
        }
        let limit = *self.limit.get_ref();
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(file
                .error_at(self.limit.span(), format!("[{table}] limit = {limit}: give a limit from 1 to {MAX_LIMIT}"))
                .with_help(Some("each check sends a few times the limit; test a deployment configured with a lower limit".into())));
        }
        super::background::bounded(self.window, &table, "window", "a limit counts tries within a window", file)?;
        let limited = self.limited.unwrap_or_else(|| Expect { status: Some(StatusSet::Codes(vec![429])), ..Expect::default() });
        for template in limited.templates() {
            template.check_vars(|name| name == "value").map_err(|unknown| file.error_at(template.span(), format!("unknown placeholder `{{{unknown}}}` in [{table}] limited")))?;
        }
        if limited.is_empty() {
            return Err(file.error_at(file.key_span(&table, "limited"), format!("[{table}] limited is empty: say how a limited try looks, such as {{ status = 429 }}")));
        }
        Ok(RateLimit { name: name.to_owned(), attempt, limit, window: self.window, limited })
    }
}
