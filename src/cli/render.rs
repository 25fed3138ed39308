//! Errors for people: with their file location and excerpt. (A run's outcome and plan
//! render in the library, `report::text`, so tests that use the library read the same.)
//!
//! The excerpt is a few lines around the spot, each cut to a window around it: a file may
//! hold one line of megabytes, and the renderer pads by column.

use std::io::IsTerminal;
use std::ops::Range;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

use super::exit::CliError;
use replicheck::file::{FileError, Located};

/// Characters of one excerpt line shown, at most.
const WINDOW: usize = 80;

/// Lines a marked span may cover; a longer one is marked at its start.
const MAX_SPAN_LINES: usize = 6;

/// The error as it goes to stderr. File errors are shown with an excerpt of the file,
/// headed by `FILE:LINE:COLUMN`, the spot marked, and a hint where there is one.
pub fn error(err: &CliError) -> String {
    match err.located() {
        Some(FileError::Invalid(located)) => located_error(located),
        _ => format!("error: {err}\n"),
    }
}

fn located_error(located: &Located) -> String {
    let (line, column) = located.file.line_col(located.span.start);
    let excerpt = Excerpt::around(&located.file.text, located.span.clone());
    let diagnostic = FileDiagnostic {
        message: located.message.clone(),
        help: located.help.clone(),
        span: excerpt.span.clone().into(),
        code: Excerpt {
            name: format!("{}:{line}:{column}", located.file.path.display()),
            ..excerpt
        },
    };
    let theme = if std::io::stderr().is_terminal() { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    // The location is in the excerpt's name: miette's own would count from the cut text.
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false).without_primary_span_start();
    let mut out = String::new();
    match handler.render_report(&mut out, &diagnostic) {
        Ok(()) => out,
        // Rendering an excerpt cannot fail on a string; if it did, the plain form still says it all.
        Err(_) => format!("error: {located}\n"),
    }
}

/// The lines around a span, each cut to [`WINDOW`] characters, with the span moved into
/// them and the number of the first line kept for the gutter.
#[derive(Debug)]
struct Excerpt {
    name: String,
    text: String,
    /// 0-based number of the excerpt's first line in the file.
    first_line: usize,
    span: Range<usize>,
}

impl Excerpt {
    fn around(text: &str, span: Range<usize>) -> Excerpt {
        let lines: Vec<Range<usize>> = line_ranges(text);
        // The last line that starts at or before the offset; the first starts at 0.
        let line_of = |offset: usize| lines.partition_point(|l| l.start <= offset).saturating_sub(1);
        let start = floor(text, span.start);
        let mut end = floor(text, span.end).max(start);
        let first = line_of(start);
        let mut last = line_of(end.saturating_sub(1).max(start));
        if last - first >= MAX_SPAN_LINES {
            (last, end) = (first, lines[first].end);
        }
        let shown = first.saturating_sub(1)..=(last + 1).min(lines.len() - 1);
        let mut excerpt = Excerpt {
            name: String::new(),
            text: String::new(),
            first_line: *shown.start(),
            span: 0..0,
        };
        for index in shown {
            let line = lines[index].clone();
            let line_text = &text[line.clone()];
            // The window follows the span's start on its first line.
            let focus = if index == first { text[line.start..start].chars().count() } else { 0 };
            let (from, to) = window(line_text, focus);
            if !excerpt.text.is_empty() {
                excerpt.text.push('\n');
            }
            let base = excerpt.text.len();
            let prefix = if from > 0 { "…" } else { "" };
            excerpt.text.push_str(prefix);
            excerpt.text.push_str(&line_text[from..to]);
            if to < line_text.len() {
                excerpt.text.push('…');
            }
            let place = |offset: usize| base + prefix.len() + offset.saturating_sub(line.start).clamp(from, to) - from;
            if index == first {
                excerpt.span.start = place(start);
                excerpt.span.end = excerpt.span.start;
            }
            if (first..=last).contains(&index) {
                excerpt.span.end = place(end.min(line.end));
            }
        }
        excerpt
    }
}

/// Byte ranges of the lines of `text`, without their line ends; one empty line for an
/// empty text.
fn line_ranges(text: &str) -> Vec<Range<usize>> {
    let mut lines = Vec::new();
    let mut offset = 0;
    for line in text.split('\n') {
        let content = line.strip_suffix('\r').unwrap_or(line);
        lines.push(offset..offset + content.len());
        offset += line.len() + 1;
    }
    lines
}

/// The byte range of at most [`WINDOW`] characters of `line` that shows character `focus`.
fn window(line: &str, focus: usize) -> (usize, usize) {
    let count = line.chars().count();
    if count <= WINDOW {
        return (0, line.len());
    }
    let first = focus.saturating_sub(WINDOW / 2).min(count - WINDOW);
    let byte = |chars: usize| line.char_indices().nth(chars).map_or(line.len(), |(at, _)| at);
    (byte(first), byte(first + WINDOW))
}

fn floor(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl SourceCode for Excerpt {
    fn read_span<'a>(&'a self, span: &SourceSpan, before: usize, after: usize) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self.text.read_span(span, before, after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            inner.column(),
            inner.line_count(),
        )))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct FileDiagnostic {
    message: String,
    help: Option<String>,
    code: Excerpt,
    span: SourceSpan,
}

impl Diagnostic for FileDiagnostic {
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.code)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(Some("here".into()), self.span))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replicheck::file::SourceFile;

    fn rendered(text: &str, span: Range<usize>) -> String {
        let FileError::Invalid(located) = SourceFile::from_text("t.toml", text).error_at(span, "bad") else { unreachable!() };
        located_error(&located)
    }

    #[test]
    fn a_short_file_is_shown_as_it_is() {
        let out = rendered("[start]\ncommand = \"app\nport = 1\n", 22..22);
        assert!(out.contains("[t.toml:2:15]") && out.contains(" 2 │ command = \"app\n") && out.contains(" 3 │ port = 1"), "{out}");
    }

    #[test]
    fn a_line_of_megabytes_is_cut_around_the_spot() {
        let long = format!("command = \"{}", "x".repeat(10_000_000));
        let text = format!("[start]\n{long}\n");
        let out = rendered(&text, text.len() - 1..text.len() - 1);
        assert!(out.contains(&format!("[t.toml:2:{}]", long.chars().count() + 1)), "{out}");
        assert!(out.lines().all(|line| line.chars().count() < 120), "{out}");
        assert!(out.contains("…xxxx"), "{out}");
    }

    #[test]
    fn a_span_of_many_lines_is_marked_at_its_start() {
        let text = "a = 1\n".repeat(100);
        let out = rendered(&text, 6..text.len());
        assert!(out.contains("[t.toml:2:1]") && out.lines().count() < 12, "{out}");
    }

    #[test]
    fn odd_spans_do_not_panic() {
        for (text, start, end) in [("", 0, 0), ("é", 1, 1), ("a\r\nb", 0, 4), ("a\n", 2, 2), ("abc", 5, 1)] {
            let _ = rendered(text, start..end);
        }
    }
}
