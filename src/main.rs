//! The `goreal-operator` command line: subcommands only, no logic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use goreal_operator::{controller, crd, http, metrics::Metrics, render, telemetry};

#[derive(Parser)]
#[command(
    name = "goreal-operator",
    version,
    about = "Kubernetes operator for GoREALSecurityPolicy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster of the kubeconfig (or in-cluster config).
    Run {
        /// Watch one namespace only.
        #[arg(long, env = "GOREAL_NAMESPACE")]
        namespace: Option<String>,
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, env = "GOREAL_HTTP_ADDR", default_value = "0.0.0.0:8080")]
        http_addr: SocketAddr,
        /// Reconciles running at once.
        #[arg(long, default_value_t = 8)]
        concurrency: u16,
        /// Log as JSON lines.
        #[arg(long, env = "GOREAL_LOG_JSON")]
        log_json: bool,
    },
    /// Print the CustomResourceDefinition as YAML.
    Crd,
    /// Print what the controller would apply for the given policy and workload manifests.
    Render {
        /// Files or directories of YAML manifests.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crd => {
            print!("{}", crd::crd_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Render { files } => {
            let manifests = render::load(&files)?;
            let rendered = render::render(&manifests, jiff::Timestamp::now())?;
            print!("{}", rendered.yaml);
            Ok(if rendered.all_valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Run {
            namespace,
            http_addr,
            concurrency,
            log_json,
        } => {
            telemetry::init(log_json);
            let client = kube::Client::try_default()
                .await
                .context("no usable kubeconfig")?;
            let metrics = Metrics::new()?;
            let ready = Arc::new(AtomicBool::new(false));
            let listener = tokio::net::TcpListener::bind(http_addr)
                .await
                .with_context(|| format!("cannot listen on {http_addr}"))?;
            tokio::spawn(http::serve(listener, metrics.clone(), ready.clone()));
            tracing::info!(%http_addr, namespace = namespace.as_deref().unwrap_or("<all>"), "starting");
            let options = controller::RunOptions {
                namespace,
                concurrency,
            };
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            controller::run(
                client,
                options,
                metrics,
                ready,
                futures::stream::pending(),
                shutdown,
            )
            .await;
            Ok(ExitCode::SUCCESS)
        }
    }
}
