//! The service under test: here the bundled demo, standing in for a team's own binary.
//! Its flags choose how it is (mis)configured for several instances.

use clap::Parser;
use replicheck_demo::DemoArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    demo: DemoArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let terminate = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match replicheck_demo::serve(Cli::parse().demo, terminate).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo-service: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
