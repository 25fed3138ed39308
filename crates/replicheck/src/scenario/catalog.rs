//! What a target's flows offer to scenarios, by name: `login.submit` is the login form's
//! submission in this app's field names, `login.rejected` is how this app turns away a
//! user it does not know.
//!
//! Built-in scenarios are written against these names only, which is what keeps them
//! free of any one app's URLs.

use crate::step::{Capture, Expect, RequestSpec, Template};
use crate::target::Target;
use crate::target::flows::{HANDLE_VAR, TOKEN_VAR};

/// Names scenarios may use for requests, with the target section that provides each.
pub const REQUESTS: &[&str] = &[
    "login.form",
    "login.submit",
    "login.protected",
    "antiforgery.form",
    "antiforgery.submit",
    "session.set",
    "session.get",
    "cache.set",
    "cache.get",
    "upload.set",
    "upload.get",
    "echo",
    "token.issue",
    "token.use",
    "affinity.open",
    "affinity.next",
];

pub const EXPECTATIONS: &[&str] = &[
    "login.accepted",
    "login.rejected",
    "antiforgery.accepted",
    "antiforgery.rejected",
    "session.shows",
    "cache.shows",
    "upload.shows",
    "token.accepted",
    "affinity.accepted",
];

pub const CAPTURES: &[&str] = &["antiforgery.token", "token.value", "affinity.handle"];

/// The variable the antiforgery token is captured into.
pub const ANTIFORGERY_TOKEN_VAR: &str = "antiforgery.token";

/// The variables the captures above fill in, which the target's own templates may use.
pub const CAPTURED_VARS: &[&str] = &[ANTIFORGERY_TOKEN_VAR, TOKEN_VAR, HANDLE_VAR];

/// The outcome of looking a name up in a target.
pub enum Lookup<T> {
    Found(T),
    /// The name is known, but this target has no section for it: the scenario is skipped.
    Missing { section: &'static str },
    /// The name is known and the section is there, but it provides nothing for it
    /// (such as a token capture when the target does not say where the token is).
    Absent,
}

/// The target section a catalog name belongs to.
pub fn section(name: &str) -> &'static str {
    match name.split('.').next() {
        Some("login") => "login",
        Some("antiforgery") => "antiforgery",
        Some("session") => "session",
        Some("cache") => "cache",
        Some("upload") => "upload",
        Some("token") => "token",
        Some("affinity") => "affinity",
        _ => "echo",
    }
}

pub fn request(target: &Target, name: &str) -> Lookup<RequestSpec> {
    let get = |path: &str| RequestSpec::get(Template::literal(path));
    let found = match name {
        "login.form" | "login.submit" | "login.protected" => target.login.as_ref().map(|login| match name {
            "login.form" => get(&login.form.0),
            "login.submit" => login.submit(),
            _ => get(&login.protected.0),
        }),
        "antiforgery.form" => target.antiforgery.as_ref().map(|af| get(&af.form.0)),
        "antiforgery.submit" => target.antiforgery.as_ref().map(|af| {
            let mut request = RequestSpec {
                method: crate::step::Method("POST".into()),
                url: None,
                form: af.fields.clone(),
                submit_form: true,
                ..RequestSpec::get(Template::literal("/"))
            };
            if let Some(header) = &af.header {
                let value = Template::parse(&format!("{{{ANTIFORGERY_TOKEN_VAR}}}")).expect("static template");
                request.headers.insert(header.clone(), value);
            }
            request
        }),
        "session.set" => target.session.as_ref().map(|s| s.set.clone()),
        "session.get" => target.session.as_ref().map(|s| s.get.clone()),
        "cache.set" => target.cache.as_ref().map(|c| c.set.clone()),
        "cache.get" => target.cache.as_ref().map(|c| c.get.clone()),
        "upload.set" => target.upload.as_ref().map(|u| u.set.clone()),
        "upload.get" => target.upload.as_ref().map(|u| u.get.clone()),
        "echo" => target.echo.as_ref().map(|e| get(&e.url.0)),
        "token.issue" => target.token.as_ref().map(|t| t.issue.clone()),
        "token.use" => target.token.as_ref().map(|t| t.use_.clone()),
        "affinity.open" => target.affinity.as_ref().map(|a| a.open.clone()),
        "affinity.next" => target.affinity.as_ref().map(|a| a.next.clone()),
        _ => return Lookup::Absent,
    };
    found.map_or(Lookup::Missing { section: section(name) }, Lookup::Found)
}

pub fn expectation(target: &Target, name: &str) -> Lookup<Expect> {
    let found = match name {
        "login.accepted" => target.login.as_ref().map(|l| l.accepted()),
        "login.rejected" => target.login.as_ref().map(|l| l.rejected()),
        "antiforgery.accepted" => target.antiforgery.as_ref().map(|a| a.accepted()),
        "antiforgery.rejected" => target.antiforgery.as_ref().map(|a| a.rejected()),
        "session.shows" => target.session.as_ref().map(|s| s.shows()),
        "cache.shows" => target.cache.as_ref().map(|c| c.shows()),
        "upload.shows" => target.upload.as_ref().map(|u| u.shows()),
        "token.accepted" => target.token.as_ref().map(|t| t.accepted()),
        "affinity.accepted" => target.affinity.as_ref().map(|a| a.accepted()),
        _ => return Lookup::Absent,
    };
    found.map_or(Lookup::Missing { section: section(name) }, Lookup::Found)
}

pub fn capture(target: &Target, name: &str) -> Lookup<Capture> {
    match name {
        "antiforgery.token" => match &target.antiforgery {
            None => Lookup::Missing { section: "antiforgery" },
            Some(af) => af.token_source().map_or(Lookup::Absent, |source| {
                Lookup::Found(Capture {
                    name: ANTIFORGERY_TOKEN_VAR.into(),
                    source,
                })
            }),
        },
        "token.value" => match &target.token {
            None => Lookup::Missing { section: "token" },
            Some(token) => Lookup::Found(Capture {
                name: TOKEN_VAR.into(),
                source: token.token.clone(),
            }),
        },
        "affinity.handle" => match &target.affinity {
            None => Lookup::Missing { section: "affinity" },
            Some(affinity) => Lookup::Found(Capture {
                name: HANDLE_VAR.into(),
                source: affinity.handle.clone(),
            }),
        },
        _ => Lookup::Absent,
    }
}
