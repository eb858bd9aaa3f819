//! Offline throughput: `goreal-operator audit` and kube-score over the same manifests, each
//! measured as a separate process (wall time and peak resident memory).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::measure;
use crate::world;

/// Documents per file: the manifests are written as multi-document files, as Helm prints them.
const PER_FILE: usize = 100;

pub struct Run {
    pub wall: Duration,
    pub peak_rss_kib: u64,
    pub exit_code: i32,
}

/// Writes `count` workload manifests (the benchmark's ten shapes, in as many namespaces as
/// needed) into `dir`; returns the files.
pub fn write_manifests(dir: &Path, count: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("manifest dir");
    let manifests: Vec<String> = (0..)
        .flat_map(|namespace| world::workloads(&format!("shop-{namespace}")))
        .take(count)
        .map(|manifest| serde_saphyr::to_string(&manifest).expect("manifest YAML"))
        .collect();
    manifests
        .chunks(PER_FILE)
        .enumerate()
        .map(|(i, documents)| {
            let file = dir.join(format!("manifests-{i:04}.yaml"));
            std::fs::write(&file, documents.join("---\n")).expect("writing manifests");
            file
        })
        .collect()
}

/// `goreal-operator audit -f DIR -o json` with the built-in policy.
pub fn audit(dir: &Path, errors: &Path) -> Run {
    let mut args: Vec<OsString> = ["audit", "-o", "json", "-f"].map(OsString::from).into();
    args.push(dir.into());
    run(
        Path::new(env!("CARGO_BIN_EXE_goreal-operator")),
        &args,
        errors,
    )
}

/// `kube-score score FILE... --output-format json`.
pub fn kube_score(binary: &Path, files: &[PathBuf], errors: &Path) -> Run {
    let mut args: Vec<OsString> = ["score", "--output-format", "json"]
        .map(OsString::from)
        .into();
    args.extend(files.iter().map(OsString::from));
    run(binary, &args, errors)
}

fn run(program: &Path, args: &[OsString], errors: &Path) -> Run {
    let (wall, peak_rss_kib, exit_code) = measure(program, args, errors);
    Run {
        wall,
        peak_rss_kib,
        exit_code,
    }
}
