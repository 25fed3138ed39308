//! The command line: parses arguments, runs the library, prints, and picks the exit
//! status. The only module that writes to the terminal or knows about exit codes.

pub mod exit;
mod progress;
mod render;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use replicheck::balancer::policy::RoutingPolicy;
use replicheck::cluster::backend::docker::{self, Engine};
use replicheck::cluster::{BackendKind, reaper};
use replicheck_demo::{DemoArgs, Need};
use replicheck::file::SourceFile;
use replicheck::plan::seed;
use replicheck::policy::{self, Policy};
use replicheck::check::finding::Finding;
use replicheck::report::{self, Format, Report};
use replicheck::cluster::backend::external::{Auth, ExternalSpec, Instance, Via};
use replicheck::cluster::backend::relay::InstanceMark;
use replicheck::replay::{self, Replay, ReplayConfig, ReplayError};
use replicheck::run::{self, ReportDir, RunConfig, RunError, RunOutcome, Selection, shell_word};
use replicheck::explore::{self, ExploreConfig};
use replicheck::interrupt::Interrupt;
use replicheck::plan::interleaving::Schedule;
use replicheck::up::{self, UpConfig};
use replicheck::target::Target;
use replicheck::validate::Valid;
use replicheck::verdict::Verdict;
use exit::{CliError, Exit};

#[derive(Debug, Parser)]
#[command(name = "replicheck", version, about = "Runs N replicas of a web service behind a balancer it controls, replays real user flows across them, and reports every cross-instance inconsistency")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the bundled demo service misconfigured, then configured correctly, and shows
    /// the difference. Needs nothing but this binary.
    Demo(DemoCommand),
    /// Runs the scenarios against N replicas of a target.
    Run(RunArgs),
    /// Runs the scenarios against instances that already run (staging): the target file
    /// gives the flows, its [start] is ignored.
    Smoke(Box<SmokeArgs>),
    /// Starts the target's replicas, dependencies and balancer, prints where they listen,
    /// and keeps them up until Ctrl-C.
    Up(UpArgs),
    /// Checks target and scenario files without running anything.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Reruns the schedule a report recorded (seed, routing, chaos) and says whether each
    /// finding happened again.
    Replay(ReplayArgs),
    /// Explores generated schedules: users' steps interleaved, routed and disrupted at
    /// random from the seed; each fault is shrunk to the smallest schedule that shows it.
    Explore(ExploreArgs),
    /// Judges a stored run again from its record (REPORT_DIR/record.json, with plan.json
    /// beside it), starting nothing: the same checker, the same findings.
    Check(CheckArgs),
    /// Removes what runs that were killed left behind (processes, temporary directories).
    Clean,
    /// The bundled demo service (started by the demo's target files).
    #[command(hide = true)]
    DemoService(Box<DemoArgs>),
    /// Removes what is left of a run once the pipe on stdin closes (started by the run).
    #[command(hide = true)]
    Watchdog {
        #[arg(long)]
        run_id: String,
        #[arg(long)]
        docker: bool,
    },
}

#[derive(Debug, Args)]
struct DemoCommand {
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=16))]
    replicas: u16,
    /// Reports go in a directory per run under this one.
    #[arg(long, default_value = "reports")]
    reports: PathBuf,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The target file.
    target: PathBuf,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    replicas: u16,
    /// What runs the replicas: processes (the target's `command`) or containers (its
    /// `image`). Default: processes, or containers when the target has only an image.
    #[arg(long, value_enum)]
    backend: Option<BackendName>,
    #[command(flatten)]
    workload: Workload,
}

#[derive(Debug, Args)]
struct SmokeArgs {
    /// The target file (its flows; [start] is ignored).
    target: PathBuf,
    /// An instance: `URL[,host=NAME][,name=NAME]`. `host` is the Host header to send,
    /// `name` is `{instance}` in --stop-cmd and --restart-cmd (default: the URL's host).
    #[arg(long = "instance", value_name = "URL", required_unless_present = "via", conflicts_with = "via")]
    instances: Vec<Instance>,
    /// A load balancer in front of the instances that replicheck cannot bypass; requests go
    /// through it, and --instance-header or --instance-cookie tells which instance served.
    #[arg(long, value_name = "URL")]
    via: Option<url::Url>,
    /// With --via: the response header naming the instance that served (X-Served-By).
    #[arg(long, value_name = "HEADER", requires = "via", conflicts_with = "instance_cookie")]
    instance_header: Option<http::header::HeaderName>,
    /// With --via: the balancer's sticky-session cookie naming the instance (SERVERID);
    /// replicheck sets it to steer each request to its planned instance.
    #[arg(long, value_name = "COOKIE", requires = "via")]
    instance_cookie: Option<String>,
    /// With --via: how many instances are behind it.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=64))]
    replicas: u16,
    /// With --via: sends of one request, at most, to land it on its planned instance.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    attempts: u32,
    /// Basic credentials for a protected deployment, `USER:PASSWORD`, sent on requests
    /// that carry none. Best given in the environment.
    #[arg(long, env = "REPLICHECK_BASIC_AUTH", hide_env_values = true, value_name = "USER:PASSWORD", conflicts_with = "bearer")]
    basic_auth: Option<String>,
    /// A bearer token for a protected deployment, sent on requests that carry none.
    #[arg(long, env = "REPLICHECK_BEARER", hide_env_values = true, value_name = "TOKEN")]
    bearer: Option<String>,
    /// Accepts any TLS certificate (a self-signed staging).
    #[arg(long)]
    insecure: bool,
    /// The address the instances see replicheck connect from, when they are configured to
    /// trust it as their proxy. Without it they must ignore forwarded headers from it.
    #[arg(long, value_name = "ADDRESS")]
    known_proxy: Option<std::net::IpAddr>,
    /// Stops an instance that the platform then brings back (`kubectl delete pod
    /// {instance}`); enables the restart experiment.
    #[arg(long, value_name = "COMMAND")]
    stop_cmd: Option<String>,
    /// Restarts an instance (`{instance}`, `{url}`); enables the restart experiment.
    #[arg(long, value_name = "COMMAND")]
    restart_cmd: Option<String>,
    /// Requests per second to the instances, at most.
    #[arg(long, value_name = "N")]
    max_rps: Option<std::num::NonZeroU32>,
    /// Requests to the instances, at most, over the whole run (probes included).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_requests: Option<u64>,
    #[command(flatten)]
    workload: Workload,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// The target file.
    target: PathBuf,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    replicas: u16,
    #[arg(long, value_enum)]
    backend: Option<BackendName>,
    /// Where replica and dependency logs go (default: reports/<run-id>/).
    #[arg(long)]
    report_dir: Option<PathBuf>,
}

/// What the virtual users do, and where the report goes: shared by `run` and `smoke`.
#[derive(Debug, Args)]
struct Workload {
    /// The seed of every random choice; a run is reproduced by its seed. Random if not given.
    #[arg(long)]
    seed: Option<u64>,
    /// random (seeded; every artifact handoff is also tried across replicas), round-robin,
    /// sticky, switch, or pin:rK.
    #[arg(long, default_value = "random")]
    routing: RoutingPolicy,
    /// Built-in scenario and chaos experiment names, scenario files or directories
    /// (default: every built-in scenario and experiment).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    scenarios: Vec<String>,
    /// Virtual users per scenario.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    vus: u32,
    /// Virtual users looping scenarios during a rolling restart.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    load_vus: u32,
    /// Virtual users running at once, at most.
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    concurrency: usize,
    /// Where the report goes (default: reports/<run-id>/).
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Prints the plan (every user's requests and routes, the experiments) and sends nothing.
    #[arg(long)]
    dry_run: bool,
    /// Fails the run (exit 3 when there are no findings) unless every selected scenario,
    /// inspection and experiment ran in full: skipped ones and kinds not exercised count.
    #[arg(long)]
    strict: bool,
    /// A policy file of known faults to accept for now: accepted findings are reported
    /// but do not fail the run.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Writes a policy file that accepts every diagnosis of this run.
    #[arg(long, value_name = "FILE")]
    write_policy: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

/// Which outputs a run writes.
#[derive(Debug, Clone, Args)]
struct Output {
    /// Outputs: table (the terminal), json, junit, markdown, html.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = OutputFormat::ALL)]
    format: Vec<OutputFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Junit,
    Markdown,
    Html,
}

impl OutputFormat {
    const ALL: [OutputFormat; 5] = [OutputFormat::Table, OutputFormat::Json, OutputFormat::Junit, OutputFormat::Markdown, OutputFormat::Html];

    fn file(self) -> Option<Format> {
        match self {
            OutputFormat::Table => None,
            OutputFormat::Json => Some(Format::Json),
            OutputFormat::Junit => Some(Format::Junit),
            OutputFormat::Markdown => Some(Format::Markdown),
            OutputFormat::Html => Some(Format::Html),
        }
    }
}

impl Output {
    fn all() -> Self {
        Self {
            format: OutputFormat::ALL.to_vec(),
        }
    }
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// A report.json written by `replicheck run` or `replicheck demo`.
    report: PathBuf,
    /// Replay only what this finding needs (`F3`).
    #[arg(long)]
    finding: Option<String>,
    /// Where the replay's report goes (default: reports/<run-id>/).
    #[arg(long)]
    report_dir: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
struct ExploreArgs {
    /// The target file.
    target: PathBuf,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=16))]
    replicas: u16,
    #[arg(long, value_enum)]
    backend: Option<BackendName>,
    /// The seed the schedules are drawn from. Random if not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Schedules to draw and run.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cases: u32,
    /// Steps (requests) in one schedule, at most.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=200))]
    max_steps: u32,
    /// Wall time for drawing and shrinking schedules (`90s`, `10m`); the controls of what
    /// was found still run after it.
    #[arg(long, default_value = "10m", value_parser = wall_time)]
    time: Duration,
    /// Simpler schedules tried per fault while shrinking, at most.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    max_shrink_iters: u32,
    /// Runs exactly this schedule instead of drawing any (a finding's reproduce command):
    /// `u0:login/0@r0 u0:login/1@r0 restart:r0 u0:login/2@r1`.
    #[arg(long, value_name = "SCHEDULE")]
    schedule: Option<String>,
    /// Built-in scenario names, scenario files or directories (default: every built-in one).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    scenarios: Vec<String>,
    /// Where the report goes (default: reports/<run-id>/).
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// A policy file of known faults to accept.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

/// `--time`: a duration from a second to 24 hours, as the target file's durations are bounded.
fn wall_time(text: &str) -> Result<Duration, String> {
    let time = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if time < Duration::from_secs(1) || time > replicheck::target::MAX_DURATION {
        return Err(format!("{text} is not between 1s and 24h"));
    }
    Ok(time)
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The directory a run wrote its report in.
    report_dir: PathBuf,
    /// A policy file of known faults to accept.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendName {
    /// Local processes.
    Process,
    /// Docker containers (DOCKER_HOST names the engine).
    Docker,
    /// Instances that already run: `replicheck smoke`.
    External,
}

impl BackendName {
    /// The backend that starts replicas; instances that already run need their URLs,
    /// which `smoke` takes.
    fn kind(self) -> Result<BackendKind, CliError> {
        match self {
            BackendName::Process => Ok(BackendKind::Process),
            BackendName::Docker => Ok(BackendKind::Docker),
            BackendName::External => Err(CliError::Usage(
                "--backend external: instances that already run are checked with `replicheck smoke TARGET --instance URL --instance URL`".into(),
            )),
        }
    }
}

/// The backend for a target file: the one asked for, or the one its [start] implies.
fn choose_backend(asked: Option<BackendName>, target: &Target, path: &Path) -> Result<BackendKind, CliError> {
    let asked = asked.map(BackendName::kind).transpose()?;
    BackendKind::choose(asked, &target.start).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return Exit::CouldNotRun.into();
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    // Replica processes are gone by now; do not wait for stray blocking tasks.
    runtime.shutdown_background();
    match result {
        Ok(exit) => exit.into(),
        Err(err) => {
            let _ = write!(std::io::stderr(), "{}", render::error(&err));
            err.exit().into()
        }
    }
}

async fn dispatch(command: Command) -> Result<Exit, CliError> {
    match command {
        Command::Run(args) => run_command(args).await,
        Command::Smoke(args) => smoke_command(*args).await,
        Command::Up(args) => up_command(args).await,
        Command::Demo(args) => demo_command(args).await,
        Command::Validate { files } => validate(&files),
        Command::Replay(args) => replay_command(args).await,
        Command::Check(args) => check_command(&args),
        Command::Explore(args) => explore_command(args).await,
        Command::Clean => {
            let reaped = reaper::reap_stale();
            println!(
                "removed {} process(es) and {} directory(ies) of {} dead run(s)",
                reaped.processes, reaped.dirs, reaped.runs
            );
            match Engine::connect().await {
                Ok(engine) => {
                    let removed = docker::reap(&engine, &reaper::live_runs()).await;
                    println!(
                        "removed {} container(s), {} network(s) and {} volume(s) of {} dead run(s)",
                        removed.containers, removed.networks, removed.volumes, removed.runs
                    );
                }
                Err(err) => println!("no containers to remove: {err}"),
            }
            Ok(Exit::Consistent)
        }
        Command::Watchdog { run_id, docker } => {
            replicheck::cluster::watchdog::watch(&run_id, docker).await;
            Ok(Exit::Consistent)
        }
        Command::DemoService(args) => replicheck_demo::serve(*args, shutdown_signal_unit())
            .await
            .map(|()| Exit::Consistent)
            .map_err(CliError::Io),
    }
}

async fn run_command(args: RunArgs) -> Result<Exit, CliError> {
    let target = Target::load(&args.target)?;
    let backend = choose_backend(args.backend, &target, &args.target)?;
    let mut base = format!("replicheck run {} --replicas {}", shell_word(&args.target.display().to_string()), args.replicas);
    if args.backend.is_some() {
        base.push_str(&format!(" --backend {}", backend.name()));
    }
    let config = workload_config(&args.workload, target, args.replicas, backend, None, base)?;
    finish(config, &args.target, &args.workload).await
}

async fn smoke_command(args: SmokeArgs) -> Result<Exit, CliError> {
    let target = Target::load(&args.target)?;
    let auth = match (&args.basic_auth, &args.bearer) {
        (Some(pair), _) => {
            let (user, password) = pair
                .split_once(':')
                .ok_or_else(|| CliError::Usage("--basic-auth (REPLICHECK_BASIC_AUTH) takes USER:PASSWORD".into()))?;
            Some(Auth::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            })
        }
        (None, Some(token)) => Some(Auth::Bearer(token.clone())),
        (None, None) => None,
    };
    if let Some(auth) = &auth {
        auth.header().map_err(|reason| CliError::Usage(format!("--basic-auth or --bearer: {reason}")))?;
    }
    if args.via.is_none() && args.instances.len() < 2 {
        return Err(CliError::Usage("a smoke test needs two instances or more (--instance URL --instance URL)".into()));
    }
    let mark = match (&args.instance_header, &args.instance_cookie) {
        (Some(header), _) => Some(InstanceMark::Header(header.clone())),
        (None, Some(cookie)) => Some(InstanceMark::Cookie(cookie.clone())),
        (None, None) => None,
    };
    if args.via.is_some() && mark.is_none() {
        return Err(CliError::Usage(
            "--via needs to know which instance served: --instance-header HEADER or --instance-cookie COOKIE".into(),
        ));
    }
    let spec = ExternalSpec {
        instances: args.instances.clone(),
        via: args.via.clone().zip(mark).map(|(url, mark)| Via {
            url,
            mark,
            attempts: args.attempts,
        }),
        auth,
        insecure: args.insecure,
        known_proxy: args.known_proxy,
        stop_cmd: args.stop_cmd.clone(),
        restart_cmd: args.restart_cmd.clone(),
        max_rps: args.max_rps,
        max_requests: args.max_requests,
    };
    let replicas = spec.replicas(args.replicas);
    let base = smoke_command_line(&args, replicas);
    let mut config = workload_config(&args.workload, target, replicas, BackendKind::External, Some(Arc::new(spec)), base)?;
    // Users beyond the rate would only queue at it, and time out there.
    if let Some(rps) = args.max_rps {
        config.concurrency = config.concurrency.min(rps.get() as usize);
    }
    finish(config, &args.target, &args.workload).await
}

/// The smoke command line short of the workload flags: everything but the credentials,
/// which the reproducing user gives again.
fn smoke_command_line(args: &SmokeArgs, replicas: u16) -> String {
    let mut words = vec!["replicheck smoke".to_owned(), shell_word(&args.target.display().to_string())];
    let mut flag = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            words.push(format!("--{name} {}", shell_word(&value)));
        }
    };
    for instance in &args.instances {
        flag("instance", Some(instance.to_string()));
    }
    flag("via", args.via.as_ref().map(ToString::to_string));
    flag("replicas", args.via.as_ref().map(|_| replicas.to_string()));
    flag("instance-header", args.instance_header.as_ref().map(ToString::to_string));
    flag("instance-cookie", args.instance_cookie.clone());
    flag("known-proxy", args.known_proxy.map(|proxy| proxy.to_string()));
    flag("stop-cmd", args.stop_cmd.clone());
    flag("restart-cmd", args.restart_cmd.clone());
    flag("max-rps", args.max_rps.map(|rps| rps.to_string()));
    flag("max-requests", args.max_requests.map(|n| n.to_string()));
    if args.insecure {
        words.push("--insecure".into());
    }
    words.join(" ")
}

/// A run's configuration from the workload flags; `base` is the command line that
/// reproduces it, short of the workload's own flags.
fn workload_config(
    workload: &Workload,
    target: Target,
    replicas: u16,
    backend: BackendKind,
    external: Option<Arc<ExternalSpec>>,
    base: String,
) -> Result<RunConfig, CliError> {
    if let Some(path) = &workload.write_policy {
        // Said now, not after a run of minutes that could not write its result.
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if path.is_dir() || !dir.is_dir() {
            let why = if path.is_dir() { "is a directory" } else { "is in a directory that does not exist" };
            return Err(CliError::Usage(format!("--write-policy {}: {why}", path.display())));
        }
    }
    let base = format!("{base} --routing {} --vus {}", workload.routing, workload.vus);
    let mut config = RunConfig::new(target)
        .select(&workload.scenarios)?
        .replicas(replicas)
        .seed(workload.seed.unwrap_or_else(seed::fresh))
        .routing(workload.routing)
        .vus(workload.vus)
        .report_dir(ReportDir::at_or_default(workload.report_dir.clone()))
        .replicheck(self_exe()?)
        .backend(backend)
        .reproduce(move |seed, scenario| format!("{base} --seed {seed} --scenarios {scenario}"));
    config.load_vus = workload.load_vus;
    config.concurrency = workload.concurrency;
    config.external = external;
    config.policy = workload.policy.as_deref().map(Policy::load).transpose()?;
    Ok(config)
}

/// Runs the configuration, or prints its plan with `--dry-run`.
async fn finish(config: RunConfig, target: &Path, workload: &Workload) -> Result<Exit, CliError> {
    if workload.dry_run {
        let plan = run::plan_only(&config, progress::observer().as_ref())?;
        print!("{}", report::text::plan(&plan));
        return Ok(Exit::Consistent);
    }
    let report = run_one(config, &target.display().to_string(), &workload.output).await?;
    if let Some(path) = &workload.write_policy {
        let text = policy::written_from(&report.diagnoses, &report.findings, &report.run_id);
        std::fs::write(path, text).map_err(|e| CliError::Io(format!("cannot write the policy file {}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    Ok(exit_for(&report, workload.strict))
}

async fn up_command(args: UpArgs) -> Result<Exit, CliError> {
    let target = Target::load(&args.target)?;
    let backend = choose_backend(args.backend, &target, &args.target)?;
    let config = UpConfig::new(target)
        .replicas(args.replicas)
        .backend(backend)
        .report_dir(ReportDir::at_or_default(args.report_dir))
        .replicheck(self_exe()?);
    eprintln!("replicheck: {} · {} replica(s) · {}", args.target.display(), args.replicas, backend.name());
    let observer = progress::observer();
    let started = tokio::select! {
        started = up::start(config, observer.as_ref()) => started?,
        signal = shutdown_signal() => return Err(CliError::Interrupted(signal)),
    };
    drop(observer);
    for endpoint in started.cluster.endpoints() {
        println!("{} http://{}", endpoint.replica, endpoint.addr);
    }
    println!("balancer {}", started.balancer.entrance().url(""));
    println!("logs {}", started.logs_dir.display());
    eprintln!("up until Ctrl-C");
    // Flushed, so a script reading the lines sees them while the cluster is up.
    let _ = std::io::stdout().flush();
    let signal = shutdown_signal().await;
    eprintln!("{signal}: stopping");
    drop(started.balancer);
    started.cluster.shutdown().await;
    Ok(Exit::Consistent)
}

/// Runs one configuration with progress on stderr and the outcome on stdout; Ctrl-C or
/// SIGTERM stop the run (dropping it stops every process it started).
async fn run_one(mut config: RunConfig, label: &str, output: &Output) -> Result<Report, CliError> {
    eprintln!(
        "replicheck: {label} · {} replica(s) · seed {} · routing {}",
        config.replicas, config.seed, config.routing
    );
    let signals = on_signal(&mut config.interrupt);
    let observer = progress::observer();
    let outcome = run::run(config, observer.as_ref()).await;
    signals.abort();
    // Clears the spinner before the outcome is printed.
    drop(observer);
    match outcome {
        // CI shows the report of a run that never started too; the error decides the exit.
        Err(RunError::NotStarted { source, outcome }) => {
            present(*outcome, output)?;
            Err(CliError::Run(*source))
        }
        outcome => present(outcome?, output),
    }
}

/// Turns the first SIGINT or SIGTERM into an interrupt of the run: it stops, stops its
/// replicas, and reports what it did.
fn on_signal(interrupt: &mut Interrupt) -> tokio::task::JoinHandle<()> {
    let (interrupter, fresh) = replicheck::interrupt::channel();
    *interrupt = fresh;
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        eprintln!("{signal}: stopping the run; its report holds what ran so far");
        interrupter.interrupt(signal);
        // Held until the run is over, so the run never reads a dropped sender as "never".
        std::future::pending::<()>().await;
    })
}

/// Writes the report files, appends the CI job summary, and prints the outcome.
fn present(outcome: RunOutcome, output: &Output) -> Result<Report, CliError> {
    let files: Vec<Format> = output.format.iter().filter_map(|f| f.file()).collect();
    let written = report::write(&outcome.report, &outcome.report_dir, &files)
        .map_err(|e| CliError::Io(format!("cannot write the report in {}: {e}", outcome.report_dir.display())))?;
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        report::markdown::append_to(&outcome.report, Path::new(&summary))
            .map_err(|e| CliError::Io(format!("cannot append to GITHUB_STEP_SUMMARY ({}): {e}", Path::new(&summary).display())))?;
    }
    if output.format.contains(&OutputFormat::Table) {
        print!("{}", report::text::outcome(&outcome.report));
    }
    for file in written {
        println!("wrote {}", file.display());
    }
    Ok(outcome.report)
}

/// A run's verdict as an exit status; see `Verdict::of`.
fn exit_for(report: &Report, strict: bool) -> Exit {
    match Verdict::of(report, strict) {
        Verdict::Consistent => Exit::Consistent,
        Verdict::Findings => Exit::Findings,
        Verdict::Interrupted { signal } => Exit::interrupted_by(&signal),
        // Untested, and any verdict added later: nothing proven.
        _ => Exit::CouldNotRun,
    }
}

async fn demo_command(args: DemoCommand) -> Result<Exit, CliError> {
    let seed = args.seed.unwrap_or_else(seed::fresh);
    let cwd = std::env::current_dir().map_err(|e| CliError::Io(format!("cannot read the current directory: {e}")))?;
    let has_redis = which::which("redis-server").is_ok();
    let has_postgres = replicheck::cluster::dependency::postgres_installed();
    let mut outcomes = Vec::new();
    for demo in &replicheck_demo::RUNS {
        let missing = match demo.needs {
            Some(Need::Redis) if !has_redis => Some("the demo's Redis, and redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)"),
            Some(Need::Postgres) if !has_postgres => Some("the demo's PostgreSQL, and its server is not installed (Debian/Ubuntu: apt-get install postgresql)"),
            _ => None,
        };
        if let Some(missing) = missing {
            eprintln!("\n== the demo service, {}: skipped ==\n  {} need {missing}", demo.label, demo.only.unwrap_or_default().join(" and "));
            continue;
        }
        let mut target = Target::from_source(&SourceFile::from_text(demo.path, demo.text))?;
        // The files are built in: replicas start in the current directory, wherever it is.
        target.start.cwd = Some(cwd.clone());
        let config = RunConfig::new(target)
            .select(demo.only.unwrap_or_default())?
            .replicas(args.replicas)
            .seed(seed)
            .report_dir(ReportDir::Under(args.reports.clone()))
            .replicheck(self_exe()?)
            .backend(BackendKind::Process)
            .reproduce(|seed, _| format!("replicheck demo --seed {seed}"));
        eprintln!("\n== the demo service, {} ==", demo.label);
        outcomes.push((demo, run_one(config, demo.path, &Output::all()).await?));
    }
    println!();
    for (demo, report) in &outcomes {
        let mut kinds: Vec<String> = report.findings.iter().map(|f| f.kind.to_string()).collect();
        kinds.sort();
        kinds.dedup();
        let causes = match report.diagnoses.len() {
            0 => String::new(),
            n => format!(" in {n} probable cause(s)"),
        };
        println!(
            "{}: {} finding(s){causes}{}",
            demo.label,
            report.findings.len(),
            if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) }
        );
    }
    let as_expected = outcomes.iter().all(|(demo, report)| {
        if demo.misconfigured { !report.findings.is_empty() } else { exit_for(report, false) == Exit::Consistent }
    });
    if as_expected {
        println!("the same app fails on several instances until its keys, sessions, cache, shutdown, readiness and background work are right");
        Ok(Exit::Consistent)
    } else {
        println!("unexpected: the demo should find problems only in its misconfigured runs");
        Ok(Exit::Findings)
    }
}

async fn explore_command(args: ExploreArgs) -> Result<Exit, CliError> {
    let target = Target::load(&args.target)?;
    let backend = choose_backend(args.backend, &target, &args.target)?;
    let schedule = args
        .schedule
        .as_deref()
        .map(str::parse::<Schedule>)
        .transpose()
        .map_err(|e| CliError::Usage(format!("--schedule: {e}")))?;
    let selection = Selection::of(&args.scenarios)?;
    let checks: Vec<&str> = selection.inspections.iter().map(|k| k.name()).chain(selection.experiments.iter().map(|k| k.name())).collect();
    if !args.scenarios.is_empty() && !checks.is_empty() {
        return Err(CliError::Usage(format!(
            "--scenarios {}: explore runs scenarios and draws its own disruptions; run inspections and experiments with `replicheck run`",
            checks.join(",")
        )));
    }
    let seed = args.seed.unwrap_or_else(seed::fresh);
    let mut base = format!("replicheck explore {} --replicas {}", shell_word(&args.target.display().to_string()), args.replicas);
    if args.backend.is_some() {
        base.push_str(&format!(" --backend {}", backend.name()));
    }
    if !args.scenarios.is_empty() {
        base.push_str(&format!(" --scenarios {}", shell_word(&args.scenarios.join(","))));
    }
    let mut config = ExploreConfig::new(target)
        .select(&args.scenarios)?
        .replicas(args.replicas)
        .seed(seed)
        .cases(args.cases)
        .max_steps(args.max_steps as usize)
        .time(args.time)
        .report_dir(ReportDir::at_or_default(args.report_dir.clone()))
        .replicheck(self_exe()?)
        .backend(backend)
        .reproduce(move |schedule| format!("{base} --seed {seed} --schedule {}", shell_word(&schedule.to_string())));
    config.max_shrink_iters = args.max_shrink_iters;
    config.schedule = schedule;
    config.policy = args.policy.as_deref().map(Policy::load).transpose()?;
    let report = explore_one(config, &args.target.display().to_string(), &args.output).await?;
    Ok(exit_for(&report, false))
}

/// Explores with progress on stderr and the outcome on stdout, as `run_one` runs.
async fn explore_one(mut config: ExploreConfig, label: &str, output: &Output) -> Result<Report, CliError> {
    let what = if config.schedule.is_some() { "one schedule".to_owned() } else { format!("{} case(s)", config.cases) };
    eprintln!("replicheck: explore {label} · {} replica(s) · seed {} · {what}", config.replicas, config.seed);
    let signals = on_signal(&mut config.interrupt);
    let observer = progress::observer();
    let outcome = explore::explore(config, observer.as_ref()).await;
    signals.abort();
    drop(observer);
    present(outcome?, output)
}

/// Judges a stored run again and shows the outcome as the run did; the exit status is the
/// run's, judged again.
fn check_command(args: &CheckArgs) -> Result<Exit, CliError> {
    let (recorded, record) = run::stored::read(&args.report_dir)?;
    let selection = Selection::of(&recorded.config.scenarios)?;
    let policy = args.policy.as_deref().map(Policy::load).transpose()?;
    let judged = run::stored::rejudge(recorded, &record, &selection.scenarios, selection.run_scenarios, policy.as_ref())?;
    print!("{}", report::text::outcome(&judged));
    Ok(exit_for(&judged, false))
}

async fn replay_command(args: ReplayArgs) -> Result<Exit, CliError> {
    let shown = args.report.display().to_string();
    let recorded = Report::read(&args.report).map_err(|e| CliError::Usage(format!("cannot read {shown} as a replicheck report: {e}")))?;
    let usage = |err: ReplayError| match err {
        ReplayError::Select(err) => CliError::Select(err),
        ReplayError::NeedsFinding => CliError::Usage(format!("{shown} is an exploration: replay one finding's smallest schedule with --finding ID")),
        err => CliError::Usage(format!("{shown}: {err}")),
    };
    // An unknown finding is said before anything is loaded or started.
    let focus = replay::focus(&recorded, args.finding.as_deref()).map_err(usage)?;
    let mut config = ReplayConfig::new(recorded_target(&recorded.target_file)?)
        .report_dir(ReportDir::at_or_default(args.report_dir))
        .replicheck(self_exe()?)
        .reproduce(format!("replicheck replay {}", shell_word(&shown)));
    config.finding = args.finding.clone();
    let label = format!("replay of {shown}");
    let replayed = match replay::plan(&recorded, config).map_err(usage)? {
        Replay::Schedule(config) => explore_one(config, &label, &args.output).await?,
        Replay::Run(config) => {
            let replayed = run_one(config, &label, &args.output).await?;
            if args.finding.is_none() && replayed.plan != recorded.plan {
                println!("note: the plan differs from the recorded one: the target or scenario files changed since");
            }
            replayed
        }
    };
    tell_replayed(&args.report, &recorded, &replayed, focus);
    Ok(exit_for(&replayed, false))
}

/// Says, finding by finding, whether the replay saw again what the report recorded.
fn tell_replayed(path: &Path, recorded: &Report, replayed: &Report, focus: Option<&Finding>) {
    println!("\nreplay of {} (seed {}):", path.display(), recorded.seed);
    let comparison = replay::compare(recorded, replayed, focus);
    for (finding, again) in &comparison.recorded {
        println!(
            "  {} {} {} / {}: {}",
            finding.id,
            finding.kind,
            finding.scenario,
            finding.step,
            if *again { "reproduced" } else { "did not happen again" }
        );
    }
    for finding in &comparison.new {
        println!("  new: {} {} / {}", finding.kind, finding.scenario, finding.step);
    }
    if comparison.recorded.is_empty() && comparison.new.is_empty() {
        println!("  no findings, as recorded");
    }
}

/// The target a report names: its file, or the built-in demo file of that name.
fn recorded_target(path: &str) -> Result<Target, CliError> {
    let file = Path::new(path);
    if file.exists() {
        return Ok(Target::load(file)?);
    }
    let demo = replicheck_demo::RUNS.iter().find(|d| d.path == path).ok_or_else(|| {
        CliError::Usage(format!("the report's target file {path} is not here; run replay where the run was made"))
    })?;
    let mut target = Target::from_source(&SourceFile::from_text(demo.path, demo.text))?;
    target.start.cwd = Some(std::env::current_dir().map_err(|e| CliError::Io(format!("cannot read the current directory: {e}")))?);
    Ok(target)
}

fn validate(files: &[PathBuf]) -> Result<Exit, CliError> {
    for path in files {
        match replicheck::validate::file(path)? {
            Valid::Target(target) => println!("ok: {} (target {}; flows: {})", path.display(), target.name, target.flows().join(", ")),
            Valid::Scenario(scenario) => println!("ok: {} (scenario {})", path.display(), scenario.name()),
            _ => println!("ok: {}", path.display()),
        }
    }
    Ok(Exit::Consistent)
}

fn self_exe() -> Result<PathBuf, CliError> {
    std::env::current_exe().map_err(|e| CliError::Io(format!("cannot find the replicheck binary's path: {e}")))
}

/// Completes on SIGINT or SIGTERM, naming it.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        // Without signal handlers the default dispositions stay, and the parent-death
        // signal still takes the replicas down.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

async fn shutdown_signal_unit() {
    shutdown_signal().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
