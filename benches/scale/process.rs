//! The operator as a separate process (the release binary, as in production), and what the
//! kernel says about a process: resident memory and CPU time.

use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, SysconfVar, sysconf};

/// Resident memory and CPU time of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far, KiB.
    pub peak_rss_kib: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
}

impl Usage {
    pub fn of(pid: u32) -> Usage {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let per_second = sysconf(SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .map_or(100.0, |t| t.max(1) as f64);
        Usage {
            rss_kib: kib("VmRSS:"),
            peak_rss_kib: kib("VmHWM:"),
            cpu_seconds: (ticks(11) + ticks(12)) as f64 / per_second,
        }
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The operator binary running `run` against the control plane of `kubeconfig`.
pub struct OperatorProcess {
    child: Child,
    pub started: Instant,
}

impl OperatorProcess {
    pub fn start(kubeconfig: &Path, log: &Path, concurrency: u16) -> OperatorProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = File::create(log).expect("operator log file");
        // A profiler to run the operator under, e.g. `valgrind --tool=massif`.
        let wrapper = std::env::var("GOREAL_SCALE_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command
                    .args(words)
                    .arg(env!("CARGO_BIN_EXE_goreal-operator"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_goreal-operator")),
        };
        let child = command
            .args(["run", "--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--concurrency", &concurrency.to_string()])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting the operator binary");
        OperatorProcess {
            child,
            started: Instant::now(),
        }
    }

    pub fn usage(&self) -> Usage {
        Usage::of(self.child.id())
    }

    /// Stops it with SIGTERM, as Kubernetes does, and waits for it.
    pub fn stop(mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The hidden first argument under which the benchmark binary runs one command and reports its
/// usage: a process of its own, so that the only child whose usage it reads is that command.
pub const MEASURE: &str = "--measure-command";

/// Runs `program` with `args` to completion, its output discarded and its errors in `stderr`:
/// wall time, peak resident memory (KiB) and exit code. Exit codes above 1 (0 and 1 are the
/// verdicts of both tools) fail the benchmark.
pub fn measure(program: &Path, args: &[OsString], stderr: &Path) -> (Duration, u64, i32) {
    let errors = File::create(stderr).expect("stderr file");
    let output = Command::new(std::env::current_exe().expect("this benchmark's binary"))
        .arg(MEASURE)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(errors)
        .output()
        .expect("starting a measured command");
    let report = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<u64> = report
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [nanos, rss, code] = fields[..] else {
        panic!("no usage report from {}: {report}", program.display());
    };
    if code > 1 {
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        panic!("{} failed with exit code {code}: {text}", program.display());
    }
    (Duration::from_nanos(nanos), rss, code as i32)
}

/// The [`MEASURE`] mode: runs the command given after the flag and prints `nanoseconds
/// peak-rss-kib exit-code` (an exit by signal counts as 255).
pub fn measure_command(mut args: std::env::ArgsOs) -> ! {
    let program = args.next().expect("a command to measure");
    let started = Instant::now();
    let status = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("running the measured command");
    let elapsed = started.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    // ru_maxrss is in KiB on Linux.
    println!(
        "{} {} {}",
        elapsed.as_nanos(),
        usage.max_rss(),
        status.code().unwrap_or(255)
    );
    std::process::exit(0);
}
