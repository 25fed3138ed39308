//! The app's flows as a target file describes them, in the app's own URLs, field names and
//! status codes. Scenarios use them by name (see `scenario::catalog`).

use indexmap::IndexMap;
use serde::Deserialize;

use super::UrlPath;
use super::preset::Defaults;
use crate::file::{FileError, SourceFile};
use crate::step::{CaptureSource, Expect, RequestSpec, StatusSet, Template};

/// A login form and a page only a signed-in user sees, as written in the file; a preset
/// and defaults fill in what it leaves out (see `Login`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFile {
    /// The page that renders the login form (GET).
    pub form: Option<UrlPath>,
    pub username_field: Option<String>,
    pub password_field: Option<String>,
    pub username: String,
    /// Never written to a report or log.
    pub password: String,
    /// Other fields the form needs, such as `remember = "on"`.
    #[serde(default)]
    pub fields: IndexMap<String, String>,
    /// A page that only a signed-in user can open.
    pub protected: UrlPath,
    /// How the protected page looks to a signed-in user (default: a 2xx status).
    #[serde(default)]
    pub accepted: Expect,
    /// How a rejected user shows: by default, they end up at the login form.
    pub rejected: Option<Expect>,
}

/// A login flow, every field resolved.
#[derive(Debug, Clone)]
pub struct Login {
    pub form: UrlPath,
    pub username_field: String,
    pub password_field: String,
    pub username: String,
    pub password: String,
    pub fields: IndexMap<String, String>,
    pub protected: UrlPath,
    pub accepted: Expect,
    pub rejected: Option<Expect>,
}

impl LoginFile {
    pub(super) fn resolve(self, preset: &Defaults, file: &SourceFile) -> Result<Login, FileError> {
        let form = self.form.or_else(|| preset.login_form.map(|f| UrlPath(f.into()))).ok_or_else(|| {
            file.error_at(0..0, "[login] needs `form`, the path of the login page")
                .with_help(Some("or set `preset` to a framework whose login path is known".into()))
        })?;
        Ok(Login {
            form,
            username_field: self.username_field.unwrap_or_else(|| preset.username_field.into()),
            password_field: self.password_field.unwrap_or_else(|| preset.password_field.into()),
            username: self.username,
            password: self.password,
            fields: self.fields,
            protected: self.protected,
            accepted: self.accepted,
            rejected: self.rejected,
        })
    }
}

/// `expect`, with a 2xx status when it says nothing about the status.
fn or_success(expect: &Expect) -> Expect {
    expect.clone().or(&Expect {
        status: Some(StatusSet::Class("2xx".into())),
        ..Expect::default()
    })
}

impl Login {
    pub fn accepted(&self) -> Expect {
        or_success(&self.accepted)
    }

    pub fn rejected(&self) -> Expect {
        self.rejected.clone().unwrap_or_else(|| Expect {
            location: Some(Template::literal(path_only(&self.form.0))),
            ..Expect::default()
        })
    }

    /// The form submission, as a browser would send it from the login page.
    pub fn submit(&self) -> RequestSpec {
        let mut form: IndexMap<String, Template> = IndexMap::new();
        form.insert(self.username_field.clone(), Template::literal(&self.username));
        form.insert(self.password_field.clone(), Template::literal(&self.password));
        for (name, value) in &self.fields {
            form.insert(name.clone(), Template::literal(value));
        }
        RequestSpec {
            method: crate::step::Method("POST".into()),
            url: None,
            headers: IndexMap::new(),
            form,
            body: None,
            multipart: IndexMap::new(),
            submit_form: true,
        }
    }
}

/// A form protected by an antiforgery (CSRF) token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Antiforgery {
    /// The page that renders the protected form (GET); it issues the token.
    pub form: UrlPath,
    /// The fields a user fills in.
    #[serde(default)]
    pub fields: IndexMap<String, Template>,
    /// The hidden form field that carries the token (default: the preset's).
    pub token_field: Option<String>,
    /// The header that carries the token, for apps that check a header instead.
    pub header: Option<String>,
    /// Where the token is read for `header`, such as `{ cookie = "XSRF-TOKEN" }`
    /// (default: the `token_field` of the form).
    pub token_from: Option<CaptureSource>,
    /// How an accepted submission looks (default: a 2xx status).
    #[serde(default)]
    pub accepted: Expect,
    /// How a refused token looks (default: the preset's statuses, else 400 or 403).
    pub rejected: Option<Expect>,
}

impl Antiforgery {
    pub fn accepted(&self) -> Expect {
        or_success(&self.accepted)
    }

    pub fn rejected(&self) -> Expect {
        self.rejected.clone().unwrap_or_else(|| Expect {
            status: Some(StatusSet::Codes(vec![400, 403])),
            ..Expect::default()
        })
    }

    /// Fills in what the preset knows and the file left out.
    pub(super) fn apply(&mut self, preset: &Defaults) {
        if self.token_field.is_none() {
            self.token_field = preset.antiforgery_field.map(str::to_owned);
        }
        if self.rejected.is_none() {
            self.rejected = Some(Expect {
                status: Some(StatusSet::Codes(preset.antiforgery_rejected.to_vec())),
                ..Expect::default()
            });
        }
    }

    /// Where the token is read from, if the target says how.
    pub fn token_source(&self) -> Option<CaptureSource> {
        self.token_from
            .clone()
            .or_else(|| self.token_field.clone().map(CaptureSource::FormField))
    }

    pub(super) fn validate(&self, file: &SourceFile) -> Result<(), FileError> {
        if self.header.is_some() && self.token_source().is_none() {
            return Err(file
                .error_at(0..0, "[antiforgery] has `header` but no way to read the token")
                .with_help(Some("add `token_from = { cookie = \"XSRF-TOKEN\" }` or `token_field = \"...\"`".into())));
        }
        Ok(())
    }
}

/// A store the app offers through HTTP: session or cache. `set` writes `{value}` (under
/// `{key}`), `get` reads it back, and `shows` says how the value appears.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFlow {
    pub set: RequestSpec,
    pub get: RequestSpec,
    /// How `get` shows the stored value (default: the body contains `{value}`).
    pub shows: Option<Expect>,
}

/// Placeholders `session` and `cache` requests may use.
pub const STORE_PLACEHOLDERS: &[&str] = &["key", "value", "vu", "nonce"];

impl StoreFlow {
    pub fn shows(&self) -> Expect {
        self.shows.clone().unwrap_or_else(|| {
            or_success(&Expect {
                body_contains: Some(Template::parse("{value}").expect("static template")),
                ..Expect::default()
            })
        })
    }

    pub(super) fn validate(&self, section: &str, file: &SourceFile) -> Result<(), FileError> {
        let help = format!("placeholders here: {}", STORE_PLACEHOLDERS.join(", "));
        check_requests(section, &[&self.set, &self.get], self.shows.iter().flat_map(Expect::templates), STORE_PLACEHOLDERS, &help, file)
    }
}

/// An endpoint that echoes what the app believes about the request: the scheme the client
/// used and the client's address, read from its answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Echo {
    pub url: UrlPath,
    /// Where the answer says the scheme, such as `{ json = "/scheme" }`.
    pub scheme: Option<CaptureSource>,
    /// Where the answer says the client's address, such as `{ json = "/client_ip" }`.
    pub client: Option<CaptureSource>,
}

/// Signed tokens (JWT, bearer): one request issues a token, another uses it, and a key
/// set endpoint publishes the keys that verify it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub issue: RequestSpec,
    /// Where the issued token is in the answer, such as `{ json = "/access_token" }`.
    pub token: CaptureSource,
    /// A request that needs the token; `{token}` is where it goes.
    #[serde(rename = "use")]
    pub use_: RequestSpec,
    /// How an accepted token looks (default: a 2xx status).
    #[serde(default)]
    pub accepted: Expect,
    /// The key set (JWKS) the replicas publish, such as `/.well-known/jwks.json`.
    pub jwks: Option<UrlPath>,
}

/// The variable the issued token is captured into.
pub const TOKEN_VAR: &str = "token";

impl Token {
    pub fn accepted(&self) -> Expect {
        or_success(&self.accepted)
    }

    pub(super) fn validate(&self, file: &SourceFile) -> Result<(), FileError> {
        check_requests("token", &[&self.issue, &self.use_], std::iter::empty(), &[TOKEN_VAR], "the only placeholder here is {token}, the issued token", file)
    }
}

/// A transport whose handshake leaves state on the replica that answered it (a long-polling
/// session id, a negotiate token): the next request must reach the same replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    /// The handshake, such as Socket.IO's first polling request or SignalR's negotiate.
    pub open: RequestSpec,
    /// Where the handshake's answer names the session, such as `{ json = "/sid" }`.
    pub handle: CaptureSource,
    /// The request that goes on with it; `{handle}` is where the session goes.
    pub next: RequestSpec,
    /// How the transport looks when it goes on (default: a 2xx status).
    #[serde(default)]
    pub accepted: Expect,
}

/// The variable the handshake's session is captured into.
pub const HANDLE_VAR: &str = "handle";

impl Affinity {
    pub fn accepted(&self) -> Expect {
        or_success(&self.accepted)
    }

    pub(super) fn validate(&self, file: &SourceFile) -> Result<(), FileError> {
        let help = "the only placeholder here is {handle}, the session the handshake returned";
        check_requests("affinity", &[&self.open, &self.next], std::iter::empty(), &[HANDLE_VAR], help, file)?;
        if let Some(template) = self.open.templates().find(|t| t.vars().any(|name| name == HANDLE_VAR)) {
            return Err(file.error_at(template.span(), "[affinity] open cannot use {handle}: the handshake is what returns it"));
        }
        Ok(())
    }
}

/// Checks a section's requests, and that their templates (and `more`) use only the
/// placeholders `allowed`, which `help` names.
fn check_requests<'a>(section: &str, requests: &[&'a RequestSpec], more: impl Iterator<Item = &'a Template>, allowed: &[&str], help: &str, file: &SourceFile) -> Result<(), FileError> {
    for request in requests {
        request.validate().map_err(|(span, message)| file.error_at(span, format!("[{section}] {message}")))?;
    }
    for template in requests.iter().flat_map(|r| r.templates()).chain(more) {
        template.check_vars(|name| allowed.contains(&name)).map_err(|unknown| {
            file.error_at(template.span(), format!("unknown placeholder `{{{unknown}}}` in [{section}]")).with_help(Some(help.to_owned()))
        })?;
    }
    Ok(())
}

/// The path of a URL path-and-query, without the query.
fn path_only(path_and_query: &str) -> &str {
    path_and_query.split(['?', '#']).next().unwrap_or(path_and_query)
}
