//! The backends replicas run on, by name.

/// Which backend a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    Process,
    Docker,
    External,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Process, BackendKind::Docker, BackendKind::External];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Process => "process",
            BackendKind::Docker => "docker",
            BackendKind::External => "external",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}
