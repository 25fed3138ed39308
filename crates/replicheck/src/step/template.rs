//! Templates: strings with `{name}` placeholders, as written in target and scenario files.
//!
//! A template is parsed when its file is read, keeps the span it came from (so an unknown
//! placeholder is reported at its place in the file) and is rendered later with the
//! variables of a replica (`{port}`) or of a virtual user (`{nonce}`, captures).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Variables a template is rendered with.
pub type Vars = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    raw: String,
    parts: Vec<Part>,
    span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

/// A placeholder with no value at render time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{{{0}}}` has no value here")]
pub struct MissingVar(pub String);

impl Template {
    /// Parses `text`: `{name}` is a placeholder, `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text_buf = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    text_buf.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    text_buf.push('}');
                }
                '{' => {
                    let rest = &text[at + 1..];
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("unclosed `{{` at character {} (write `{{{{` for a literal brace)", at + 1))?;
                    let name = &rest[..end];
                    if name.is_empty() || !name.chars().all(is_name_char) {
                        return Err(format!(
                            "`{{{name}}}` is not a placeholder: names use letters, digits, `_`, `-` and `.` (write `{{{{` for a literal brace)"
                        ));
                    }
                    if !text_buf.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text_buf)));
                    }
                    parts.push(Part::Var(name.to_owned()));
                    // Skip the name and the closing brace.
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                '}' => return Err("unmatched `}` (write `}}` for a literal brace)".to_owned()),
                other => text_buf.push(other),
            }
        }
        if !text_buf.is_empty() {
            parts.push(Part::Text(text_buf));
        }
        Ok(Self {
            raw: text.to_owned(),
            parts,
            span: 0..0,
        })
    }

    /// A template that renders to `text` as it is.
    pub fn literal(text: &str) -> Self {
        Self {
            raw: text.replace('{', "{{").replace('}', "}}"),
            parts: vec![Part::Text(text.to_owned())],
            span: 0..0,
        }
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Where the template was written, in bytes of its file (empty when built in code).
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The placeholder names, in order of appearance.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    pub fn is_literal(&self) -> bool {
        self.vars().next().is_none()
    }

    pub fn render(&self, vars: &Vars) -> Result<String, MissingVar> {
        let mut out = String::with_capacity(self.raw.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(name) => out.push_str(vars.get(name).ok_or_else(|| MissingVar(name.clone()))?),
            }
        }
        Ok(out)
    }

    /// Checks every placeholder against the names allowed where the template is used.
    pub fn check_vars(&self, allowed: impl Fn(&str) -> bool) -> Result<(), &str> {
        match self.vars().find(|name| !allowed(name)) {
            Some(unknown) => Err(unknown),
            None => Ok(()),
        }
    }
}

/// Characters of placeholder and variable names.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<String>::deserialize(deserializer)?;
        let span = spanned.span();
        let mut template = Template::parse(spanned.get_ref()).map_err(serde::de::Error::custom)?;
        template.span = span;
        Ok(template)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn renders_placeholders_and_literal_braces() {
        let t = Template::parse("/cache/{key}?x={{y}}").unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["key"]);
        assert_eq!(t.render(&vars(&[("key", "k1")])).unwrap(), "/cache/k1?x={y}");
    }

    #[test]
    fn missing_variable_is_named() {
        let t = Template::parse("{a}-{b}").unwrap();
        assert_eq!(t.render(&vars(&[("a", "1")])), Err(MissingVar("b".into())));
    }

    #[test]
    fn malformed_templates_are_rejected_with_a_reason() {
        assert!(Template::parse("{unclosed").unwrap_err().contains("unclosed"));
        assert!(Template::parse("a}b").unwrap_err().contains("unmatched"));
        assert!(Template::parse("{not a name}").unwrap_err().contains("not a placeholder"));
    }

    #[test]
    fn literal_round_trips_braces() {
        let t = Template::literal("{json}");
        assert_eq!(t.render(&Vars::new()).unwrap(), "{json}");
        assert_eq!(Template::parse(t.raw()).unwrap().render(&Vars::new()).unwrap(), "{json}");
    }

    #[test]
    fn keeps_the_span_it_was_read_from() {
        #[derive(Deserialize)]
        struct Doc {
            url: Template,
        }
        let doc: Doc = toml::from_str("url = \"/a/{b}\"").unwrap();
        assert_eq!(doc.url.span(), 6..14);
    }
}
