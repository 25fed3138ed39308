//! The step vocabulary that target flows and scenarios share: requests, captures and
//! expectations, as plain data read from TOML.
//!
//! This module only describes and validates; `vu` sends the requests and evaluates
//! captures and expectations against real responses.

pub mod template;

use std::ops::Range;

use indexmap::IndexMap;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

pub use template::{Template, Vars};

/// One HTTP request of a step, as written in a file. URLs are paths: every request goes
/// through replicheck's balancer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default)]
    pub method: Method,
    /// Path and query, such as `/cache/{key}`. Optional when `submit_form` is set: the
    /// form's own action is used.
    pub url: Option<Template>,
    #[serde(default)]
    pub headers: IndexMap<String, Template>,
    /// Form fields, sent `application/x-www-form-urlencoded`.
    #[serde(default)]
    pub form: IndexMap<String, Template>,
    /// A raw body.
    pub body: Option<Template>,
    /// Files, sent with `form`'s fields as `multipart/form-data`, as a browser sends a form
    /// with a file input.
    #[serde(default)]
    pub multipart: IndexMap<String, FilePart>,
    /// Submit a form of the previous response as a browser would: its hidden fields and
    /// defaults, overridden by `form`. The form is the first one that has every field
    /// named in `form`, or else the first form of the page.
    #[serde(default)]
    pub submit_form: bool,
}

impl RequestSpec {
    pub fn get(url: Template) -> Self {
        Self {
            method: Method::default(),
            url: Some(url),
            headers: IndexMap::new(),
            form: IndexMap::new(),
            body: None,
            multipart: IndexMap::new(),
            submit_form: false,
        }
    }

    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.url
            .iter()
            .chain(self.headers.values())
            .chain(self.form.values())
            .chain(self.body.iter())
            .chain(self.multipart.values().flat_map(|file| [&file.filename, &file.content]))
    }

    /// Checks what does not depend on where the request is used.
    pub fn validate(&self) -> Result<(), (Range<usize>, String)> {
        if let Some(url) = &self.url
            && !url.raw().starts_with('/')
        {
            return Err((
                url.span(),
                format!("`{}` is not a path: write it as `/path?query`; every request goes through replicheck's balancer", url.raw()),
            ));
        }
        if self.url.is_none() && !self.submit_form {
            return Err((0..0, "a request needs `url` (or `submit_form = true` to use the form's action)".into()));
        }
        if self.body.is_some() && !self.form.is_empty() {
            let span = self.body.as_ref().map(Template::span).unwrap_or_default();
            return Err((span, "a request has either `form` fields or a `body`, not both".into()));
        }
        if let Some(file) = self.multipart.values().next() {
            if self.body.is_some() {
                return Err((file.filename.span(), "a request has either `multipart` files or a `body`, not both".into()));
            }
            if self.method.0 == "GET" || self.method.0 == "HEAD" {
                return Err((file.filename.span(), format!("a {} request sends no files: give it a method such as method = \"POST\"", self.method.0)));
            }
        }
        for file in self.multipart.values() {
            // Checked by the parser that sends it, so what validates is what goes out.
            if let Some(content_type) = &file.content_type
                && reqwest::multipart::Part::bytes(Vec::new()).mime_str(content_type.get_ref()).is_err()
            {
                return Err((content_type.span(), format!("content_type = {:?} is not a media type such as text/plain", content_type.get_ref())));
            }
        }
        Ok(())
    }
}

/// A file of a multipart request: its name and content, both templates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilePart {
    pub filename: Template,
    pub content: Template,
    /// Default: `application/octet-stream`, as a browser sends a file it cannot type.
    pub content_type: Option<toml::Spanned<String>>,
}

/// An HTTP method, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Method(pub String);

impl Default for Method {
    fn default() -> Self {
        Self("GET".into())
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
        let given = String::deserialize(deserializer)?;
        let upper = given.to_ascii_uppercase();
        if KNOWN.contains(&upper.as_str()) {
            Ok(Self(upper))
        } else {
            Err(de::Error::custom(format!("unknown HTTP method `{given}`, expected one of {}", KNOWN.join(", "))))
        }
    }
}

/// What a response must look like. Every field that is set must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: Option<StatusSet>,
    /// Text the body contains (after following redirects).
    pub body_contains: Option<Template>,
    /// Text the body must not contain.
    pub body_lacks: Option<Template>,
    /// The path the response ended at, after following redirects, starts with this.
    pub location: Option<Template>,
    /// Response headers whose value contains the given text.
    #[serde(default)]
    pub headers: IndexMap<String, Template>,
}

impl Expect {
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.body_contains.is_none()
            && self.body_lacks.is_none()
            && self.location.is_none()
            && self.headers.is_empty()
    }

    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.body_contains
            .iter()
            .chain(self.body_lacks.iter())
            .chain(self.location.iter())
            .chain(self.headers.values())
    }

    /// Fields of `other` fill the ones this leaves unset.
    pub fn or(mut self, other: &Expect) -> Expect {
        self.status = self.status.or_else(|| other.status.clone());
        self.body_contains = self.body_contains.or_else(|| other.body_contains.clone());
        self.body_lacks = self.body_lacks.or_else(|| other.body_lacks.clone());
        self.location = self.location.or_else(|| other.location.clone());
        for (name, value) in &other.headers {
            self.headers.entry(name.clone()).or_insert_with(|| value.clone());
        }
        self
    }
}

/// Accepted status codes: `200`, `[200, 204]` or a class such as `"2xx"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StatusSet {
    Codes(Vec<u16>),
    Class(String),
}

impl StatusSet {
    pub fn contains(&self, status: u16) -> bool {
        match self {
            StatusSet::Codes(codes) => codes.contains(&status),
            StatusSet::Class(class) => class.as_bytes().first().is_some_and(|d| u16::from(d - b'0') == status / 100),
        }
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusSet::Codes(codes) => {
                let codes: Vec<String> = codes.iter().map(u16::to_string).collect();
                f.write_str(&codes.join(" or "))
            }
            StatusSet::Class(class) => f.write_str(class),
        }
    }
}

impl<'de> Deserialize<'de> for StatusSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StatusVisitor;
        fn code<E: de::Error>(v: i64) -> Result<u16, E> {
            match u16::try_from(v) {
                Ok(code) if (100..=599).contains(&code) => Ok(code),
                _ => Err(E::custom(format!("{v} is not an HTTP status (100 to 599)"))),
            }
        }
        impl<'de> Visitor<'de> for StatusVisitor {
            type Value = StatusSet;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a status such as 200, a list such as [400, 403], or a class such as \"2xx\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusSet, E> {
                Ok(StatusSet::Codes(vec![code(v)?]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusSet, E> {
                let bytes = v.as_bytes();
                if bytes.len() == 3 && (b'1'..=b'5').contains(&bytes[0]) && v[1..].eq_ignore_ascii_case("xx") {
                    Ok(StatusSet::Class(v.to_ascii_lowercase()))
                } else {
                    Err(E::custom(format!("`{v}` is not a status class; write \"2xx\", \"3xx\", \"4xx\" or \"5xx\"")))
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StatusSet, A::Error> {
                let mut codes = Vec::new();
                while let Some(v) = seq.next_element::<i64>()? {
                    codes.push(code(v)?);
                }
                if codes.is_empty() {
                    return Err(de::Error::custom("an empty list of statuses matches nothing"));
                }
                Ok(StatusSet::Codes(codes))
            }
        }
        deserializer.deserialize_any(StatusVisitor)
    }
}

/// Where a captured value comes from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "SourceTable")]
#[serde(rename_all = "snake_case")]
pub enum CaptureSource {
    /// A cookie in the virtual user's jar, by name.
    Cookie(String),
    /// A form field (hidden or not) of the response's HTML, by name.
    FormField(String),
    /// A response header, by name.
    Header(String),
    /// A JSON pointer into the response body, such as `/token`.
    Json(String),
    /// A regular expression over the body; the first group, or the whole match.
    Regex(#[serde(with = "serde_regex")] regex::Regex),
}

/// A value a step takes from its response into a variable for later steps. Captured values
/// are treated as secrets: reports show a fingerprint, never the value.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "CaptureFile")]
pub struct Capture {
    pub name: String,
    pub source: CaptureSource,
}

// The source keys repeat `SourceTable`'s: serde cannot flatten a struct into one that
// denies unknown fields, and typos must be caught.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureFile {
    name: String,
    cookie: Option<String>,
    form_field: Option<String>,
    header: Option<String>,
    json: Option<String>,
    regex: Option<String>,
}

impl TryFrom<CaptureFile> for Capture {
    type Error = String;

    fn try_from(file: CaptureFile) -> Result<Self, String> {
        if file.name.is_empty() || !file.name.chars().all(template::is_name_char) {
            return Err(format!("`{}` is not a variable name: use letters, digits, `_`, `-` and `.`", file.name));
        }
        let table = SourceTable {
            cookie: file.cookie,
            form_field: file.form_field,
            header: file.header,
            json: file.json,
            regex: file.regex,
        };
        Ok(Capture {
            source: CaptureSource::try_from(table).map_err(|e| format!("capture `{}`: {e}", file.name))?,
            name: file.name,
        })
    }
}

/// A capture source written as a table with one key: `{ cookie = "XSRF-TOKEN" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTable {
    cookie: Option<String>,
    form_field: Option<String>,
    header: Option<String>,
    json: Option<String>,
    regex: Option<String>,
}

impl TryFrom<SourceTable> for CaptureSource {
    type Error = String;

    fn try_from(table: SourceTable) -> Result<Self, String> {
        let mut sources = Vec::new();
        if let Some(name) = table.cookie {
            sources.push(CaptureSource::Cookie(name));
        }
        if let Some(name) = table.form_field {
            sources.push(CaptureSource::FormField(name));
        }
        if let Some(name) = table.header {
            sources.push(CaptureSource::Header(name));
        }
        if let Some(pointer) = table.json {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(format!("`{pointer}` is not a JSON pointer; write it as `/field/0/name`"));
            }
            sources.push(CaptureSource::Json(pointer));
        }
        if let Some(pattern) = table.regex {
            let regex = regex::Regex::new(&pattern).map_err(|e| format!("invalid regex: {e}"))?;
            sources.push(CaptureSource::Regex(regex));
        }
        if sources.len() != 1 {
            return Err("needs exactly one of `cookie`, `form_field`, `header`, `json`, `regex`".into());
        }
        Ok(sources.remove(0))
    }
}

mod serde_regex {
    pub fn serialize<S: serde::Serializer>(regex: &regex::Regex, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(regex.as_str())
    }
}

/// A value written either as the name of something a target's flows provide
/// (`"login.submit"`) or inline as a table.
#[derive(Debug, Clone)]
pub enum NamedOr<T> {
    Named(String),
    Inline(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamedOrVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for NamedOrVisitor<T> {
            type Value = NamedOr<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a name such as \"login.submit\" or an inline table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NamedOr<T>, E> {
                Ok(NamedOr::Named(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NamedOr<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(NamedOr::Inline)
            }
        }
        deserializer.deserialize_any(NamedOrVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        status: StatusSet,
    }

    fn status(text: &str) -> Result<StatusSet, String> {
        toml::from_str::<Doc>(&format!("status = {text}")).map(|d| d.status).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn status_sets_read_codes_lists_and_classes() {
        assert!(status("200").unwrap().contains(200));
        let list = status("[400, 403]").unwrap();
        assert!(list.contains(403) && !list.contains(200));
        let class = status("\"3xx\"").unwrap();
        assert!(class.contains(302) && !class.contains(200));
        assert!(status("99").unwrap_err().contains("not an HTTP status"));
        assert!(status("\"2yy\"").unwrap_err().contains("not a status class"));
    }

    #[test]
    fn capture_needs_exactly_one_source() {
        let err = toml::from_str::<Capture>("name = \"t\"\ncookie = \"a\"\nheader = \"b\"").unwrap_err();
        assert!(err.message().contains("exactly one"), "{}", err.message());
        let ok: Capture = toml::from_str("name = \"t\"\nform_field = \"__csrf\"").unwrap();
        assert!(matches!(ok.source, CaptureSource::FormField(ref f) if f == "__csrf"));
    }

    #[test]
    fn request_urls_must_be_paths() {
        let request: RequestSpec = toml::from_str("url = \"http://example.com/x\"").unwrap();
        let (_, message) = request.validate().unwrap_err();
        assert!(message.contains("is not a path"));
    }
}
