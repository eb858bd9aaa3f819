//! The `goreal-operator` command line: subcommands only, no logic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use goreal_operator::leader::LeaderElection;
use goreal_operator::{audit, controller, crd, http, metrics::Metrics, render, rotate, telemetry};

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
        #[command(flatten)]
        leader: LeaderArgs,
    },
    /// Print the CustomResourceDefinition as YAML.
    Crd,
    /// Print what the controller would apply for the given policy and workload manifests.
    Render {
        /// Files or directories of YAML manifests.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Report the compliance of manifests as written (no cluster): exit 1 when a check at or
    /// above --fail-on fails or a policy is invalid, 2 when a file cannot be read.
    Audit {
        /// Files or directories of YAML manifests (plain, Helm or Kustomize output); policies
        /// among them are used, else the built-in policy (restricted pod hardening).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// A policy file to audit with, in addition to any policy among the manifests.
        #[arg(long)]
        policy: Vec<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = AuditFormat::Table)]
        output: AuditFormat,
        /// Lowest severity whose failure fails the audit: low, medium, high or critical
        /// (default: each policy's spec.compliance.failOn, Low when unset).
        #[arg(long, value_parser = parse_fail_on)]
        fail_on: Option<goreal_operator::crd::Severity>,
    },
    /// Ask the controller to rotate a policy's Secrets now (all, or the one named).
    Rotate {
        /// The policy, as NAMESPACE/POLICY.
        target: String,
        /// One Secret of the policy; all of them when absent.
        secret: Option<String>,
    },
}

/// Formats of `audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AuditFormat {
    /// A readable table.
    Table,
    /// JSON: per policy its compliance report.
    Json,
    /// SARIF 2.1.0, for code-scanning UIs.
    Sarif,
}

fn parse_fail_on(text: &str) -> Result<goreal_operator::crd::Severity, String> {
    audit::parse_severity(text)
        .ok_or_else(|| format!("{text:?} is not a severity: low, medium, high or critical"))
}

/// Leader election flags of `run`.
#[derive(clap::Args)]
struct LeaderArgs {
    /// Elect one writer among the replicas on a coordination.k8s.io Lease.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "goreal-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a leader holds the Lease without renewing it: the longest a takeover waits.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Seconds before expiry at which the leader renews; shorter than the duration.
    #[arg(long, default_value_t = 5)]
    lease_renew_grace: u64,
}

impl LeaderArgs {
    /// The checked settings, or `None` without `--leader-elect`.
    fn settings(self) -> anyhow::Result<Option<LeaderElection>> {
        if !self.leader_elect {
            return Ok(None);
        }
        let identity = match self.identity {
            Some(identity) => identity,
            None => std::env::var("HOSTNAME")
                .context("--leader-elect needs an identity: set --identity or POD_NAME")?,
        };
        let settings = LeaderElection {
            lease_name: self.lease_name,
            namespace: self.lease_namespace,
            identity,
            duration: Duration::from_secs(self.lease_duration),
            grace: Duration::from_secs(self.lease_renew_grace),
        };
        settings.check()?;
        Ok(Some(settings))
    }
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
                eprintln!(
                    "error: a policy is invalid; its rendered status (condition Ready, reason InvalidSpec) names every problem"
                );
                ExitCode::from(1)
            })
        }
        Command::Audit {
            files,
            policy,
            output,
            fail_on,
        } => {
            let mut paths = files;
            paths.extend(policy);
            let manifests = render::load(&paths)?;
            if manifests.policies.is_empty() && manifests.workloads.is_empty() {
                eprintln!(
                    "error: no workload or policy in {}: nothing to audit (empty files, or only kinds no check reads)",
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return Ok(ExitCode::from(2));
            }
            for (kind, count) in &manifests.skipped_kinds {
                let kind = if kind.is_empty() { "<no kind>" } else { kind };
                eprintln!("note: {count} {kind} object(s) not audited (no check reads that kind)");
            }
            let audits = audit::audit(&manifests, jiff::Timestamp::now());
            let text = match output {
                AuditFormat::Table => audit::table(&audits),
                AuditFormat::Json => serde_json::to_string_pretty(&audit::json(&audits))? + "\n",
                AuditFormat::Sarif => {
                    serde_json::to_string_pretty(&audit::sarif(&audits, &manifests))? + "\n"
                }
            };
            // A reader that stops early (`| head`) is not an error of the audit.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            Ok(if audit::fails(&audits, fail_on) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Rotate { target, secret } => {
            let (namespace, name) = rotate::parse_target(&target)?;
            let client = kube::Client::try_default()
                .await
                .context("no usable kubeconfig")?;
            let value = rotate::request_rotation(
                &client,
                &namespace,
                &name,
                secret.as_deref(),
                jiff::Timestamp::now(),
            )
            .await?;
            println!(
                "rotation requested: {namespace}/{name} annotated {}={value}; the operator rotates and reports the new versions in status.secrets",
                goreal_operator::names::ROTATE_NOW_ANNOTATION
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            namespace,
            http_addr,
            concurrency,
            log_json,
            leader,
        } => {
            let leader_election = leader.settings()?;
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
                leader_election,
            };
            let shutdown = async {
                let mut terminate =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async {
                        match terminate.as_mut() {
                            Some(signal) => { signal.recv().await; }
                            None => futures::future::pending::<()>().await,
                        }
                    } => {}
                }
                tracing::info!("stopping");
            };
            controller::run(
                client,
                options,
                metrics,
                ready,
                futures::stream::pending(),
                shutdown,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
