//! Scale benchmark on the local control plane (see docs/performance.md): N namespaces with ten
//! workloads and one policy each, the operator binary converging them, compared with a plain
//! writer making the same writes; then a quiet period, foreign Secrets and ConfigMaps, churn,
//! and `audit` against kube-score offline. `hack/bench/scale.sh [--smoke]` runs it.
//!
//! Request counts come from the API server's own `apiserver_request_total`; the harness's own
//! requests in each window are known and taken out. Only counts are asserted (the smoke run in
//! CI relies on that), never times.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "../../tests/common/mod.rs"]
mod common;

mod churn;
mod cluster;
mod floor;
mod offline;
mod process;
mod requests;
mod world;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, stream};
use goreal_operator::crd::GoREALSecurityPolicy;
use goreal_testenv::ControlPlane;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};

use process::{OperatorProcess, mib};
use requests::Counts;

/// Parallel creates during setup (not measured).
const SETUP_CONCURRENCY: usize = 32;

#[derive(Parser, Debug)]
#[command(about = "Scale benchmark of goreal-operator on the local control plane")]
struct Args {
    /// Namespaces, each with ten workloads and one policy.
    #[arg(long, default_value_t = 1000)]
    namespaces: usize,
    /// Foreign Secrets, and as many ConfigMaps, spread over the governed namespaces.
    #[arg(long, default_value_t = 10_000)]
    foreign: usize,
    /// Seconds of the quiet period after convergence.
    #[arg(long, default_value_t = 30)]
    quiet: u64,
    /// Seconds of churn.
    #[arg(long, default_value_t = 30)]
    churn: u64,
    /// Share of the workloads changed per second during churn, in percent.
    #[arg(long, default_value_t = 1.0)]
    churn_percent: f64,
    /// Reconciles at once, the operator's default; the floor writes as many namespaces at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Manifests for the offline comparison.
    #[arg(long, default_value_t = 10_000)]
    manifests: usize,
    /// kube-score binary; without it the offline comparison measures `audit` alone.
    #[arg(long)]
    kube_score: Option<PathBuf>,
    /// The CI size: 50 namespaces, 500 foreign objects of each kind, short periods, 500
    /// manifests.
    #[arg(long)]
    smoke: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    fn sized(mut self) -> Args {
        if self.smoke {
            self.namespaces = 50;
            self.foreign = 500;
            self.quiet = 10;
            self.churn = 5;
            self.manifests = 500;
        }
        self
    }
}

/// Counts that must hold at every size; the run fails when one does not.
#[derive(Default)]
struct Verdicts(Vec<String>);

impl Verdicts {
    fn expect(&mut self, holds: bool, what: String) {
        let mark = if holds { "ok" } else { "FAILED" };
        println!("- {mark}: {what}");
        if !holds {
            self.0.push(what);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0.0, |kib| kib as f64 / 1024.0 / 1024.0);
    format!("{cores} cores ({model}), {memory:.0} GiB")
}

/// Every policy Ready for its current generation with all ten workloads hardened.
fn converged(policy: &GoREALSecurityPolicy) -> bool {
    let Some(status) = &policy.status else {
        return false;
    };
    status.observed_generation == policy.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        && status
            .workloads
            .as_ref()
            .is_some_and(|w| w.hardened as usize == world::WORKLOADS_PER_NAMESPACE)
}

async fn setup(client: &kube::Client, namespaces: &[String]) {
    let all = |make: fn(&str) -> Vec<serde_json::Value>| {
        namespaces.iter().flat_map(|n| make(n)).collect::<Vec<_>>()
    };
    cluster::create_all(
        client,
        all(|n| vec![world::namespace(n)]),
        SETUP_CONCURRENCY,
    )
    .await;
    cluster::create_all(client, all(world::workloads), SETUP_CONCURRENCY).await;
    cluster::create_all(client, all(|n| vec![world::policy(n)]), SETUP_CONCURRENCY).await;
}

#[tokio::main]
async fn main() {
    let mut raw = std::env::args_os();
    if raw.nth(1).is_some_and(|a| a == process::MEASURE) {
        process::measure_command(raw);
    }
    let args = Args::parse().sized();
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    common::install_crd(&client).await;
    // Kept when the run fails, for the operator's log; removed at the end of a passing run.
    let work = tempfile::Builder::new()
        .prefix("goreal-scale-")
        .tempdir()
        .expect("work dir")
        .keep();
    let mut verdicts = Verdicts::default();
    let n = args.namespaces;
    let workloads = n * world::WORKLOADS_PER_NAMESPACE;
    println!(
        "# Scale run: {n} namespaces, {workloads} workloads, {} foreign Secrets and ConfigMaps each; {}\n",
        args.foreign,
        machine()
    );

    // 1. Setup (not measured).
    let began = Instant::now();
    let namespaces: Vec<String> = (0..n).map(|i| format!("scale-{i:04}")).collect();
    setup(&client, &namespaces).await;
    println!("setup: {:.1} s\n", began.elapsed().as_secs_f64());

    // The harness follows the policies through one watch, so its polling sends no requests.
    let (policies, writer) = reflector::store::<GoREALSecurityPolicy>();
    let follow = tokio::spawn(
        watcher(
            Api::<GoREALSecurityPolicy>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures::future::ready(())),
    );
    policies.wait_until_ready().await.expect("policy watch");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2. The operator, from start to every policy converged.
    let before = Counts::read(&client).await;
    let operator = OperatorProcess::start(
        plane.kubeconfig_path(),
        &work.as_path().join("operator.log"),
        args.concurrency,
    );
    let deadline = Duration::from_secs(600 + n as u64);
    loop {
        let done = policies.state().iter().filter(|p| converged(p)).count();
        if done == n {
            break;
        }
        if operator.started.elapsed() > deadline {
            eprintln!(
                "scale run failed: only {done} of {n} policies converged within {deadline:?}; \
                 operator log in {}",
                work.display()
            );
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let convergence = operator.started.elapsed();
    let at_convergence = operator.usage();
    // Events and status writes that finish just after the last status was seen belong here.
    let converged_counts = Counts::settled(&client).await;
    let convergence_requests = converged_counts.since(&before);
    let operator_writes = convergence_requests.writes();

    // 3. Quiet period: nothing changes, so nothing may be written.
    tokio::time::sleep(Duration::from_secs(args.quiet)).await;
    let quiet_counts = Counts::read(&client).await;
    let quiet = quiet_counts.since(&converged_counts);
    let quiet_usage = operator.usage();

    // 4. Foreign Secrets and ConfigMaps in the governed namespaces: no write, no memory.
    let foreign: Vec<serde_json::Value> = (0..args.foreign)
        .flat_map(|i| {
            let namespace = &namespaces[i % n];
            [
                world::foreign("Secret", namespace, i),
                world::foreign("ConfigMap", namespace, i),
            ]
        })
        .collect();
    cluster::create_all(&client, foreign, SETUP_CONCURRENCY).await;
    let foreign_counts = Counts::settled(&client).await;
    let mut foreign_writes = foreign_counts.since(&quiet_counts).writes();
    foreign_writes.subtract("POST", "/secrets", args.foreign as u64);
    foreign_writes.subtract("POST", "/configmaps", args.foreign as u64);
    let foreign_usage = operator.usage();

    // 5. Churn.
    let per_second = ((workloads as f64 * args.churn_percent / 100.0).round() as usize).max(1);
    let churn = churn::run(
        &client,
        &namespaces,
        per_second,
        args.churn,
        Duration::from_secs(120),
    )
    .await;
    let churn_usage = operator.usage();
    let mut churn_requests = Counts::read(&client).await.since(&foreign_counts);
    churn_requests.subtract("GET", "apps/deployments", churn.gets);
    churn_requests.subtract("PUT", "apps/deployments", churn.puts);
    // The harness's watch of the churned Deployments: its initial list comes in pages of 500.
    let pages = (n * world::DEPLOYMENTS.len()).div_ceil(500) as u64;
    churn_requests.subtract("LIST", "apps/deployments", pages);
    churn_requests.subtract("WATCH", "apps/deployments", 1);
    operator.stop();
    follow.abort();

    // 6. The floor: the same world in other namespaces, the same writes from `render`, no
    // operator running.
    let floor_namespaces: Vec<String> = (0..n).map(|i| format!("floor-{i:04}")).collect();
    setup(&client, &floor_namespaces).await;
    let count = |c: &Counts, verb: &str, resource: &str| {
        c.0.get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let events_per_policy =
        (count(&convergence_requests, "POST", "events.k8s.io/events") as f64 / n as f64).round();
    let plans: Vec<Vec<cluster::Write>> = floor_namespaces
        .iter()
        .map(|namespace| floor::writes_for(namespace, events_per_policy as usize))
        .collect();
    let floor_write_count: usize = plans.iter().map(Vec::len).sum();
    let floor_before = Counts::read(&client).await;
    let floor_started = Instant::now();
    stream::iter(plans)
        .map(|writes| {
            let client = client.clone();
            async move {
                for write in writes {
                    write.send(&client).await.expect("floor write");
                }
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .collect::<Vec<()>>()
        .await;
    let floor_time = floor_started.elapsed();
    let floor_requests = Counts::read(&client).await.since(&floor_before);

    // 7. Offline: audit and kube-score over the same manifests.
    let files = offline::write_manifests(&work.as_path().join("manifests"), args.manifests);
    let audit = offline::audit(
        &work.as_path().join("manifests"),
        &work.as_path().join("audit.err"),
    );
    let kube_score = args
        .kube_score
        .as_ref()
        .map(|binary| offline::kube_score(binary, &files, &work.as_path().join("kube-score.err")));

    // Report.
    let writes = operator_writes.total();
    let floor_writes = floor_requests.writes().total();
    let ratio = convergence.as_secs_f64() / floor_time.as_secs_f64();
    let mut latencies = churn.latencies.clone();
    latencies.sort();
    println!("## Convergence\n");
    println!("| measure | value |\n|---|---|");
    println!(
        "| operator: start to every policy converged | {:.1} s |",
        convergence.as_secs_f64()
    );
    println!(
        "| floor: the same writes from `render`, {} at once | {:.1} s |",
        args.concurrency,
        floor_time.as_secs_f64()
    );
    println!("| ratio operator / floor | {ratio:.2} |");
    println!(
        "| operator writes | {writes} ({:.2} per workload) |",
        writes as f64 / workloads as f64
    );
    println!("| floor writes (one per object, status and event) | {floor_writes} |");
    println!(
        "| operator writes per floor write | {:.2} |",
        writes as f64 / floor_writes.max(1) as f64
    );
    println!(
        "| operator requests of any kind | {} |",
        convergence_requests.total()
    );
    println!(
        "| operator CPU at convergence | {:.1} s |",
        at_convergence.cpu_seconds
    );
    println!(
        "| operator resident memory at convergence (peak) | {:.1} MiB ({:.1} MiB) |",
        mib(at_convergence.rss_kib),
        mib(at_convergence.peak_rss_kib)
    );
    println!("\nOperator requests during convergence, by verb and resource:\n");
    println!("| verb | resource | requests |\n|---|---|---|");
    print!("{}", convergence_requests.table());
    println!("\nFloor requests:\n");
    println!("| verb | resource | requests |\n|---|---|---|");
    print!("{}", floor_requests.table());

    println!("\n## Steady state\n");
    println!("| measure | value |\n|---|---|");
    println!(
        "| writes in the {} s quiet period | {} |",
        args.quiet,
        quiet.writes().total()
    );
    println!(
        "| requests of any kind in the quiet period | {} |",
        quiet.total()
    );
    println!(
        "| resident memory after the quiet period | {:.1} MiB |",
        mib(quiet_usage.rss_kib)
    );
    println!(
        "| resident memory after {} foreign Secrets and {} ConfigMaps | {:.1} MiB ({:+.1} MiB) |",
        args.foreign,
        args.foreign,
        mib(foreign_usage.rss_kib),
        mib(foreign_usage.rss_kib) - mib(quiet_usage.rss_kib)
    );
    println!(
        "| operator writes caused by the foreign objects | {} |",
        foreign_writes.total()
    );
    println!(
        "| churn: Deployments replaced ({per_second}/s asked for {} s) | {} in {:.1} s ({:.0}/s) |",
        args.churn,
        churn.changed,
        churn.sending.as_secs_f64(),
        churn.changed as f64 / churn.sending.as_secs_f64().max(0.001)
    );
    println!(
        "| churn: change to re-hardened p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "| churn: operator writes | {} ({:.2} per change) |",
        churn_requests.writes().total(),
        churn_requests.writes().total() as f64 / churn.changed.max(1) as f64
    );
    println!(
        "| resident memory after churn | {:.1} MiB ({:+.1} MiB) |",
        mib(churn_usage.rss_kib),
        mib(churn_usage.rss_kib) - mib(foreign_usage.rss_kib)
    );
    println!(
        "| peak resident memory over the run | {:.1} MiB |",
        mib(churn_usage.peak_rss_kib)
    );
    println!(
        "| operator CPU over the run | {:.1} s |",
        churn_usage.cpu_seconds
    );
    if !quiet.writes().0.is_empty() {
        println!("\nWrites in the quiet period:\n\n| verb | resource | requests |\n|---|---|---|");
        print!("{}", quiet.writes().table());
    }
    println!("\nOperator requests during churn:\n\n| verb | resource | requests |\n|---|---|---|");
    print!("{}", churn_requests.table());

    println!(
        "\n## Offline: {} manifests in {} files\n",
        args.manifests,
        files.len()
    );
    println!("| tool | wall time | manifests/s | peak resident memory |\n|---|---|---|---|");
    let row = |name: &str, run: &offline::Run| {
        println!(
            "| {name} | {:.2} s | {:.0} | {:.1} MiB |",
            run.wall.as_secs_f64(),
            args.manifests as f64 / run.wall.as_secs_f64(),
            mib(run.peak_rss_kib)
        );
    };
    row("goreal-operator audit", &audit);
    if let Some(kube_score) = &kube_score {
        row("kube-score score", kube_score);
        println!(
            "\naudit throughput {:.1}x kube-score's, at {:.2}x its memory",
            kube_score.wall.as_secs_f64() / audit.wall.as_secs_f64(),
            audit.peak_rss_kib as f64 / kube_score.peak_rss_kib.max(1) as f64
        );
    } else {
        println!("\n(kube-score not given: pass --kube-score or run hack/bench/scale.sh)");
    }

    println!("\n## Counts\n");
    let created_by_floor = floor_write_count as u64;
    verdicts.expect(true, format!("all {n} policies converged"));
    verdicts.expect(
        quiet.writes().total() == 0,
        format!(
            "no writes in the quiet period (saw {})",
            quiet.writes().total()
        ),
    );
    verdicts.expect(
        foreign_writes.total() == 0,
        format!(
            "no operator write caused by foreign objects (saw {})",
            foreign_writes.total()
        ),
    );
    verdicts.expect(
        churn.missing == 0 && churn.latencies.len() == churn.changed,
        format!(
            "every churned Deployment hardened again ({} of {})",
            churn.latencies.len(),
            churn.changed
        ),
    );
    verdicts.expect(
        floor_requests.writes().total() == created_by_floor,
        format!(
            "the floor sent its {created_by_floor} writes (API server counted {})",
            floor_requests.writes().total()
        ),
    );
    verdicts.expect(
        audit.exit_code <= 1,
        format!("audit read the {} manifests", args.manifests),
    );
    if let Some(kube_score) = &kube_score {
        verdicts.expect(
            kube_score.exit_code <= 1,
            format!("kube-score read the {} manifests", args.manifests),
        );
    }
    if !verdicts.0.is_empty() {
        eprintln!(
            "scale run failed: {}; operator log in {}",
            verdicts.0.join("; "),
            work.display()
        );
        std::process::exit(1);
    }
    let _ = std::fs::remove_dir_all(&work);
}
