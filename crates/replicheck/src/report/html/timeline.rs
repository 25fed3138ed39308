//! The timeline picture: one lane per replica, each request a mark from its start to its
//! end coloured by outcome, chaos actions as vertical lines, probes as dots, and the
//! requests of each finding outlined and labelled. Plain SVG, drawn into the page.
//!
//! A run has thousands of requests and dozens of findings, so the picture is laid out
//! before it is drawn: it widens with the run's length (the page scrolls), experiment
//! names and finding labels are packed into rows where they do not overlap, labels sit in
//! a track of their own joined to their marks, and finding marks are drawn last, at a
//! visible width, so no other request covers them.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::escape;
use crate::vocab::replica::ReplicaId;
use crate::history::Phase;
use crate::vocab::experiment::ExperimentKind;
use crate::report::{Event, Report};

const LEFT: f64 = 64.0;
const LANE: f64 = 26.0;
/// Pixels per second of the run, within the width bounds.
const PER_SECOND: f64 = 90.0;
const MIN_WIDTH: f64 = 1100.0;
const MAX_WIDTH: f64 = 8000.0;
/// The height of a row of experiment names, and of finding labels.
const SPAN_ROW: f64 = 16.0;
const LABEL_ROW: f64 = 15.0;
/// A finding mark is at least this wide, so a short request that is evidence shows.
const MARK_MIN: f64 = 4.0;

/// Rows of items that must not overlap: each item goes in the first row where it fits.
#[derive(Default)]
struct Rows(Vec<f64>);

impl Rows {
    /// The row for an item from `start` to `end` (pixels), leaving a small gap.
    fn place(&mut self, start: f64, end: f64) -> usize {
        let row = self.0.iter().position(|&right| right + 4.0 <= start).unwrap_or(self.0.len());
        if row == self.0.len() {
            self.0.push(end);
        } else {
            self.0[row] = end;
        }
        row
    }

    fn count(&self) -> usize {
        self.0.len()
    }
}

/// Roughly how wide a label of `text` is, at the label fonts' sizes.
fn text_width(text: &str, per_char: f64) -> f64 {
    text.chars().count() as f64 * per_char + 4.0
}

/// Lane of the requests no replica answered.
const NO_REPLICA: &str = "none";

pub fn svg(report: &Report) -> String {
    let lanes = lanes(report);
    let end_ms = report
        .events
        .iter()
        .map(|e| match e {
            Event::Request { end_ms, .. } => *end_ms,
            Event::Chaos { event, .. } => event.end_ms,
            Event::Probe { probe, .. } => probe.at_ms,
            Event::Answer { answer, .. } => answer.at_ms,
            Event::Delivery { at_ms, .. } => *at_ms,
            Event::Connection { until_ms, .. } => *until_ms,
        })
        .fold(report.duration_ms as f64, f64::max)
        .max(1.0);
    let width = (end_ms / 1000.0 * PER_SECOND).clamp(MIN_WIDTH, MAX_WIDTH);
    let x = |ms: f64| LEFT + ms / end_ms * width;
    let spans = spans(report);
    let mut span_rows = Rows::default();
    let span_places: Vec<usize> = spans
        .iter()
        .map(|span| span_rows.place(x(span.start), (x(span.end)).max(x(span.start) + text_width(&span.label, 5.6))))
        .collect();
    let top = 8.0 + span_rows.count() as f64 * SPAN_ROW + 16.0;
    let bottom = top + lanes.len() as f64 * LANE;
    let lane_y = |name: &str| top + lanes.iter().position(|l| l == name).unwrap_or(lanes.len() - 1) as f64 * LANE;
    let highlighted = highlighted(report);
    let marks = marks(report, &highlighted);
    let mut label_rows = Rows::default();
    let label_places: Vec<usize> = marks.iter().map(|m| label_rows.place(x(m.ms), x(m.ms) + text_width(&m.id, 7.0))).collect();
    let labels_top = bottom + 34.0;
    let height = labels_top + label_rows.count() as f64 * LABEL_ROW + 8.0;
    let total = LEFT + width + 16.0;

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<div class="timeline-scroll"><svg class="timeline" viewBox="0 0 {total:.0} {height:.0}" width="{total:.0}" height="{height:.0}" role="img" aria-label="timeline">"#
    );
    for (span, row) in spans.iter().zip(&span_places) {
        let y = 8.0 + *row as f64 * SPAN_ROW;
        let _ = write!(
            out,
            r#"<g class="span"><rect x="{:.1}" y="{y}" width="{:.1}" height="13"/><text x="{:.1}" y="{}">{}</text></g>"#,
            x(span.start),
            (x(span.end) - x(span.start)).max(2.0),
            x(span.start) + 2.0,
            y + 10.0,
            escape(&span.label)
        );
    }
    for (index, name) in lanes.iter().enumerate() {
        let y = top + index as f64 * LANE;
        let _ = write!(
            out,
            r#"<g class="lane"><rect class="lane-bg" x="{LEFT}" y="{y}" width="{width:.1}" height="{LANE}"/><text class="lane-label" x="{}" y="{}">{}</text></g>"#,
            LEFT - 8.0,
            y + LANE * 0.65,
            escape(name)
        );
    }
    axis(&mut out, end_ms, &x, top, bottom);
    let mut evidence = Vec::new();
    for event in &report.events {
        match event {
            Event::Request { served_by, status, error, start_ms, end_ms, vu, experiment, .. } => {
                let lane = served_by.map_or_else(|| NO_REPLICA.to_owned(), |r| r.id.to_string());
                let class = match (error, status) {
                    (Some(_), _) => "bad",
                    (None, Some(s)) if *s >= 500 => "bad",
                    (None, Some(s)) if *s >= 400 => "warn",
                    _ => "ok",
                };
                let y = lane_y(&lane) + 5.0;
                let start = x(*start_ms);
                let span = (x(*end_ms) - start).max(1.2);
                match highlighted.iter().find(|h| h.is(*vu, experiment.as_deref(), *start_ms)) {
                    // Drawn after every other request, so none covers it.
                    Some(h) => evidence.push(format!(
                        r#"<rect class="req {class} finding" x="{:.1}" y="{y:.1}" width="{:.1}" height="{}"><title>{}: vu {vu} on {lane}</title></rect>"#,
                        start - (MARK_MIN - span).max(0.0) / 2.0,
                        span.max(MARK_MIN),
                        LANE - 10.0,
                        escape(&h.id)
                    )),
                    None => {
                        let _ = write!(out, r#"<rect class="req {class}" x="{start:.1}" y="{y:.1}" width="{span:.1}" height="{}"/>"#, LANE - 10.0);
                    }
                }
            }
            Event::Probe { probe, .. } => {
                let served = probe.status.is_some_and(|s| s < 500);
                let _ = write!(
                    out,
                    r#"<circle class="probe {}" cx="{:.1}" cy="{:.1}" r="3"/>"#,
                    if served { "ok" } else { "bad" },
                    x(probe.at_ms),
                    lane_y(&probe.replica.id.to_string()) + LANE / 2.0
                );
            }
            Event::Delivery { replica, at_ms, what, experiment, .. } => {
                let (cx, cy) = (x(*at_ms), lane_y(&replica.to_string()) + LANE / 2.0);
                let _ = write!(
                    out,
                    r#"<path class="delivery" d="M{cx:.1} {:.1}l4 4l-4 4l-4 -4z"><title>{} delivered {} ({experiment}) at {:.2}s</title></path>"#,
                    cy - 4.0,
                    replica,
                    escape(what),
                    at_ms / 1000.0
                );
            }
            Event::Connection { replica, transport, path, opened_ms, until_ms, received, sent, ended, experiment, .. } => {
                let y = lane_y(&replica.to_string()) + LANE - 2.0;
                let how = ended.as_deref().map_or_else(String::new, |how| format!(", ended: {}", escape(how)));
                let kind = match transport {
                    crate::target::Transport::WebSocket => "WebSocket",
                    crate::target::Transport::Events => "event stream",
                };
                let _ = write!(
                    out,
                    r#"<line class="connection" x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"><title>{kind} {} on {replica} ({experiment}) from {:.2}s: {received} received, {sent} sent{how}</title></line>"#,
                    x(*opened_ms),
                    x(*until_ms).max(x(*opened_ms) + 2.0),
                    escape(path),
                    opened_ms / 1000.0
                );
            }
            Event::Answer { .. } | Event::Chaos { .. } => {}
        }
    }
    chaos_lines(&mut out, report, &x, top, bottom);
    out.extend(evidence);
    for (mark, row) in marks.iter().zip(&label_places) {
        let label_y = labels_top + *row as f64 * LABEL_ROW;
        let mark_y = lane_y(&mark.lane) + LANE - 5.0;
        let _ = write!(
            out,
            "<line class=\"label-line\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{mark_y:.1}\" y2=\"{1:.1}\"/><a id=\"mark-{2}\" href=\"#{2}\"><text class=\"finding-label\" x=\"{0:.1}\" y=\"{label_y:.1}\">{2}</text></a>",
            x(mark.ms),
            label_y - 10.0,
            escape(&mark.id),
        );
    }
    out.push_str("</svg></div>");
    out
}

/// Replica lanes in name order, and a lane for unanswered requests when there are any.
fn lanes(report: &Report) -> Vec<String> {
    let mut ids: BTreeSet<ReplicaId> = (0..report.replicas).map(ReplicaId).collect();
    let mut unrouted = false;
    for event in &report.events {
        match event {
            Event::Request { served_by: Some(r), .. } => {
                ids.insert(r.id);
            }
            Event::Request { served_by: None, .. } => unrouted = true,
            _ => {}
        }
    }
    let mut lanes: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    if unrouted {
        lanes.push(NO_REPLICA.into());
    }
    lanes
}

fn axis(out: &mut String, end_ms: f64, x: &impl Fn(f64) -> f64, top: f64, bottom: f64) {
    let step = [100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 30_000.0, 60_000.0]
        .into_iter()
        .find(|step| end_ms / step <= 12.0)
        .unwrap_or(120_000.0);
    let mut t = 0.0;
    while t <= end_ms {
        let _ = write!(
            out,
            r#"<line class="tick" x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{2}"/><text class="tick-label" x="{0:.1}" y="{3}">{4}s</text>"#,
            x(t),
            top,
            bottom,
            bottom + 16.0,
            format_seconds(t)
        );
        t += step;
    }
}

fn format_seconds(ms: f64) -> String {
    let s = ms / 1000.0;
    if s.fract() == 0.0 { format!("{s:.0}") } else { format!("{s:.2}").trim_end_matches('0').to_owned() }
}

/// One experiment run's stretch of the timeline, named above the lanes.
struct Span {
    label: String,
    start: f64,
    end: f64,
}

/// A span per experiment run (its controls included), so a busy run stays legible.
fn spans(report: &Report) -> Vec<Span> {
    let mut spans: Vec<(String, Phase, f64, f64)> = Vec::new();
    for event in &report.events {
        let (experiment, phase, start, end) = match event {
            Event::Request { experiment: Some(e), phase, start_ms, end_ms, .. } => (e, *phase, *start_ms, *end_ms),
            Event::Chaos { experiment, phase, event } => (experiment, *phase, event.start_ms, event.end_ms),
            Event::Probe { experiment, phase, probe } => (experiment, *phase, probe.at_ms, probe.at_ms),
            Event::Answer { inspection, phase, answer } => (inspection, *phase, answer.at_ms, answer.at_ms),
            Event::Delivery { experiment, phase, at_ms, .. } => (experiment, *phase, *at_ms, *at_ms),
            Event::Connection { experiment, phase, opened_ms, until_ms, .. } => (experiment, *phase, *opened_ms, *until_ms),
            Event::Request { experiment: None, .. } => continue,
        };
        // Controls belong to their run's span.
        let phase = if phase == Phase::Reproduce { Phase::Reproduce } else { Phase::Main };
        match spans.iter_mut().find(|(e, p, _, _)| e == experiment && *p == phase) {
            Some(span) => {
                span.2 = span.2.min(start);
                span.3 = span.3.max(end);
            }
            None => spans.push((experiment.clone(), phase, start, end)),
        }
    }
    spans
        .into_iter()
        .map(|(name, phase, start, end)| Span {
            label: if phase == Phase::Reproduce { format!("{name} again") } else { name },
            start,
            end,
        })
        .collect()
}

/// Chaos actions as dashed lines across the lanes, their names in tooltips.
fn chaos_lines(out: &mut String, report: &Report, x: &impl Fn(f64) -> f64, top: f64, bottom: f64) {
    for event in &report.events {
        let Event::Chaos { experiment, event, phase } = event else { continue };
        let at = x(event.start_ms);
        let _ = write!(
            out,
            r#"<line class="chaos" x1="{at:.1}" x2="{at:.1}" y1="{}" y2="{bottom}"><title>{} ({experiment}, {}) at {:.2}s</title></line>"#,
            top - 6.0,
            escape(&event.action.to_string()),
            phase_name(*phase),
            event.start_ms / 1000.0
        );
    }
}

/// The request that is a finding's evidence: its user's failing request.
struct Highlight {
    id: String,
    vu: u32,
    experiment: Option<String>,
    at_ms: f64,
}

impl Highlight {
    fn is(&self, vu: u32, experiment: Option<&str>, start_ms: f64) -> bool {
        self.vu == vu && self.experiment.as_deref() == experiment && (self.at_ms - start_ms).abs() < 0.001
    }
}

/// Every sighting of every finding: a merged finding outlines each request that showed it.
fn highlighted(report: &Report) -> Vec<Highlight> {
    let mut highlights = Vec::new();
    for f in &report.findings {
        // An experiment's finding that followed no chaos action is still its requests'.
        let experiment = f.after.as_ref().map(|a| a.experiment.clone()).or_else(|| ExperimentKind::from_name(&f.check).map(|_| f.check.clone()));
        let sightings: Vec<(Option<u32>, Option<f64>)> = if f.observations.is_empty() {
            vec![(f.vu, f.at_ms)]
        } else {
            f.observations.iter().map(|o| (o.vu, o.at_ms)).collect()
        };
        for (vu, at_ms) in sightings {
            if let (Some(vu), Some(at_ms)) = (vu, at_ms) {
                highlights.push(Highlight { id: f.id.clone(), vu, experiment: experiment.clone(), at_ms });
            }
        }
    }
    highlights
}

/// Where a finding's label points: its evidence request, or the chaos action it followed.
struct Mark {
    id: String,
    ms: f64,
    lane: String,
}

/// A mark per finding, in time order so the label rows fill from the left.
fn marks(report: &Report, highlighted: &[Highlight]) -> Vec<Mark> {
    let mut marks: Vec<Mark> = report
        .findings
        .iter()
        .map(|finding| {
            let evidence = highlighted.iter().find(|h| h.id == finding.id).and_then(|h| {
                report.events.iter().find_map(|e| match e {
                    Event::Request { vu, experiment, start_ms, served_by, .. } if h.is(*vu, experiment.as_deref(), *start_ms) => {
                        Some((*start_ms, served_by.map(|r| r.id.to_string())))
                    }
                    _ => None,
                })
            });
            let (ms, lane) = match evidence {
                Some((ms, lane)) => (ms, lane.unwrap_or_else(|| NO_REPLICA.into())),
                None => (finding.after.as_ref().map_or(0.0, |a| a.at_ms), finding.consumer.id.to_string()),
            };
            Mark { id: finding.id.clone(), ms, lane }
        })
        .collect();
    marks.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    marks
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Main => "main",
        Phase::Control => "control",
        Phase::Reproduce => "run again",
        Phase::Adapted => "adapted",
        Phase::Shrink => "shrinking",
    }
}
