//! Errors for people: with their file location and excerpt. (A run's outcome and plan
//! render in the library, `report::text`, so tests that use the library read the same.)

use std::io::IsTerminal;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};

use super::exit::CliError;
use replicheck::file::{FileError, Located};

/// The error as it goes to stderr. File errors are shown with an excerpt of the file,
/// headed by `FILE:LINE:COLUMN`, the spot marked, and a hint where there is one.
pub fn error(err: &CliError) -> String {
    match err.located() {
        Some(FileError::Invalid(located)) => located_error(located),
        _ => format!("error: {err}\n"),
    }
}

fn located_error(located: &Located) -> String {
    let diagnostic = FileDiagnostic {
        message: located.message.clone(),
        help: located.help.clone(),
        code: NamedSource::new(located.file.path.display().to_string(), located.file.text.to_string()),
        span: (located.span.start, located.span.len()).into(),
    };
    let theme = if std::io::stderr().is_terminal() { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
    let mut out = String::new();
    match handler.render_report(&mut out, &diagnostic) {
        Ok(()) => out,
        // Rendering an excerpt cannot fail on a string; if it did, the plain form still says it all.
        Err(_) => format!("error: {located}\n"),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct FileDiagnostic {
    message: String,
    help: Option<String>,
    code: NamedSource<String>,
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
