//! Scenarios: the steps a virtual user takes, as files. Built-in ones live in the
//! repository's top-level `scenarios/` (the crate's `scenarios` links there, so that they
//! are packaged with it) and are embedded in the binary; users add their own in the same
//! format.
//!
//! A scenario file is read and checked on its own (`ScenarioFile`), then bound to a target
//! (`ScenarioFile::bind`): names such as `login.submit` become this app's requests, or the
//! scenario is skipped when the target lacks the flow it needs.

pub mod catalog;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::file::{FileError, SourceFile};
use crate::step::{Capture, Expect, NamedOr, RequestSpec, Template};
use crate::target::Target;
use catalog::Lookup;
pub use crate::vocab::finding::Artifact;

/// Variables every virtual user has.
pub const VU_VARS: &[(&str, &str)] = &[
    ("vu", "the virtual user's number"),
    ("nonce", "a random value of this virtual user, drawn from the seed"),
    ("seed", "the run's seed"),
];

/// A scenario file, checked but not yet bound to a target.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    pub source: SourceFile,
    spec: Spec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    name: String,
    #[serde(default)]
    about: String,
    #[serde(default)]
    vars: IndexMap<String, Template>,
    steps: Vec<StepSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    name: String,
    request: toml::Spanned<NamedOr<RequestSpec>>,
    #[serde(default)]
    capture: Vec<toml::Spanned<NamedOr<Capture>>>,
    expect: Option<toml::Spanned<NamedOr<Expect>>>,
    reject: Option<toml::Spanned<NamedOr<Expect>>>,
    #[serde(default)]
    route: RouteHint,
    produces: Option<Artifact>,
    consumes: Option<toml::Spanned<Artifact>>,
}

/// How a step's request is routed, beyond the run's routing policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteHint {
    /// The run's routing policy decides.
    #[default]
    Policy,
    /// The replica that served this virtual user's previous step: for steps that set up
    /// state on one replica before another step tests it elsewhere.
    Same,
}


/// A scenario bound to a target: every request, capture and expectation is concrete.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub about: String,
    pub vars: IndexMap<String, Template>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub request: RequestSpec,
    pub captures: Vec<Capture>,
    pub expect: Expect,
    /// A shape that means the app turned the user away; the step fails when it matches.
    pub reject: Option<Expect>,
    pub route: RouteHint,
    pub produces: Option<Artifact>,
    pub consumes: Option<Artifact>,
}

impl Scenario {
    /// Whether a step may send something other than a GET (a browser then adds `Origin`):
    /// its method says so, or it submits a form, whose method the page decides.
    pub fn posts(&self) -> bool {
        self.steps.iter().any(|s| s.request.submit_form || !matches!(s.request.method.0.as_str(), "GET" | "HEAD"))
    }

    /// The step that last produced `artifact` before `step`, if any.
    pub fn producer_of(&self, artifact: &Artifact, before: usize) -> Option<usize> {
        (0..before).rev().find(|&i| self.steps[i].produces.as_ref() == Some(artifact))
    }
}

/// Why a scenario does not run against a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub reason: String,
}

impl ScenarioFile {
    pub fn load(path: &Path) -> Result<Self, FileError> {
        Self::from_source(SourceFile::read(path)?)
    }

    pub fn from_source(source: SourceFile) -> Result<Self, FileError> {
        let spec: Spec = source.parse()?;
        let file = Self { source, spec };
        file.check()?;
        Ok(file)
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Checks names and variables; everything a target cannot change.
    fn check(&self) -> Result<(), FileError> {
        let src = &self.source;
        if self.spec.steps.is_empty() {
            return Err(src.error_at(0..0, format!("scenario `{}` has no [[steps]]", self.spec.name)));
        }
        for (name, template) in &self.spec.vars {
            if let Some(other) = template.vars().find(|v| self.spec.vars.contains_key(*v)) {
                let uses_back = self.spec.vars.get(other).is_some_and(|t| t.vars().any(|v| v == name));
                let what = match other {
                    _ if other == name => "itself".to_owned(),
                    _ if uses_back => format!("`{other}`, which uses `{name}`: a cycle"),
                    _ => format!("`{other}`, another of [vars]"),
                };
                return Err(src
                    .error_at(template.span(), format!("`{name}` uses {what}"))
                    .with_help(Some("[vars] are made from the user's own variables only: vu, nonce, seed".into())));
            }
            check_template(src, template, |name| VU_VARS.iter().any(|(v, _)| *v == name), "[vars]")?;
        }
        let mut known: BTreeSet<String> = VU_VARS.iter().map(|(v, _)| (*v).to_owned()).collect();
        known.extend(self.spec.vars.keys().cloned());
        let mut produced: BTreeSet<&Artifact> = BTreeSet::new();
        for (index, step) in self.spec.steps.iter().enumerate() {
            let place = format!("step {} (`{}`)", index + 1, step.name);
            check_name(src, &step.request, catalog::REQUESTS, "request")?;
            for expectation in step.expect.iter().chain(step.reject.iter()) {
                check_name(src, expectation, catalog::EXPECTATIONS, "expectation")?;
            }
            for capture in &step.capture {
                check_name(src, capture, catalog::CAPTURES, "capture")?;
            }
            if let NamedOr::Inline(request) = step.request.get_ref() {
                request.validate().map_err(|(span, message)| {
                    let span = if span.is_empty() { step.request.span() } else { span };
                    src.error_at(span, message)
                })?;
                for template in request.templates() {
                    check_template(src, template, |name| known.contains(name), &place)?;
                }
            }
            if index == 0 && step.route == RouteHint::Same {
                return Err(src.error_at(step.request.span(), "the first step cannot use `route = \"same\"`: there is no previous step"));
            }
            if let NamedOr::Inline(request) = step.request.get_ref()
                && request.submit_form
                && index == 0
            {
                return Err(src.error_at(step.request.span(), "`submit_form` needs a previous step whose page has the form"));
            }
            if let Some(consumes) = &step.consumes
                && !produced.contains(consumes.get_ref())
            {
                return Err(src
                    .error_at(consumes.span(), format!("`{}` is consumed before any step produces it", consumes.get_ref().0))
                    .with_help(Some("add `produces = \"...\"` to the step that hands it out".into())));
            }
            // Captures become variables for the expectations of this step and later steps.
            for capture in &step.capture {
                match capture.get_ref() {
                    NamedOr::Inline(capture) => known.insert(capture.name.clone()),
                    NamedOr::Named(name) => known.insert(name.clone()),
                };
            }
            for expectation in step.expect.iter().chain(step.reject.iter()) {
                if let NamedOr::Inline(expect) = expectation.get_ref() {
                    for template in expect.templates() {
                        check_template(src, template, |name| known.contains(name), &place)?;
                    }
                }
            }
            if let Some(artifact) = &step.produces {
                produced.insert(artifact);
            }
        }
        Ok(())
    }

    /// Binds the scenario to a target's flows, or says why it cannot run against it.
    pub fn bind(&self, target: &Target) -> Result<Result<Scenario, Skip>, FileError> {
        let src = &self.source;
        let vars: BTreeSet<&str> = VU_VARS
            .iter()
            .map(|(v, _)| *v)
            .chain(self.spec.vars.keys().map(String::as_str))
            .collect();
        let mut steps = Vec::with_capacity(self.spec.steps.len());
        for spec in &self.spec.steps {
            let request = match resolve(&spec.request, |n| catalog::request(target, n)) {
                Resolved::Found(request) => request,
                Resolved::Missing(section) => return Ok(Err(skip(section))),
                Resolved::Absent => unreachable_name(src, &spec.request)?,
            };
            // Named requests carry the target's templates: their variables must exist here.
            if let NamedOr::Named(name) = spec.request.get_ref() {
                for template in request.templates() {
                    // Variables the catalog's own captures provide are checked by the target.
                    let provided = |v: &str| catalog::CAPTURED_VARS.contains(&v);
                    if let Err(unknown) = template.check_vars(|v| vars.contains(v) || provided(v)) {
                        return Err(src.error_at(
                            spec.request.span(),
                            format!("`{name}` in this target uses `{{{unknown}}}`, which this scenario does not define"),
                        )
                        .with_help(Some(format!("add `{unknown} = \"...\"` under [vars]"))));
                    }
                }
            }
            let mut captures = Vec::new();
            for capture in &spec.capture {
                match resolve(capture, |n| catalog::capture(target, n)) {
                    Resolved::Found(capture) => captures.push(capture),
                    Resolved::Missing(section) => return Ok(Err(skip(section))),
                    // The target does not say where this value is: the step goes on without it.
                    Resolved::Absent => {}
                }
            }
            let expect = match &spec.expect {
                None => Expect::default(),
                Some(e) => match resolve(e, |n| catalog::expectation(target, n)) {
                    Resolved::Found(expect) => expect,
                    Resolved::Missing(section) => return Ok(Err(skip(section))),
                    Resolved::Absent => unreachable_name(src, e)?,
                },
            };
            let reject = match &spec.reject {
                None => None,
                Some(e) => match resolve(e, |n| catalog::expectation(target, n)) {
                    Resolved::Found(expect) => Some(expect),
                    Resolved::Missing(section) => return Ok(Err(skip(section))),
                    Resolved::Absent => unreachable_name(src, e)?,
                },
            };
            steps.push(Step {
                name: spec.name.clone(),
                request,
                captures,
                expect,
                reject,
                route: spec.route,
                produces: spec.produces.clone(),
                consumes: spec.consumes.as_ref().map(|c| c.get_ref().clone()),
            });
        }
        Ok(Ok(Scenario {
            name: self.spec.name.clone(),
            about: self.spec.about.clone(),
            vars: self.spec.vars.clone(),
            steps,
        }))
    }
}

enum Resolved<T> {
    Found(T),
    Missing(&'static str),
    Absent,
}

fn resolve<T: Clone>(value: &toml::Spanned<NamedOr<T>>, lookup: impl Fn(&str) -> Lookup<T>) -> Resolved<T> {
    match value.get_ref() {
        NamedOr::Inline(inline) => Resolved::Found(inline.clone()),
        NamedOr::Named(name) => match lookup(name) {
            Lookup::Found(found) => Resolved::Found(found),
            Lookup::Missing { section } => Resolved::Missing(section),
            Lookup::Absent => Resolved::Absent,
        },
    }
}

fn skip(section: &str) -> Skip {
    Skip {
        reason: format!("the target has no [{section}] section"),
    }
}

/// Names were checked against the catalog when the file was read; a name that resolves to
/// nothing for a request or expectation is a catalog bug, reported rather than panicking.
fn unreachable_name<T, U>(src: &SourceFile, value: &toml::Spanned<NamedOr<U>>) -> Result<T, FileError> {
    Err(src.error_at(value.span(), "this name resolves to nothing in the target (a replicheck bug: please report it)"))
}

fn check_name<T>(src: &SourceFile, value: &toml::Spanned<NamedOr<T>>, known: &[&str], what: &str) -> Result<(), FileError> {
    let NamedOr::Named(name) = value.get_ref() else {
        return Ok(());
    };
    if known.contains(&name.as_str()) {
        return Ok(());
    }
    let help = crate::file::closest(name, known.iter().copied())
        .map(|c| format!("did you mean `{c}`?"))
        .unwrap_or_else(|| format!("known {what} names: {}; or write an inline table", known.join(", ")));
    Err(src.error_at(value.span(), format!("unknown {what} `{name}`")).with_help(Some(help)))
}

fn check_template(src: &SourceFile, template: &Template, known: impl Fn(&str) -> bool, place: &str) -> Result<(), FileError> {
    template.check_vars(known).map_err(|unknown| {
        src.error_at(template.span(), format!("`{{{unknown}}}` is not defined in {place}"))
            .with_help(Some("variables are the virtual user's (vu, nonce, seed), [vars], and captures of earlier steps".into()))
    })
}

/// The scenarios that ship with replicheck, embedded so an installed binary has them.
pub fn builtin() -> Vec<ScenarioFile> {
    const FILES: &[(&str, &str)] = &[
        ("scenarios/login.toml", include_str!("../../scenarios/login.toml")),
        ("scenarios/antiforgery.toml", include_str!("../../scenarios/antiforgery.toml")),
        ("scenarios/session.toml", include_str!("../../scenarios/session.toml")),
        ("scenarios/cache.toml", include_str!("../../scenarios/cache.toml")),
        ("scenarios/token.toml", include_str!("../../scenarios/token.toml")),
        ("scenarios/affinity.toml", include_str!("../../scenarios/affinity.toml")),
        ("scenarios/upload.toml", include_str!("../../scenarios/upload.toml")),
    ];
    FILES
        .iter()
        .map(|(path, text)| {
            ScenarioFile::from_source(SourceFile::from_text(*path, *text))
                .unwrap_or_else(|e| panic!("built-in scenario {path} is invalid: {e}"))
        })
        .collect()
}

/// Resolves `--scenarios` arguments: built-in names, scenario files, or directories of them.
pub fn select(args: &[String]) -> Result<Vec<ScenarioFile>, SelectError> {
    let builtin = builtin();
    if args.is_empty() {
        return Ok(builtin);
    }
    let mut chosen: Vec<ScenarioFile> = Vec::new();
    for arg in args {
        if let Some(found) = builtin.iter().find(|s| s.name() == arg) {
            chosen.push(found.clone());
            continue;
        }
        let path = PathBuf::from(arg);
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|source| FileError::Io { path: path.clone(), source })?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(SelectError::EmptyDir(path));
            }
            for file in files {
                chosen.push(ScenarioFile::load(&file)?);
            }
        } else if path.is_file() {
            chosen.push(ScenarioFile::load(&path)?);
        } else {
            let names: Vec<&str> = builtin.iter().map(ScenarioFile::name).collect();
            return Err(SelectError::Unknown {
                given: arg.clone(),
                suggestion: crate::file::closest(arg, names.iter().copied()).map(str::to_owned),
                builtin: names.join(", "),
            });
        }
    }
    let mut seen = BTreeSet::new();
    for scenario in &chosen {
        if !seen.insert(scenario.name().to_owned()) {
            return Err(SelectError::Duplicate(scenario.name().to_owned()));
        }
    }
    Ok(chosen)
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("`{given}` is neither a built-in scenario ({builtin}) nor a scenario file or directory{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    Unknown {
        given: String,
        suggestion: Option<String>,
        builtin: String,
    },
    #[error("two scenarios are named `{0}`; scenario names must be unique in a run")]
    Duplicate(String),
    /// A directory given for its scenarios that has none: a wrong path, not "run nothing".
    #[error("the directory {} holds no scenario files (*.toml)", .0.display())]
    EmptyDir(PathBuf),
}

/// The misconfigured demo's target and the built-in scenarios bound to it, for unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// The demo's target, with its hub's long-polling transport (from broken-realtime.toml)
    /// and its uploads (from broken-limits.toml) so that every built-in scenario binds.
    pub fn demo_target() -> Target {
        let polling = "[affinity]\nopen = { method = \"POST\", url = \"/hub/poll\" }\nhandle = { json = \"/sid\" }\nnext = { url = \"/hub/poll?sid={handle}\" }\n";
        let upload = "[upload]\nset = { method = \"POST\", url = \"/uploads\", multipart = { file = { filename = \"{key}.txt\", content = \"{value}\" } } }\nget = { url = \"/uploads/{key}.txt\" }\n";
        let text = format!("{}\n{polling}{upload}", include_str!("../../../../examples/demo/broken.toml"));
        Target::from_source(&SourceFile::from_text("examples/demo/broken.toml", text)).expect("the demo target is valid")
    }

    pub fn demo_scenarios() -> Vec<Scenario> {
        let target = demo_target();
        builtin().iter().map(|s| s.bind(&target).expect("binds").expect("not skipped")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::demo_target;
    use super::*;

    #[test]
    fn builtin_scenarios_bind_to_the_demo_target() {
        let target = demo_target();
        for file in builtin() {
            let bound = file.bind(&target).unwrap();
            assert!(bound.is_ok(), "{} skipped: {:?}", file.name(), bound.err());
        }
    }

    #[test]
    fn a_scenario_is_skipped_when_the_target_lacks_its_flow() {
        let mut target = demo_target();
        target.session = None;
        let session = builtin().into_iter().find(|s| s.name() == "session").unwrap();
        let skip = session.bind(&target).unwrap().unwrap_err();
        assert_eq!(skip.reason, "the target has no [session] section");
    }

    fn check(text: &str) -> String {
        match ScenarioFile::from_source(SourceFile::from_text("s.toml", text)) {
            Ok(_) => "ok".into(),
            Err(FileError::Invalid(located)) => format!("{located} | {}", located.help.as_deref().unwrap_or_default()),
            Err(other) => other.to_string(),
        }
    }

    #[test]
    fn unknown_names_and_variables_are_located() {
        let typo = "name = \"x\"\n[[steps]]\nname = \"a\"\nrequest = \"login.sumbit\"\n";
        assert_eq!(check(typo), "s.toml:4:11: unknown request `login.sumbit` | did you mean `login.submit`?");
        let undefined = "name = \"x\"\n[[steps]]\nname = \"a\"\nrequest = { url = \"/x/{token}\" }\n";
        assert!(check(undefined).starts_with("s.toml:4:19: `{token}` is not defined in step 1 (`a`)"), "{}", check(undefined));
    }

    #[test]
    fn a_consumed_artifact_must_be_produced_earlier() {
        let text = "name = \"x\"\n[[steps]]\nname = \"a\"\nrequest = { url = \"/\" }\nconsumes = \"ticket\"\n";
        assert!(check(text).contains("`ticket` is consumed before any step produces it"), "{}", check(text));
    }

    #[test]
    fn captures_become_variables_for_later_steps() {
        let text = r#"
name = "x"
[[steps]]
name = "a"
request = { url = "/" }
capture = [{ name = "t", regex = "token=(\\w+)" }]
[[steps]]
name = "b"
request = { url = "/use/{t}" }
"#;
        assert_eq!(check(text), "ok");
    }
}
