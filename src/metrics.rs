//! The operator's Prometheus metrics, in a registry of its own, all prefixed `goreal_`. Labels
//! come from small fixed sets (error categories, kinds) or name a policy, never a value.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the operator exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles started.
    pub reconciles: IntCounter,
    /// Failed reconciles by error category.
    pub reconcile_errors: IntCounterVec,
    /// Reconcile duration.
    pub reconcile_duration: Histogram,
    /// Compliance score per policy.
    pub compliance_score: IntGaugeVec,
    /// Consecutive failed reconciles per policy, for the reconcile-errors alert.
    pub reconcile_failures: IntGaugeVec,
    /// Objects written by kind.
    pub applied_objects: IntCounterVec,
    /// Field conflicts reported by kind.
    pub conflicts: IntCounterVec,
    /// Secret rotations per Secret and cause.
    pub secret_rotations: IntCounterVec,
    /// Next scheduled rotation per Secret, as a Unix time, for the rotation-overdue alert.
    pub secret_next_rotation: IntGaugeVec,
    /// 1 while this replica holds the leader Lease (always, without leader election).
    pub leader: IntGauge,
    /// Per policy and check: 1 when the check fails, 0 when it passes (absent when skipped).
    pub check_failed: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("goreal".into()), None)?;
        let reconciles = IntCounter::new(
            "reconcile_total",
            "Reconciles of GoREALSecurityPolicy resources",
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "reconcile_errors_total",
                "Failed reconciles by error category",
            ),
            &["category"],
        )?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new("reconcile_duration_seconds", "Duration of one reconcile").buckets(
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
        )?;
        let compliance_score = IntGaugeVec::new(
            Opts::new(
                "policy_compliance_score",
                "Compliance score (0-100) per policy",
            ),
            &["namespace", "policy"],
        )?;
        let reconcile_failures = IntGaugeVec::new(
            Opts::new(
                "policy_reconcile_failures",
                "Consecutive failed reconciles per policy (0 once one succeeds)",
            ),
            &["namespace", "policy"],
        )?;
        let applied_objects = IntCounterVec::new(
            Opts::new(
                "applied_objects_total",
                "Objects written with server-side apply",
            ),
            &["kind"],
        )?;
        let conflicts = IntCounterVec::new(
            Opts::new(
                "field_conflicts_total",
                "Field conflicts with other managers reported",
            ),
            &["kind"],
        )?;
        let secret_rotations = IntCounterVec::new(
            Opts::new(
                "secret_rotations_total",
                "Secret rotations performed, by cause (scheduled or requested)",
            ),
            &["namespace", "policy", "secret", "cause"],
        )?;
        let secret_next_rotation = IntGaugeVec::new(
            Opts::new(
                "secret_next_rotation_timestamp_seconds",
                "Unix time at which each managed Secret's next scheduled rotation falls due",
            ),
            &["namespace", "policy", "secret"],
        )?;
        let check_failed = IntGaugeVec::new(
            Opts::new(
                "policy_check_failed",
                "1 while a check of a policy's compliance report fails, 0 while it passes",
            ),
            &["namespace", "policy", "check"],
        )?;
        registry.register(Box::new(check_failed.clone()))?;
        let leader = IntGauge::new(
            "leader",
            "1 while this replica is the leader and reconciles, 0 while it follows",
        )?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(secret_rotations.clone()))?;
        registry.register(Box::new(secret_next_rotation.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(compliance_score.clone()))?;
        registry.register(Box::new(reconcile_failures.clone()))?;
        registry.register(Box::new(applied_objects.clone()))?;
        registry.register(Box::new(conflicts.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            compliance_score,
            reconcile_failures,
            applied_objects,
            conflicts,
            secret_rotations,
            secret_next_rotation,
            leader,
            check_failed,
        })
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Reconciles counted so far.
    pub fn reconcile_count(&self) -> u64 {
        self.reconciles.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_uses_the_goreal_prefix() {
        let metrics = Metrics::new().expect("metrics");
        metrics.reconciles.inc();
        metrics
            .reconcile_errors
            .with_label_values(&["server"])
            .inc();
        metrics
            .compliance_score
            .with_label_values(&["goreal", "baseline"])
            .set(88);
        metrics.reconcile_duration.observe(0.01);
        let text = metrics.encode();
        for name in [
            "goreal_reconcile_total 1",
            "goreal_reconcile_errors_total{category=\"server\"} 1",
            "goreal_policy_compliance_score{namespace=\"goreal\",policy=\"baseline\"} 88",
            "goreal_reconcile_duration_seconds_bucket",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
