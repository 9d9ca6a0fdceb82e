//! The command tree. Each command lives in its own module and stays thin: it parses its
//! arguments, calls the library module that does the work, and reports through [`Output`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::{self, Format, Output};

mod build;
mod deploy;
mod down;
mod healthcheck;
mod node;
mod plan;
mod push;
mod render;
mod serve;
mod status;
mod teardown;
mod up;

/// Run Zenko's storage modules on Docker Swarm.
#[derive(Debug, Parser)]
#[command(name = "zenkoctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Output for people (`human`) or one JSON document for machines (`json`).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub output: Format,
    /// Docker Engine endpoint (unix:///path, tcp://host:port); defaults to DOCKER_HOST, then the
    /// local socket.
    #[arg(long, global = true, env = "DOCKER_HOST")]
    pub host: Option<String>,
    /// More log detail on stderr (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up and run a local single-node Zenko module stack (engine, swarm, image, deploy).
    Up(up::UpArgs),
    /// Remove what `up` created.
    Down(down::DownArgs),
    /// Deploy the Zenko stack to the swarm and wait until it is converged and healthy.
    Deploy(deploy::DeployArgs),
    /// Remove the Zenko stack and wait until it is really gone.
    Teardown(teardown::TeardownArgs),
    /// Render docker-stack.yml from the templates and a values profile, and validate it.
    Render(render::RenderArgs),
    /// Show what a deploy would change, without changing anything.
    Plan(plan::PlanArgs),
    /// Report the health of the deployed stack (exit 0 healthy, 10 degraded, 11 down).
    Status(status::StatusArgs),
    /// List, label and unlabel swarm nodes (the storage label io.zenko.type=storage).
    Node(node::NodeArgs),
    /// Build the module image through the Engine API.
    Build(build::BuildArgs),
    /// Push the module image to its registry and print its digest.
    Push(push::PushArgs),
    /// Run the bundled metadata (9990) and data (9991) server.
    Serve(serve::ServeArgs),
    /// Probe the server's health (the image's HEALTHCHECK; exit 0 healthy, 1 not).
    #[command(hide = true)]
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// What every command gets besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    pub output: Output,
    pub host: Option<String>,
}

/// Entry point of the binary: parse, run, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.output);
    let ctx = Context {
        output: Output::new(cli.output),
        host: cli.host.clone(),
    };
    let result = match cli.command {
        Command::Render(args) => render::run(args, &ctx),
        Command::Serve(args) => serve::run(args, &ctx),
        Command::Deploy(args) => deploy::run(args, &ctx),
        Command::Teardown(args) => teardown::run(args, &ctx),
        Command::Plan(args) => plan::run(args, &ctx),
        Command::Status(args) => status::run(args, &ctx),
        Command::Node(args) => node::run(args, &ctx),
        Command::Build(args) => build::run(args, &ctx),
        Command::Up(args) => up::run(args, &ctx),
        Command::Down(args) => down::run(args, &ctx),
        Command::Push(args) => push::run(args, &ctx),
        Command::Healthcheck(args) => healthcheck::run(args, &ctx),
    };
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(error) => {
            let exit = output::exit_of(&error);
            ctx.output.error(&error, exit);
            ExitCode::from(exit.code())
        }
    }
}

fn init_logging(verbose: u8, format: Format) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn,zenkoctl=info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        Format::Json => builder.json().try_init(),
        Format::Human => builder.try_init(),
    };
}
