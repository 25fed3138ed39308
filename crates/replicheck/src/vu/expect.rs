//! Judging a response against a step's expectations: pure functions over what the virtual
//! user received.

use http::HeaderMap;

use crate::step::{Expect, Template, Vars};

/// A final response (after redirects), as expectations see it.
pub struct Response<'a> {
    pub status: u16,
    /// Path and query the step ended at.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a str,
}

/// `Ok` when every clause of `expect` holds; otherwise the first that does not, in words.
pub fn holds(expect: &Expect, response: &Response, vars: &Vars) -> Result<(), String> {
    if let Some(status) = &expect.status
        && !status.contains(response.status)
    {
        return Err(format!("expected status {status}"));
    }
    if let Some(text) = &expect.body_contains {
        let text = render(text, vars)?;
        if !response.body.contains(&text) {
            return Err(format!("the body does not contain \"{text}\""));
        }
    }
    if let Some(text) = &expect.body_lacks {
        let text = render(text, vars)?;
        if response.body.contains(&text) {
            return Err(format!("the body contains \"{text}\""));
        }
    }
    if let Some(location) = &expect.location {
        let location = render(location, vars)?;
        if !ends_at(response.path, &location) {
            return Err(format!("ended at {}, expected {location}", response.path));
        }
    }
    for (name, text) in &expect.headers {
        let text = render(text, vars)?;
        let found = response.headers.get_all(name.as_str()).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains(&text));
        if !found {
            return Err(format!("header {name} does not contain \"{text}\""));
        }
    }
    Ok(())
}

/// True when `shape` says something and all of it holds: a rejection shape matches.
pub fn matches(shape: &Expect, response: &Response, vars: &Vars) -> bool {
    !shape.is_empty() && holds(shape, response, vars).is_ok()
}

/// The expectation in words, such as `status 200, body contains "Signed in"`.
pub fn describe(expect: &Expect, vars: &Vars) -> String {
    let shown = |t: &Template| t.render(vars).unwrap_or_else(|_| t.raw().to_owned());
    let mut parts = Vec::new();
    if let Some(status) = &expect.status {
        parts.push(format!("status {status}"));
    }
    if let Some(text) = &expect.body_contains {
        parts.push(format!("body contains \"{}\"", shown(text)));
    }
    if let Some(text) = &expect.body_lacks {
        parts.push(format!("body lacks \"{}\"", shown(text)));
    }
    if let Some(location) = &expect.location {
        parts.push(format!("ends at {}", shown(location)));
    }
    for (name, text) in &expect.headers {
        parts.push(format!("header {name} contains \"{}\"", shown(text)));
    }
    if parts.is_empty() { "any answer".into() } else { parts.join(", ") }
}

fn render(template: &Template, vars: &Vars) -> Result<String, String> {
    template.render(vars).map_err(|missing| missing.to_string())
}

/// Whether the path `at` (with query) is `location` or below it, ignoring queries:
/// `/login?ReturnUrl=%2F` ends at `/login`.
fn ends_at(at: &str, location: &str) -> bool {
    let path = |p: &str| p.split(['?', '#']).next().unwrap_or("").trim_end_matches('/').to_owned();
    let (at, location) = (path(at), path(location));
    at == location || at.starts_with(&format!("{location}/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::StatusSet;

    fn response<'a>(status: u16, path: &'a str, body: &'a str, headers: &'a HeaderMap) -> Response<'a> {
        Response { status, path, headers, body }
    }

    #[test]
    fn each_clause_is_checked_and_explained() {
        let headers = HeaderMap::new();
        let expect = Expect {
            status: Some(StatusSet::Codes(vec![200])),
            body_contains: Some(Template::parse("hello {who}").unwrap()),
            ..Expect::default()
        };
        let vars: Vars = [("who".to_owned(), "alice".to_owned())].into();
        assert!(holds(&expect, &response(200, "/", "say hello alice", &headers), &vars).is_ok());
        assert_eq!(holds(&expect, &response(302, "/", "", &headers), &vars), Err("expected status 200".into()));
        assert_eq!(
            holds(&expect, &response(200, "/", "bye", &headers), &vars),
            Err("the body does not contain \"hello alice\"".into())
        );
        assert_eq!(describe(&expect, &vars), "status 200, body contains \"hello alice\"");
    }

    #[test]
    fn a_rejection_shape_matches_by_location_ignoring_the_query() {
        let headers = HeaderMap::new();
        let rejected = Expect {
            location: Some(Template::literal("/login")),
            ..Expect::default()
        };
        let vars = Vars::new();
        assert!(matches(&rejected, &response(200, "/login?ReturnUrl=%2Faccount", "", &headers), &vars));
        assert!(!matches(&rejected, &response(200, "/login-help", "", &headers), &vars));
        assert!(!matches(&rejected, &response(200, "/account", "", &headers), &vars));
        assert!(!matches(&Expect::default(), &response(200, "/", "", &headers), &vars));
    }
}
