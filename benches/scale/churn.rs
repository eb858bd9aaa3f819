//! Churn: a share of the Deployments is replaced every second with the user's unhardened
//! template (as `kubectl replace` or a two-way-merging deploy tool does), and the time from the
//! change to the first version the watch shows hardened again is recorded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, future};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::world::{self, CHURN_ANNOTATION, DEPLOYMENTS, SCALE_LABEL};

pub struct Churn {
    /// Deployments replaced.
    pub changed: usize,
    /// Change to re-hardened, per change seen hardened again.
    pub latencies: Vec<Duration>,
    /// Changes never seen hardened again.
    pub missing: usize,
    /// How long the changes took to send (the rate actually achieved is `changed / sending`).
    pub sending: Duration,
    /// The harness's own reads and replaces, retries after a conflict included.
    pub gets: u64,
    pub puts: u64,
}

/// Changes awaiting their hardened version: workload key -> (churn value, sent at).
type Pending = Arc<Mutex<HashMap<String, (u64, Instant)>>>;

fn hardened(deployment: &Deployment) -> bool {
    let Some(pod) = deployment.spec.template.spec.as_ref() else {
        return false;
    };
    pod.security_context
        .as_ref()
        .and_then(|c| c.run_as_non_root)
        .unwrap_or(false)
        && pod.containers.iter().all(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem)
                .unwrap_or(false)
        })
}

fn churn_value(deployment: &Deployment) -> Option<u64> {
    deployment
        .spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CHURN_ANNOTATION)?
        .parse()
        .ok()
}

/// Small deterministic generator, so every run changes the same workloads.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// Replaces `per_second` Deployments of `namespaces` every second for `seconds`, then waits up
/// to `drain` for the last ones to be hardened again.
pub async fn run(
    client: &kube::Client,
    namespaces: &[String],
    per_second: usize,
    seconds: u64,
    drain: Duration,
) -> Churn {
    let pending: Pending = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let all: Api<Deployment> = Api::all(client.clone());
    let config = watcher::Config::default().labels(&format!("{SCALE_LABEL}=true"));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = {
        let (pending, latencies) = (pending.clone(), latencies.clone());
        let mut ready_tx = Some(ready_tx);
        tokio::spawn(
            watcher(all, config)
                .default_backoff()
                .for_each(move |event| {
                    if let Ok(watcher::Event::InitDone) = &event {
                        ready_tx.take().map(|tx| tx.send(()));
                    }
                    if let Ok(watcher::Event::Apply(deployment)) = event {
                        let seen = Instant::now();
                        let key = format!(
                            "{}/{}",
                            deployment.metadata.namespace.as_deref().unwrap_or_default(),
                            deployment.metadata.name.as_deref().unwrap_or_default()
                        );
                        let mut pending = pending.lock().expect("pending");
                        if let Some((value, sent)) = pending.get(&key).copied()
                            && churn_value(&deployment) == Some(value)
                            && hardened(&deployment)
                        {
                            pending.remove(&key);
                            latencies.lock().expect("latencies").push(seen - sent);
                        }
                    }
                    future::ready(())
                }),
        )
    };
    ready_rx
        .await
        .expect("the churn watch lists the Deployments");

    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut changed = 0usize;
    let (gets, puts) = (AtomicU64::new(0), AtomicU64::new(0));
    let total = namespaces.len() * DEPLOYMENTS.len();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // A slow second delays the next instead of bursting to catch up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    for _ in 0..seconds {
        tick.tick().await;
        let mut batch = Vec::new();
        // Every Deployment still awaiting its hardening is skipped; stop when none is left.
        while batch.len() < per_second && pending.lock().expect("pending").len() < total {
            let namespace = &namespaces[random.below(namespaces.len())];
            let name = DEPLOYMENTS[random.below(DEPLOYMENTS.len())];
            let key = format!("{namespace}/{name}");
            let mut pending = pending.lock().expect("pending");
            if pending.contains_key(&key) {
                continue;
            }
            changed += 1;
            // Registered before the write, so a fast re-hardening cannot be missed.
            pending.insert(key, (changed as u64, Instant::now()));
            batch.push((namespace.clone(), name, changed as u64));
        }
        future::join_all(batch.into_iter().map(|(namespace, name, value)| {
            let pending = pending.clone();
            let (gets, puts) = (&gets, &puts);
            async move {
                let api: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
                let key = format!("{namespace}/{name}");
                loop {
                    gets.fetch_add(1, Ordering::Relaxed);
                    let mut deployment = api.get(name).await.expect("get a churned Deployment");
                    let template = world::template(name, Some(value));
                    deployment.spec.template = serde_json::from_value(template).expect("template");
                    // The clock starts at the write.
                    pending
                        .lock()
                        .expect("pending")
                        .insert(key.clone(), (value, Instant::now()));
                    puts.fetch_add(1, Ordering::Relaxed);
                    match api.replace(name, &PostParams::default(), &deployment).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(status)) if status.code == 409 => continue,
                        Err(error) => panic!("replacing {key}: {error}"),
                    }
                }
            }
        }))
        .await;
    }
    // The last second's batch has its second too.
    tick.tick().await;
    let sending = started.elapsed();

    let deadline = Instant::now() + drain;
    while Instant::now() < deadline && !pending.lock().expect("pending").is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch.abort();
    let missing = pending.lock().expect("pending").len();
    let latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    Churn {
        changed,
        latencies,
        missing,
        sending,
        gets: gets.into_inner(),
        puts: puts.into_inner(),
    }
}
