//! HTML forms as a browser sees them: their action, method and the fields a submission
//! sends (hidden fields such as antiforgery tokens included), read with a WHATWG tokenizer
//! so that any framework's markup works.

use html5gum::emitters::default::DefaultEmitter;
use html5gum::{Token, Tokenizer};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub action: Option<String>,
    /// Upper case; `GET` when the form does not say.
    pub method: String,
    /// The fields a submission sends, in document order: named inputs (checked boxes
    /// only), textareas and selects. Buttons are left out.
    pub fields: Vec<(String, String)>,
}

impl Form {
    pub fn has_field(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, _)| n == name)
    }

    /// The fields with `overrides` replacing same-named ones, and added when new.
    pub fn fill(&self, overrides: &[(String, String)]) -> Vec<(String, String)> {
        let mut fields = self.fields.clone();
        for (name, value) in overrides {
            match fields.iter_mut().find(|(n, _)| n == name) {
                Some(field) => field.1 = value.clone(),
                None => fields.push((name.clone(), value.clone())),
            }
        }
        fields
    }
}

/// A page's forms and every named input, inside a form or not.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub forms: Vec<Form>,
    pub inputs: Vec<(String, String)>,
    /// Values of hidden inputs: where frameworks put tokens.
    pub hidden: Vec<String>,
}

impl Page {
    pub fn parse(html: &str) -> Self {
        let mut emitter = DefaultEmitter::default();
        // Script, style and textarea contents are text, not markup.
        emitter.naively_switch_states(true);
        let mut page = Page::default();
        let mut open: Option<Form> = None;
        let mut textarea: Option<(String, String)> = None;
        let mut select: Option<Select> = None;
        for token in Tokenizer::new_with_emitter(html, emitter).flatten() {
            match token {
                Token::StartTag(tag) => {
                    let attr = |name: &[u8]| tag.attributes.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
                    match tag.name.as_slice() {
                        b"form" => {
                            if let Some(form) = open.take() {
                                page.forms.push(form);
                            }
                            open = Some(Form {
                                action: attr(b"action"),
                                method: attr(b"method").unwrap_or_else(|| "get".into()).to_ascii_uppercase(),
                                fields: Vec::new(),
                            });
                        }
                        b"input" => {
                            let Some(name) = attr(b"name").filter(|n| !n.is_empty()) else { continue };
                            let kind = attr(b"type").unwrap_or_default().to_ascii_lowercase();
                            let value = attr(b"value").unwrap_or_else(|| if kind == "checkbox" || kind == "radio" { "on".into() } else { String::new() });
                            page.inputs.push((name.clone(), value.clone()));
                            if kind == "hidden" {
                                page.hidden.push(value.clone());
                            }
                            let submitted = match kind.as_str() {
                                "submit" | "button" | "image" | "reset" | "file" => false,
                                "checkbox" | "radio" => tag.attributes.contains_key(b"checked".as_slice()),
                                _ => true,
                            };
                            if submitted && let Some(form) = open.as_mut() {
                                form.fields.push((name, value));
                            }
                        }
                        b"textarea" => textarea = attr(b"name").map(|n| (n, String::new())),
                        b"select" => {
                            select = attr(b"name").map(|name| Select {
                                name,
                                first: None,
                                selected: None,
                                current: None,
                            })
                        }
                        b"option" => {
                            if let Some(select) = select.as_mut() {
                                let selected = tag.attributes.contains_key(b"selected".as_slice());
                                select.current = Some((attr(b"value"), String::new(), selected));
                            }
                        }
                        _ => {}
                    }
                }
                Token::String(text) => {
                    let text = String::from_utf8_lossy(&text);
                    if let Some((_, value)) = textarea.as_mut() {
                        value.push_str(&text);
                    }
                    if let Some((_, label, _)) = select.as_mut().and_then(|s| s.current.as_mut()) {
                        label.push_str(&text);
                    }
                }
                Token::EndTag(tag) => match tag.name.as_slice() {
                    b"form" => {
                        if let Some(form) = open.take() {
                            page.forms.push(form);
                        }
                    }
                    b"textarea" => {
                        if let Some((name, value)) = textarea.take() {
                            page.inputs.push((name.clone(), value.clone()));
                            if let Some(form) = open.as_mut() {
                                form.fields.push((name, value));
                            }
                        }
                    }
                    b"option" => {
                        if let Some(select) = select.as_mut() {
                            select.close_option();
                        }
                    }
                    b"select" => {
                        if let Some(mut select) = select.take() {
                            select.close_option();
                            if let Some(value) = select.selected.or(select.first) {
                                page.inputs.push((select.name.clone(), value.clone()));
                                if let Some(form) = open.as_mut() {
                                    form.fields.push((select.name, value));
                                }
                            }
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        if let Some(form) = open.take() {
            page.forms.push(form);
        }
        page
    }

    /// The form to submit: the first that has every field in `wanted`, else the first.
    pub fn pick_form(&self, wanted: &[String]) -> Option<&Form> {
        self.forms
            .iter()
            .find(|f| wanted.iter().all(|name| f.has_field(name)))
            .or_else(|| self.forms.first())
    }

    pub fn input(&self, name: &str) -> Option<&str> {
        self.inputs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

struct Select {
    name: String,
    first: Option<String>,
    selected: Option<String>,
    /// The open option: its value attribute, its text, whether it is selected.
    current: Option<(Option<String>, String, bool)>,
}

impl Select {
    fn close_option(&mut self) {
        if let Some((value, label, selected)) = self.current.take() {
            let value = value.unwrap_or_else(|| label.trim().to_owned());
            if self.first.is_none() {
                self.first = Some(value.clone());
            }
            if selected && self.selected.is_none() {
                self.selected = Some(value);
            }
        }
    }
}

/// The visible text of an HTML page (tags and attribute values dropped, whitespace
/// collapsed), for short excerpts in findings. Attribute values are where tokens hide.
pub fn visible_text(html: &str) -> String {
    let mut emitter = DefaultEmitter::default();
    emitter.naively_switch_states(true);
    let mut text = String::new();
    let mut skipping = false;
    for token in Tokenizer::new_with_emitter(html, emitter).flatten() {
        match token {
            Token::StartTag(tag) if matches!(tag.name.as_slice(), b"script" | b"style") => skipping = true,
            Token::EndTag(tag) if matches!(tag.name.as_slice(), b"script" | b"style") => skipping = false,
            Token::String(s) if !skipping => {
                text.push_str(&String::from_utf8_lossy(&s));
                text.push(' ');
            }
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: &str = r#"
<html><body>
<form id="search" action="/search"><input name="q"></form>
<form method="post" action="/login?next=%2F">
  <input type="hidden" name="csrfmiddlewaretoken" value="tok&amp;en">
  <input name="username" value="">
  <input type="password" name="password">
  <input type="checkbox" name="remember" checked>
  <input type="checkbox" name="newsletter">
  <select name="lang"><option value="en">English</option><option selected>Deutsch</option></select>
  <textarea name="bio">hi <b>there</b></textarea>
  <button type="submit" name="go">Sign in</button>
</form>
<script>if (a < b) { document.write('<input name="fake">') }</script>
</body></html>"#;

    #[test]
    fn reads_forms_as_a_browser_submits_them() {
        let page = Page::parse(LOGIN);
        assert_eq!(page.forms.len(), 2);
        let form = page.pick_form(&["username".into(), "password".into()]).unwrap();
        assert_eq!(form.action.as_deref(), Some("/login?next=%2F"));
        assert_eq!(form.method, "POST");
        let names: Vec<&str> = form.fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["csrfmiddlewaretoken", "username", "password", "remember", "lang", "bio"]);
        assert_eq!(page.input("csrfmiddlewaretoken"), Some("tok&en"));
        assert_eq!(page.input("lang"), Some("Deutsch"));
        assert_eq!(page.input("bio"), Some("hi <b>there</b>"));
        assert_eq!(page.input("fake"), None);
        assert_eq!(page.hidden, ["tok&en"]);
    }

    #[test]
    fn fill_overrides_and_adds_fields() {
        let form = Form {
            action: None,
            method: "POST".into(),
            fields: vec![("a".into(), "1".into()), ("token".into(), "t".into())],
        };
        let filled = form.fill(&[("a".into(), "2".into()), ("b".into(), "3".into())]);
        assert_eq!(filled, [("a".into(), "2".into()), ("token".into(), "t".into()), ("b".into(), "3".into())]);
    }

    #[test]
    fn visible_text_drops_markup_attributes_and_scripts() {
        let text = visible_text(LOGIN);
        assert!(text.contains("Sign in"));
        assert!(!text.contains("tok&en"), "{text}");
        assert!(!text.contains("document.write"), "{text}");
    }
}
