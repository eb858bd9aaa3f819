//! Leader election on a coordination.k8s.io Lease, so that several replicas can run: every
//! replica watches and keeps its caches warm, only the holder of the Lease reconciles (and so
//! writes, status and events included). A replica that takes over reconciles every policy once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::Stream;
use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};

/// Lease settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElection {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a holder keeps the Lease without renewing it: the longest a crashed leader
    /// holds up a takeover.
    pub duration: Duration,
    /// How long before expiry the holder renews; shorter than `duration`.
    pub grace: Duration,
}

/// Settings that the Lease cannot use.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum SettingsError {
    /// Durations are whole seconds, at least one.
    #[error("the lease duration and renew grace must be whole seconds, at least 1 s")]
    NotWholeSeconds,
    /// The holder must renew before the Lease expires.
    #[error("the renew grace ({grace:?}) must be shorter than the lease duration ({duration:?})")]
    GraceTooLong {
        /// Grace.
        grace: Duration,
        /// Duration.
        duration: Duration,
    },
    /// Identities name the holder in the Lease.
    #[error("the leader election identity must not be empty")]
    NoIdentity,
}

impl LeaderElection {
    /// The Lease parameters, checked (the lease crate panics on bad ones).
    fn params(&self) -> Result<LeaseParams, SettingsError> {
        let seconds = |d: Duration| {
            (d.subsec_nanos() == 0 && d.as_secs() >= 1)
                .then_some(d.as_secs())
                .ok_or(SettingsError::NotWholeSeconds)
        };
        let (duration, grace) = (seconds(self.duration)?, seconds(self.grace)?);
        if grace >= duration {
            return Err(SettingsError::GraceTooLong {
                grace: self.grace,
                duration: self.duration,
            });
        }
        if self.identity.is_empty() {
            return Err(SettingsError::NoIdentity);
        }
        Ok(LeaseParams::new(self.identity.clone(), duration, grace)
            .with_field_manager(format!("goreal-operator-lease-{}", self.identity)))
    }

    /// Checks the settings without contacting the cluster.
    pub fn check(&self) -> Result<(), SettingsError> {
        self.params().map(|_| ())
    }
}

/// Leadership as the controller sees it: a flag read by every reconcile, and a stream that yields
/// once each time this replica becomes leader (to reconcile everything then).
pub struct Leadership {
    /// Whether this replica may write now.
    pub is_leader: Arc<AtomicBool>,
    /// Ticks on each takeover.
    pub takeovers: std::pin::Pin<Box<dyn Stream<Item = ()> + Send>>,
    task: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Leadership {
    /// Always the leader: a single replica without election.
    pub fn sole() -> Leadership {
        Leadership {
            is_leader: Arc::new(AtomicBool::new(true)),
            takeovers: Box::pin(futures::stream::empty()),
            task: None,
            stop: None,
        }
    }

    /// Campaigns for the Lease in the background; until it is held, this replica is a follower.
    /// Errors of the Lease API are retried by the lease manager with backoff. `on_change` hears
    /// every change of leadership (for the leader metric).
    pub fn campaign(
        client: Client,
        settings: &LeaderElection,
        on_change: impl Fn(bool) + Send + 'static,
    ) -> Result<Leadership, SettingsError> {
        let params = settings.params()?;
        let is_leader = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        let flag = is_leader.clone();
        let (lease_name, namespace) = (settings.lease_name.clone(), settings.namespace.clone());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let manager = loop {
                let built = LeaseManagerBuilder::new(client.clone(), &lease_name)
                    .with_namespace(&namespace)
                    .with_parameters(params.clone())
                    .build()
                    .await;
                match built {
                    Ok(manager) => break manager,
                    Err(error) => {
                        tracing::warn!(%error, "cannot reach the leader election Lease; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                            _ = &mut stopped => return,
                        }
                    }
                }
            };
            let (mut changes, lease_task) = manager.watch().await;
            loop {
                let leader = *changes.borrow_and_update();
                if flag.swap(leader, Ordering::SeqCst) != leader {
                    tracing::info!(leader, "leadership changed");
                    on_change(leader);
                    if leader && sender.unbounded_send(()).is_err() {
                        break;
                    }
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break },
                    _ = &mut stopped => break,
                }
            }
            flag.store(false, Ordering::SeqCst);
            on_change(false);
            // Closing the channel makes the lease manager release a held Lease.
            drop(changes);
            let _ = lease_task.await;
        });
        Ok(Leadership {
            is_leader,
            takeovers: Box::pin(receiver),
            task: Some(task),
            stop: Some(stop),
        })
    }

    /// Stops campaigning; dropping the lease manager's channel releases a held Lease so that
    /// another replica takes over at once instead of after the lease duration.
    pub async fn resign(&mut self) {
        self.is_leader.store(false, Ordering::SeqCst);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            tracing::warn!(
                "the Lease was not released in time; another replica waits for it to expire"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(duration: u64, grace: u64, identity: &str) -> LeaderElection {
        LeaderElection {
            lease_name: "goreal-operator".into(),
            namespace: "goreal-system".into(),
            identity: identity.into(),
            duration: Duration::from_secs(duration),
            grace: Duration::from_secs(grace),
        }
    }

    #[test]
    fn settings_the_lease_cannot_use_are_refused_not_panicked_on() {
        assert_eq!(settings(15, 5, "a").check(), Ok(()));
        assert!(matches!(
            settings(5, 5, "a").check(),
            Err(SettingsError::GraceTooLong { .. })
        ));
        assert_eq!(
            settings(0, 0, "a").check(),
            Err(SettingsError::NotWholeSeconds)
        );
        assert_eq!(settings(15, 5, "").check(), Err(SettingsError::NoIdentity));
        let fractional = LeaderElection {
            duration: Duration::from_millis(1500),
            ..settings(15, 5, "a")
        };
        assert_eq!(fractional.check(), Err(SettingsError::NotWholeSeconds));
    }
}
