//! Background work as a target file describes it: scheduled jobs (`[scheduled.NAME]`) and
//! work a request triggers (`[triggered.NAME]`), each recognised in what the replicas
//! deliver to the run's sink (see `sink`): a webhook's path or a mail's subject, and for a
//! job, what names one of its occurrences.

use std::ops::Range;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::file::{FileError, SourceFile};
use crate::step::{RequestSpec, Template};

/// A scheduled job as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduledFile {
    deliveries: toml::Spanned<DeliveriesFile>,
    occurrence: toml::Spanned<OccurrenceFile>,
    started: Option<toml::Spanned<DeliveriesFile>>,
    #[serde(default = "default_watch", with = "humantime_serde")]
    watch: Duration,
}

/// Work a request triggers, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TriggeredFile {
    request: toml::Spanned<RequestSpec>,
    deliveries: toml::Spanned<DeliveriesFile>,
    started: Option<toml::Spanned<DeliveriesFile>>,
    #[serde(default = "default_within", with = "humantime_serde")]
    within: Duration,
}

fn default_watch() -> Duration {
    Duration::from_secs(10)
}

fn default_within() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesFile {
    path: Option<String>,
    subject: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OccurrenceFile {
    json: Option<String>,
    header: Option<String>,
    regex: Option<String>,
}

/// A job that runs on a schedule: it should run once per occurrence, whatever the number
/// of replicas.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub name: String,
    /// What one run delivers when it is done; with `started`, its finish marker.
    pub deliveries: Recogniser,
    pub occurrence: Occurrence,
    /// A long job's start marker, naming its occurrence as its delivery does: what it
    /// sends when it begins, so that a run abandoned at SIGTERM shows as begun.
    pub started: Option<Recogniser>,
    /// How long each phase of its experiment watches deliveries.
    pub watch: Duration,
}

/// Work a request accepts and does later (a queue, an outbox, a mailer): delivered once
/// per request, within a bound, whatever happens to the replica that accepted it.
#[derive(Debug, Clone)]
pub struct Triggered {
    pub name: String,
    /// The request, with `{value}`: a value of its own per trigger, which its delivery carries.
    pub request: RequestSpec,
    /// What the work delivers when it is done; with `started`, its finish marker.
    pub deliveries: Recogniser,
    /// A long job's start marker: what it delivers when it begins, so that a job a
    /// replica began and then abandoned at SIGTERM shows as begun.
    pub started: Option<Recogniser>,
    pub within: Duration,
}

/// Which deliveries belong to a flow.
#[derive(Debug, Clone)]
pub enum Recogniser {
    /// A webhook to this path after `{sink_url}` (its query aside), or below it.
    Path(String),
    /// A mail whose subject matches.
    Subject(Regex),
}

/// What names one occurrence of a scheduled job in its delivery.
#[derive(Debug, Clone)]
pub enum Occurrence {
    /// A JSON pointer into the body (`/slot`).
    Json(String),
    /// A header's value (a mail's own headers, for mail).
    Header(String),
    /// The first group of a match on the body (a mail's subject, then its body), or the
    /// whole match when it has no group.
    Regex(Regex),
}

impl std::fmt::Display for Recogniser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recogniser::Path(path) => write!(f, "webhooks to {path}"),
            Recogniser::Subject(subject) => write!(f, "mail whose subject matches `{subject}`"),
        }
    }
}

impl std::fmt::Display for Occurrence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Occurrence::Json(pointer) => write!(f, "JSON {pointer}"),
            Occurrence::Header(name) => write!(f, "header {name}"),
            Occurrence::Regex(regex) => write!(f, "`{regex}`"),
        }
    }
}

fn regex(text: &str, what: &str, span: Range<usize>, file: &SourceFile) -> Result<Regex, FileError> {
    Regex::new(text).map_err(|err| {
        let why = match err {
            regex::Error::Syntax(why) => why.lines().last().unwrap_or_default().trim().trim_start_matches("error: ").to_owned(),
            other => other.to_string(),
        };
        file.error_at(span, format!("{what} `{text}` is not a regular expression: {why}"))
    })
}

/// A duration a run waits out: neither zero nor beyond a day.
pub(super) fn bounded(duration: Duration, table: &str, key: &str, why_not_zero: &str, file: &SourceFile) -> Result<(), FileError> {
    if duration.is_zero() {
        return Err(file.error_at(file.key_span(table, key), format!("[{table}] {key} cannot be zero: {why_not_zero}")));
    }
    if duration > super::MAX_DURATION {
        return Err(file
            .error_at(file.key_span(table, key), format!("[{table}] {key} is longer than 24h"))
            .with_help(Some("durations in a target file are 24h at most: a run waits each one out".into())));
    }
    Ok(())
}

impl DeliveriesFile {
    /// `key` is the key it was written under: `deliveries`, or `started` for a start marker.
    fn resolve(deliveries: &toml::Spanned<Self>, table: &str, key: &str, file: &SourceFile) -> Result<Recogniser, FileError> {
        let span = deliveries.span();
        match (&deliveries.get_ref().path, &deliveries.get_ref().subject) {
            (Some(path), None) if path.starts_with('/') => Ok(Recogniser::Path(path.split('?').next().unwrap_or(path).to_owned())),
            (Some(path), None) => Err(file.error_at(span, format!("[{table}] {key}: path `{path}` is not a path")).with_help(Some("the path after the replica's {sink_url}, such as \"/receipts\"".into()))),
            (None, Some(subject)) => Ok(Recogniser::Subject(regex(subject, &format!("[{table}] {key}: subject"), span, file)?)),
            _ => Err(file
                .error_at(span, format!("[{table}] {key} needs one of `path` (a webhook) or `subject` (a mail)"))
                .with_help(Some(format!("for example {key} = {{ path = \"/digest\" }} or {key} = {{ subject = \"^Daily digest\" }}")))),
        }
    }
}

/// A start marker as written, which must not recognise what the finished work delivers.
fn start_marker(marker: Option<&toml::Spanned<DeliveriesFile>>, deliveries: &Recogniser, table: &str, file: &SourceFile) -> Result<Option<Recogniser>, FileError> {
    let Some(marker) = marker else { return Ok(None) };
    let started = DeliveriesFile::resolve(marker, table, "started", file)?;
    if started.overlaps(deliveries) {
        return Err(file
            .error_at(marker.span(), format!("[{table}] started recognises deliveries that `deliveries` recognises too"))
            .with_help(Some("the start marker is what the job sends when it begins, the deliveries what it sends when it is done: two paths, neither below the other, or two subjects".into())));
    }
    Ok(Some(started))
}

impl Recogniser {
    /// Whether a delivery could be recognised by both: one path at or below the other, or
    /// the same subject pattern.
    fn overlaps(&self, other: &Recogniser) -> bool {
        let below = |a: &str, b: &str| a == b || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'));
        match (self, other) {
            (Recogniser::Path(a), Recogniser::Path(b)) => below(a, b) || below(b, a),
            (Recogniser::Subject(a), Recogniser::Subject(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl ScheduledFile {
    pub(super) fn resolve(self, name: &str, file: &SourceFile) -> Result<Scheduled, FileError> {
        let table = format!("scheduled.{name}");
        let deliveries = DeliveriesFile::resolve(&self.deliveries, &table, "deliveries", file)?;
        let span = self.occurrence.span();
        let occurrence = match self.occurrence.into_inner() {
            OccurrenceFile { json: Some(pointer), header: None, regex: None } => {
                if !(pointer.is_empty() || pointer.starts_with('/')) {
                    return Err(file
                        .error_at(span, format!("[{table}] occurrence: `{pointer}` is not a JSON pointer"))
                        .with_help(Some("a JSON pointer starts with /, such as \"/slot\" or \"/job/run_at\"".into())));
                }
                Occurrence::Json(pointer)
            }
            OccurrenceFile { json: None, header: Some(header), regex: None } => Occurrence::Header(header.to_ascii_lowercase()),
            OccurrenceFile { json: None, header: None, regex: Some(text) } => Occurrence::Regex(regex(&text, &format!("[{table}] occurrence"), span, file)?),
            _ => {
                return Err(file
                    .error_at(span, format!("[{table}] occurrence needs one of `json`, `header` or `regex`"))
                    .with_help(Some("what names one run of the job in its delivery, such as occurrence = { json = \"/slot\" }".into())));
            }
        };
        let started = start_marker(self.started.as_ref(), &deliveries, &table, file)?;
        bounded(self.watch, &table, "watch", "no occurrence arrives in no time", file)?;
        Ok(Scheduled { name: name.to_owned(), deliveries, occurrence, started, watch: self.watch })
    }
}

impl TriggeredFile {
    pub(super) fn resolve(self, name: &str, file: &SourceFile) -> Result<Triggered, FileError> {
        let table = format!("triggered.{name}");
        let deliveries = DeliveriesFile::resolve(&self.deliveries, &table, "deliveries", file)?;
        let span = self.request.span();
        let request = self.request.into_inner();
        if request.url.is_none() {
            return Err(file.error_at(span, format!("[{table}] request needs `url`")));
        }
        let templates: Vec<&Template> = request.url.iter().chain(request.headers.values()).chain(request.form.values()).chain(&request.body).collect();
        if let Some(unknown) = templates.iter().find_map(|t| t.check_vars(|name| name == "value").err().map(|u| (u.to_owned(), t.span()))) {
            return Err(file
                .error_at(unknown.1, format!("unknown placeholder `{{{}}}` in [{table}] request", unknown.0))
                .with_help(Some("the only placeholder here is {value}, a value of its own per trigger".into())));
        }
        if !templates.iter().any(|t| t.vars().any(|name| name == "value")) {
            return Err(file
                .error_at(span, format!("[{table}] request never sends `{{value}}`"))
                .with_help(Some("each trigger sends a value of its own, and its delivery is recognised by carrying it: put {value} in the url, a form field, the body or a header".into())));
        }
        let started = start_marker(self.started.as_ref(), &deliveries, &table, file)?;
        bounded(self.within, &table, "within", "no work is done in no time", file)?;
        Ok(Triggered { name: name.to_owned(), request, deliveries, started, within: self.within })
    }
}
