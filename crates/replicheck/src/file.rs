//! Input files (targets, scenarios, policies): reading TOML, and errors that point into it.
//!
//! Every error about a file's content carries the byte span it is about, so the CLI can
//! render `file:line:column` with an excerpt. Nothing here prints: rendering is `cli`'s job.
//! Reading is bounded ([`MAX_SIZE`]), so `/dev/zero` or an endless pipe given as a file is
//! refused instead of filling memory.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde::de::DeserializeOwned;

/// The largest input file read: far beyond any hand-written target, scenario or policy.
pub const MAX_SIZE: u64 = 4 * 1024 * 1024;

/// The longest message about a file: one that quotes a huge value is cut to this many
/// characters, so an error stays readable and bounded whatever the file holds.
pub const MAX_MESSAGE: usize = 400;

/// The text of one input file and the path it was read from.
#[derive(Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: Arc<str>,
}

/// The path and the size, never the text: whatever holds a file (a target, a run's
/// outcome) is printed with `{:?}` in test failures, and a file may be megabytes.
impl std::fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFile").field("path", &self.path).field("bytes", &self.text.len()).finish()
    }
}

impl SourceFile {
    /// Reads at most [`MAX_SIZE`] bytes of `path`, which must be UTF-8 text.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let io = |source| FileError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // A regular file says its size up front; a device or a pipe is read up to the cap.
        let size = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        if let Some(size) = size.filter(|&size| size > MAX_SIZE) {
            return Err(FileError::TooLarge { path: path.to_owned(), size: Some(size) });
        }
        let mut bytes = Vec::new();
        file.take(MAX_SIZE + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > MAX_SIZE {
            // Not the size it had a moment ago: a pipe, or a file still being written.
            return Err(FileError::TooLarge { path: path.to_owned(), size: None });
        }
        Self::from_bytes(path, bytes)
    }

    /// A file's bytes, which must be UTF-8: anything else is an error at the first byte
    /// that is not.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, FileError> {
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self::from_text(path, text)),
            Err(err) => {
                let at = err.utf8_error().valid_up_to();
                let bytes = err.into_bytes();
                let byte = bytes.get(at).copied().unwrap_or_default();
                // The excerpt shows the text around the byte; the byte itself as U+FFFD.
                let file = Self::from_text(path, String::from_utf8_lossy(&bytes).into_owned());
                Err(file.error_at(at..at, format!("the file is not UTF-8 text: byte 0x{byte:02x} here is not a character")))
            }
        }
    }

    /// A file that was not read from disk (built-in scenarios, embedded demo targets).
    pub fn from_text(path: impl Into<PathBuf>, text: impl Into<Arc<str>>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    /// Deserializes the whole file; a syntax or shape error keeps toml's span. A file with
    /// nothing in it is said to be empty, not to lack whatever its first field is.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, FileError> {
        if self.is_blank() {
            return Err(FileError::Empty { path: self.path.clone() });
        }
        toml::from_str(&self.text).map_err(|err| {
            let message = err.message().trim().to_owned();
            let help = did_you_mean(&message);
            self.error_at(err.span().unwrap_or(0..0), message).with_help(help)
        })
    }

    /// Nothing but whitespace and comments: TOML's empty document.
    pub fn is_blank(&self) -> bool {
        self.text.lines().all(|line| {
            let line = line.trim_start();
            line.is_empty() || line.starts_with('#')
        })
    }

    /// An error about `span`, kept inside the file and on character boundaries whatever
    /// the span given; its message is cut to [`MAX_MESSAGE`] characters.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> FileError {
        let start = self.floor_char_boundary(span.start);
        let end = self.floor_char_boundary(span.end).max(start);
        FileError::Invalid(Box::new(Located {
            file: self.clone(),
            span: start..end,
            message: cut(&message.into(), MAX_MESSAGE),
            help: None,
        }))
    }

    fn floor_char_boundary(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// The span of a table's header line (`[start]`), for errors about what the table
    /// lacks; the file's start when the header is not written out.
    pub fn table_span(&self, name: &str) -> Range<usize> {
        let header = format!("[{name}]");
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            if line.trim() == header {
                let start = offset + (line.len() - line.trim_start().len());
                return start..start + header.len();
            }
            offset += line.len();
        }
        0..0
    }

    /// The span of `key = ...`'s value in table `[name]`, for errors about a value that
    /// parsed but cannot work with the rest; the table's header when the key is not
    /// written out.
    pub fn key_span(&self, name: &str, key: &str) -> Range<usize> {
        let header = format!("[{name}]");
        let mut offset = 0;
        let mut inside = false;
        for line in self.text.split_inclusive('\n') {
            let trimmed = line.trim();
            if trimmed.starts_with('[') {
                inside = trimmed == header;
            } else if inside
                && let Some(rest) = trimmed.strip_prefix(key)
                && let Some(value) = rest.trim_start().strip_prefix('=')
            {
                let value = value.trim();
                // A basic string ends at its closing quote, before any comment after it.
                let value = match value.strip_prefix('"').and_then(|rest| rest.find('"')) {
                    Some(close) => &value[..close + 2],
                    None => value,
                };
                let start = offset + line.find(value).unwrap_or(0);
                return start..start + value.len();
            }
            offset += line.len();
        }
        self.table_span(name)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.floor_char_boundary(offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// The directory relative paths in this file are resolved against.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        }
    }
}

/// A problem with an input file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<Located>),
    /// Larger than [`MAX_SIZE`]; `size` is unknown for a device or a pipe.
    #[error("{}: {}; input files may be 4 MiB at most", path.display(), size.map_or_else(|| "holds more than 4 MiB".to_owned(), |size| format!("{size} bytes")))]
    TooLarge { path: PathBuf, size: Option<u64> },
    /// Nothing but whitespace and comments.
    #[error("{}: the file is empty (nothing but blank lines and comments)", path.display())]
    Empty { path: PathBuf },
}

impl FileError {
    pub fn with_help(self, help: Option<String>) -> Self {
        match self {
            FileError::Invalid(mut located) => {
                located.help = help.map(|help| cut(&help, MAX_MESSAGE)).or(located.help);
                FileError::Invalid(located)
            }
            other => other,
        }
    }
}

/// A message about a span of a file.
#[derive(Debug)]
pub struct Located {
    pub file: SourceFile,
    pub span: Range<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (line, column) = self.file.line_col(self.span.start);
        write!(f, "{}:{line}:{column}: {}", self.file.path.display(), self.message)
    }
}

/// `text` cut to `max` characters, saying how much was left out.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}… ({} more characters)", &text[..end], text[end..].chars().count()),
    }
}

/// Suggests the closest expected name for serde's "unknown field/variant" messages.
fn did_you_mean(message: &str) -> Option<String> {
    static UNKNOWN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"unknown (?:field|variant) `([^`]*)`, expected (.*)").expect("static regex")
    });
    static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"`([^`]*)`").expect("static regex"));
    let caps = UNKNOWN.captures(message)?;
    let unknown = caps.get(1)?.as_str();
    let candidates = NAME.captures_iter(caps.get(2)?.as_str()).filter_map(|c| c.get(1));
    closest(unknown, candidates.map(|m| m.as_str())).map(|name| format!("did you mean `{name}`?"))
}

/// The candidate closest to `given`, if it is close enough to be a plausible typo.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(given, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let file = SourceFile::from_text("t.toml", "a = 1\nbé = 2\n");
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(6), (2, 1));
        // "bé " is 4 bytes but 3 characters.
        assert_eq!(file.line_col(10), (2, 4));
    }

    #[test]
    fn unknown_field_suggests_the_closest_expected_one() {
        let help = did_you_mean("unknown field `usrname_field`, expected one of `username_field`, `password_field`");
        assert_eq!(help.as_deref(), Some("did you mean `username_field`?"));
        assert_eq!(did_you_mean("unknown field `zzz`, expected `form`"), None);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_where_they_are() {
        let err = SourceFile::from_bytes("t.toml", b"[start]\ncommand = \"a\xffb\"\n".to_vec()).unwrap_err();
        assert_eq!(err.to_string(), "t.toml:2:13: the file is not UTF-8 text: byte 0xff here is not a character");
    }

    #[test]
    fn a_device_that_never_ends_is_refused_without_reading_it_all() {
        let err = SourceFile::read(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(err, FileError::TooLarge { size: None, .. }), "{err}");
        assert_eq!(err.to_string(), "/dev/zero: holds more than 4 MiB; input files may be 4 MiB at most");
    }

    #[test]
    fn blank_and_comment_only_files_are_empty() {
        for text in ["", "\n  \n", "# a target, one day\n\t# more\n"] {
            let err = SourceFile::from_text("t.toml", text).parse::<toml::Table>().unwrap_err();
            assert_eq!(err.to_string(), "t.toml: the file is empty (nothing but blank lines and comments)");
        }
        assert!(SourceFile::from_text("t.toml", "# x\n[start]\n").parse::<toml::Table>().is_ok());
    }

    #[test]
    fn messages_are_cut_and_spans_kept_inside_the_file() {
        let file = SourceFile::from_text("t.toml", "é");
        let FileError::Invalid(located) = file.error_at(1..99, "x".repeat(1000)) else { panic!("located") };
        assert_eq!(located.span, 0..2, "inside the file, on character boundaries");
        assert!(located.message.ends_with("… (600 more characters)") && located.message.len() < 450, "{}", located.message);
        assert_eq!(cut("short", 400), "short");
    }
}
