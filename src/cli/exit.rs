//! Exit statuses, and the one error type of the command line that maps onto them.

use std::process::ExitCode;

use replicheck::cluster::ClusterError;
use replicheck::file::FileError;
use replicheck::run::RunError;
use replicheck::scenario::SelectError;

/// What replicheck's exit status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every scenario ran and the replicas behaved as one service.
    Consistent = 0,
    /// At least one finding.
    Findings = 1,
    /// The command line or an input file is wrong.
    Usage = 2,
    /// The target or the harness could not run (a replica did not start, a dependency is
    /// missing, a scenario errored, the run was interrupted).
    CouldNotRun = 3,
    /// Stopped by SIGINT (128 + 2), after writing the report of what ran.
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15), after writing the report of what ran.
    Terminated = 143,
}

impl Exit {
    pub fn interrupted_by(signal: &str) -> Exit {
        if signal == "SIGTERM" { Exit::Terminated } else { Exit::Interrupted }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("interrupted by {0}; every replica and dependency of the run was stopped")]
    Interrupted(&'static str),
    #[error("{0}")]
    Io(String),
}

impl CliError {
    pub fn exit(&self) -> Exit {
        match self {
            CliError::File(_) | CliError::Select(_) | CliError::Usage(_) => Exit::Usage,
            CliError::Run(RunError::Scenario(_) | RunError::Usage(_)) => Exit::Usage,
            CliError::Run(RunError::Cluster(ClusterError::Template(_))) => Exit::Usage,
            CliError::Run(RunError::Interrupted(signal)) => Exit::interrupted_by(signal),
            CliError::Run(_) | CliError::Interrupted(_) | CliError::Io(_) => Exit::CouldNotRun,
        }
    }

    /// The located file error inside, if any: rendered with an excerpt.
    pub fn located(&self) -> Option<&FileError> {
        match self {
            CliError::File(err) | CliError::Select(SelectError::File(err)) | CliError::Run(RunError::Scenario(err)) => Some(err),
            _ => None,
        }
    }
}
