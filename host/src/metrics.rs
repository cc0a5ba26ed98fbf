//! Prometheus metrics: logins by method and outcome, login latency, hash queue depth, logins in
//! progress, failures held to the time floor, password changes, crossings of the plugin boundary. Rendered by hand in the text
//! exposition format: a few counters don't need a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
pub struct Metrics {
    logins: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    password_changes: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn login(&self, method: &'static str, outcome: &'static str, seconds: f64) {
        if let Ok(mut m) = self.logins.lock() {
            *m.entry((method, outcome)).or_default() += 1;
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn password_change(&self, outcome: &'static str) {
        if let Ok(mut m) = self.password_changes.lock() {
            *m.entry(outcome).or_default() += 1;
        }
    }

    /// The text exposition format.
    pub fn render(
        &self,
        hash_queue_depth: usize,
        hashes_total: u64,
        logins_in_progress: usize,
        failures_held: u64,
        crossings: &Crossings,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP prp_logins_total Login attempts by method and outcome."
        );
        let _ = writeln!(out, "# TYPE prp_logins_total counter");
        if let Ok(m) = self.logins.lock() {
            for ((method, outcome), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "prp_logins_total{{method=\"{method}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP prp_login_duration_seconds Time to answer a login."
        );
        let _ = writeln!(out, "# TYPE prp_login_duration_seconds histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "prp_login_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "prp_login_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "prp_login_duration_seconds_sum {sum}");
        let _ = writeln!(out, "prp_login_duration_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP prp_hash_queue_depth Password hashes waiting for a worker."
        );
        let _ = writeln!(out, "# TYPE prp_hash_queue_depth gauge");
        let _ = writeln!(out, "prp_hash_queue_depth {hash_queue_depth}");
        let _ = writeln!(
            out,
            "# HELP prp_argon2_hashes_total Argon2 computations, real and dummy."
        );
        let _ = writeln!(out, "# TYPE prp_argon2_hashes_total counter");
        let _ = writeln!(out, "prp_argon2_hashes_total {hashes_total}");
        let _ = writeln!(
            out,
            "# HELP prp_logins_in_progress Logins admitted and not yet answered."
        );
        let _ = writeln!(out, "# TYPE prp_logins_in_progress gauge");
        let _ = writeln!(out, "prp_logins_in_progress {logins_in_progress}");
        let _ = writeln!(
            out,
            "# HELP prp_failures_held_total Failed logins, flow steps and question challenges held to the failure time floor before their answer."
        );
        let _ = writeln!(out, "# TYPE prp_failures_held_total counter");
        let _ = writeln!(out, "prp_failures_held_total {failures_held}");
        let _ = writeln!(
            out,
            "# HELP prp_password_changes_total Password changes by outcome."
        );
        let _ = writeln!(out, "# TYPE prp_password_changes_total counter");
        if let Ok(m) = self.password_changes.lock() {
            for (outcome, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "prp_password_changes_total{{outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        crossings.render(&mut out);
        out
    }
}

/// The host→plugin calls the host counts, by method.
pub const PLUGIN_CALLS: [&str; 5] = ["resolve", "login", "challenge", "verify_password", "policy"];

/// The plugin→host callbacks (`HostServices` methods) the host counts, by name.
pub const HOST_CALLBACKS: [&str; 22] = [
    "parameter",
    "api_key",
    "connection_string",
    "log",
    "now",
    "keyed_digest",
    "verify_hash",
    "persons_by_central_account",
    "person",
    "search_accounts",
    "verify_password",
    "verify_passcode",
    "questions",
    "verify_answers",
    "delete_questions",
    // ABI 1.1 (`call_time_left_ms` is not counted: it reads a clock).
    "setting",
    "setting_path",
    "hash_secret",
    "persons_by_column",
    "person_column",
    "account_login_names",
    "unindexed_login_columns",
];

/// Crossings of the plugin boundary made for logins and question challenges: host→plugin
/// calls by method, plugin→host callbacks by name. Lock-free: every crossing is one atomic add.
#[derive(Default)]
pub struct Crossings {
    calls: [AtomicU64; PLUGIN_CALLS.len()],
    callbacks: [AtomicU64; HOST_CALLBACKS.len()],
}

impl Crossings {
    /// Counts a host→plugin call (a name not in [`PLUGIN_CALLS`] is not counted).
    pub fn call(&self, method: &str) {
        if let Some(i) = PLUGIN_CALLS.iter().position(|m| *m == method) {
            self.calls[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a plugin→host callback (a name not in [`HOST_CALLBACKS`] is not counted).
    pub fn callback(&self, name: &str) {
        if let Some(i) = HOST_CALLBACKS.iter().position(|c| *c == name) {
            self.callbacks[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Host→plugin calls so far, all methods.
    pub fn calls_total(&self) -> u64 {
        self.calls.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Plugin→host callbacks so far, all names.
    pub fn callbacks_total(&self) -> u64 {
        self.callbacks
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The two counters in the text exposition format (every label, zeros included).
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP prp_plugin_calls_total Host-to-plugin calls made for logins and question challenges, by method."
        );
        let _ = writeln!(out, "# TYPE prp_plugin_calls_total counter");
        for (method, n) in PLUGIN_CALLS.iter().zip(&self.calls) {
            let _ = writeln!(
                out,
                "prp_plugin_calls_total{{method=\"{method}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP prp_host_callbacks_total Plugin-to-host callbacks made during those calls, by callback."
        );
        let _ = writeln!(out, "# TYPE prp_host_callbacks_total counter");
        for (callback, n) in HOST_CALLBACKS.iter().zip(&self.callbacks) {
            let _ = writeln!(
                out,
                "prp_host_callbacks_total{{callback=\"{callback}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.login("password", "success", 0.03);
        m.login("password", "failure", 0.2);
        let text = m.render(3, 9, 1, 4, &Crossings::default());
        assert!(
            text.contains("prp_logins_total{method=\"password\",outcome=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("prp_login_duration_seconds_bucket{le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("prp_login_duration_seconds_bucket{le=\"0.25\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("prp_login_duration_seconds_count 2"),
            "{text}"
        );
        assert!(text.contains("prp_hash_queue_depth 3"), "{text}");
        assert!(text.contains("prp_failures_held_total 4"), "{text}");
    }

    #[test]
    fn counts_crossings_by_name() {
        let c = Crossings::default();
        c.call("login");
        c.call("resolve");
        c.call("resolve");
        c.call("no such method");
        c.callback("parameter");
        c.callback("verify_password");
        c.callback("no such callback");
        assert_eq!((c.calls_total(), c.callbacks_total()), (3, 2));
        let text = Metrics::default().render(0, 0, 0, 0, &c);
        assert!(
            text.contains("prp_plugin_calls_total{method=\"resolve\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("prp_plugin_calls_total{method=\"challenge\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("prp_host_callbacks_total{callback=\"verify_password\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE prp_host_callbacks_total counter"),
            "{text}"
        );
    }
}
