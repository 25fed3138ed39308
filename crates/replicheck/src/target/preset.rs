//! Framework presets: what a framework's login form and antiforgery protection look like
//! by default, so a target file for a common stack needs only its URLs and credentials.
//! Values come from each framework's documentation; the target file overrides any of them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Preset {
    /// ASP.NET Core with Identity's default UI and antiforgery.
    Aspnetcore,
    /// Django's auth views and CSRF middleware.
    Django,
    /// Flask with Flask-Login and Flask-WTF.
    Flask,
    /// Rails with Devise and `protect_from_forgery`.
    Rails,
    /// Pyramid's session CSRF.
    Pyramid,
    /// Spring Security's form login and CSRF.
    Spring,
    /// Express with a session, Passport and csurf.
    Express,
    /// No framework assumed.
    #[default]
    Generic,
}

/// A framework's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub login_form: Option<&'static str>,
    pub username_field: &'static str,
    pub password_field: &'static str,
    /// The hidden form field that carries the antiforgery token.
    pub antiforgery_field: Option<&'static str>,
    /// The header scripts send the token in (documented here; forms use the field).
    pub antiforgery_header: Option<&'static str>,
    /// How the framework refuses a bad token.
    pub antiforgery_rejected: &'static [u16],
}

impl Preset {
    pub const ALL: [Preset; 8] = [
        Preset::Aspnetcore,
        Preset::Django,
        Preset::Flask,
        Preset::Rails,
        Preset::Pyramid,
        Preset::Spring,
        Preset::Express,
        Preset::Generic,
    ];

    /// The id target files use.
    pub fn id(self) -> &'static str {
        match self {
            Preset::Aspnetcore => "aspnetcore",
            Preset::Django => "django",
            Preset::Flask => "flask",
            Preset::Rails => "rails",
            Preset::Pyramid => "pyramid",
            Preset::Spring => "spring",
            Preset::Express => "express",
            Preset::Generic => "generic",
        }
    }

    pub fn defaults(self) -> Defaults {
        let generic = Defaults {
            login_form: None,
            username_field: "username",
            password_field: "password",
            antiforgery_field: None,
            antiforgery_header: None,
            antiforgery_rejected: &[400, 403],
        };
        match self {
            Preset::Aspnetcore => Defaults {
                login_form: Some("/Identity/Account/Login"),
                username_field: "Input.Email",
                password_field: "Input.Password",
                antiforgery_field: Some("__RequestVerificationToken"),
                antiforgery_header: Some("RequestVerificationToken"),
                antiforgery_rejected: &[400],
            },
            Preset::Django => Defaults {
                login_form: Some("/accounts/login/"),
                antiforgery_field: Some("csrfmiddlewaretoken"),
                antiforgery_header: Some("X-CSRFToken"),
                antiforgery_rejected: &[403],
                ..generic
            },
            Preset::Flask => Defaults {
                login_form: Some("/login"),
                antiforgery_field: Some("csrf_token"),
                antiforgery_header: Some("X-CSRFToken"),
                antiforgery_rejected: &[400],
                ..generic
            },
            Preset::Rails => Defaults {
                login_form: Some("/users/sign_in"),
                username_field: "user[email]",
                password_field: "user[password]",
                antiforgery_field: Some("authenticity_token"),
                antiforgery_header: Some("X-CSRF-Token"),
                antiforgery_rejected: &[422],
            },
            Preset::Pyramid => Defaults {
                login_form: Some("/login"),
                antiforgery_field: Some("csrf_token"),
                antiforgery_header: Some("X-CSRF-Token"),
                antiforgery_rejected: &[400],
                ..generic
            },
            Preset::Spring => Defaults {
                login_form: Some("/login"),
                antiforgery_field: Some("_csrf"),
                antiforgery_header: Some("X-CSRF-TOKEN"),
                antiforgery_rejected: &[403],
                ..generic
            },
            Preset::Express => Defaults {
                login_form: Some("/login"),
                antiforgery_field: Some("_csrf"),
                antiforgery_header: Some("CSRF-Token"),
                antiforgery_rejected: &[403],
                ..generic
            },
            Preset::Generic => generic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::SourceFile;
    use crate::step::StatusSet;
    use crate::target::Target;
    use crate::vu::form::Page;

    /// Each framework's login form, written from its documentation.
    const FIXTURES: [(Preset, &str, &str); 7] = [
        (Preset::Aspnetcore, "aspnetcore", include_str!("../../presets/aspnetcore.html")),
        (Preset::Django, "django", include_str!("../../presets/django.html")),
        (Preset::Flask, "flask", include_str!("../../presets/flask.html")),
        (Preset::Rails, "rails", include_str!("../../presets/rails.html")),
        (Preset::Pyramid, "pyramid", include_str!("../../presets/pyramid.html")),
        (Preset::Spring, "spring", include_str!("../../presets/spring.html")),
        (Preset::Express, "express", include_str!("../../presets/express.html")),
    ];

    fn target_with(preset: &str) -> Target {
        let text = format!(
            "preset = \"{preset}\"\n[start]\ncommand = \"app\"\n[login]\nusername = \"alice\"\npassword = \"pw\"\nprotected = \"/home\"\n[antiforgery]\nform = \"/transfer\"\n"
        );
        Target::from_source(&SourceFile::from_text("t.toml", text)).unwrap()
    }

    #[test]
    fn each_preset_finds_its_frameworks_login_form_token_and_fields() {
        for (preset, name, html) in FIXTURES {
            let defaults = preset.defaults();
            let target = target_with(name);
            let login = target.login.as_ref().unwrap();
            assert_eq!(Some(login.form.0.as_str()), defaults.login_form, "{name}");
            let page = Page::parse(html);
            let wanted = [login.username_field.clone(), login.password_field.clone()];
            let form = page.pick_form(&wanted).unwrap_or_else(|| panic!("{name}: no form"));
            assert!(wanted.iter().all(|f| form.has_field(f)), "{name}: {form:?}");
            assert_eq!(form.method, "POST", "{name}");
            let token_field = target.antiforgery.as_ref().unwrap().token_field.clone().unwrap();
            assert_eq!(Some(token_field.as_str()), defaults.antiforgery_field);
            let token = form.fields.iter().find(|(n, _)| *n == token_field).map(|(_, v)| v.as_str());
            assert!(token.is_some_and(|t| t.len() > 10), "{name}: no {token_field} in {form:?}");
            // The submission carries the token, the credentials, and the form's other defaults.
            let overrides: Vec<(String, String)> = wanted.iter().cloned().zip(["alice".to_owned(), "pw".to_owned()]).collect();
            let sent = form.fill(&overrides);
            assert!(sent.iter().any(|(n, v)| *n == token_field && Some(v.as_str()) == token), "{name}");
            assert!(sent.contains(&(login.username_field.clone(), "alice".into())), "{name}: {sent:?}");
            let rejected = target.antiforgery.as_ref().unwrap().rejected();
            assert_eq!(rejected.status, Some(StatusSet::Codes(defaults.antiforgery_rejected.to_vec())), "{name}");
        }
    }

    #[test]
    fn rails_also_publishes_the_token_in_a_meta_tag_for_scripts() {
        let html = include_str!("../../presets/rails.html");
        let regex = regex::Regex::new(r#"<meta name="csrf-token" content="([^"]+)""#).unwrap();
        assert_eq!(&regex.captures(html).unwrap()[1], "Xk2example-rails-meta-token");
        assert_eq!(Preset::Rails.defaults().antiforgery_header, Some("X-CSRF-Token"));
    }

    #[test]
    fn the_file_overrides_the_preset_and_generic_needs_a_form() {
        let text = "preset = \"django\"\n[start]\ncommand = \"app\"\n[login]\nform = \"/signin/\"\nusername_field = \"email\"\nusername = \"a\"\npassword = \"p\"\nprotected = \"/\"\n";
        let target = Target::from_source(&SourceFile::from_text("t.toml", text)).unwrap();
        let login = target.login.unwrap();
        assert_eq!((login.form.0.as_str(), login.username_field.as_str(), login.password_field.as_str()), ("/signin/", "email", "password"));
        let generic = "[start]\ncommand = \"app\"\n[login]\nusername = \"a\"\npassword = \"p\"\nprotected = \"/\"\n";
        let err = Target::from_source(&SourceFile::from_text("t.toml", generic)).unwrap_err().to_string();
        assert!(err.contains("[login] needs `form`"), "{err}");
        let unknown = "preset = \"laravel\"\n[start]\ncommand = \"app\"\n";
        let err = Target::from_source(&SourceFile::from_text("t.toml", unknown)).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:1:10:") && err.contains("unknown variant `laravel`"), "{err}");
    }
}
