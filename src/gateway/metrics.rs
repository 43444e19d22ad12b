//! Per-service HTTP accounting: request counts by status class, and histograms of duration,
//! instantiate time, CPU time and peak memory per request. Lock-free on the request path
//! (atomics); rendered as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Upper bounds (seconds) of the time histograms.
const SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];
/// Upper bounds (bytes) of the memory histogram.
const BYTES: [f64; 8] = [
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
];

/// A Prometheus histogram with fixed buckets.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in millionths of the unit.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(index) = self.bounds.iter().position(|bound| value <= *bound) {
            self.counts[index].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (upper bound, cumulative count) per bucket, as `render` writes them.
    fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut cumulative = 0;
        self.bounds
            .iter()
            .zip(&self.counts)
            .map(|(bound, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, cumulative) in self.cumulative() {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Picks one histogram of a service's figures.
type HistogramOf = fn(&ServiceMetrics) -> &Histogram;

/// One service's figures.
pub struct ServiceMetrics {
    /// By status class: 1xx..5xx (index 0..4).
    pub responses: [AtomicU64; 5],
    pub duration: Histogram,
    pub instantiate: Histogram,
    pub cpu: Histogram,
    pub memory: Histogram,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self {
            responses: Default::default(),
            duration: Histogram::new(&SECONDS),
            instantiate: Histogram::new(&SECONDS),
            cpu: Histogram::new(&SECONDS),
            memory: Histogram::new(&BYTES),
        }
    }
}

impl ServiceMetrics {
    pub fn count_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// Every service's figures, by `cluster/service`.
#[derive(Default)]
pub struct HttpMetrics {
    services: Mutex<BTreeMap<String, Arc<ServiceMetrics>>>,
    /// Requests that matched no route.
    pub unrouted: AtomicU64,
}

impl HttpMetrics {
    /// The figures of `service` (made on first use).
    pub fn service(&self, service: &str) -> Arc<ServiceMetrics> {
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(service.to_string())
            .or_default()
            .clone()
    }
}

impl crate::api::MetricsSource for HttpMetrics {
    fn http_figures(&self, service: &str) -> Option<crate::api::HttpFigures> {
        let services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let metrics = services.get(service)?;
        Some(crate::api::HttpFigures {
            responses: std::array::from_fn(|i| metrics.responses[i].load(Ordering::Relaxed)),
            duration_buckets: metrics.duration.cumulative(),
            duration_sum_seconds: metrics.duration.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            requests: metrics.duration.count.load(Ordering::Relaxed),
        })
    }

    fn render(&self, out: &mut String) {
        let services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP wasmgate_http_responses_total HTTP responses of the gateway by service and status class.\n# TYPE wasmgate_http_responses_total counter\n");
        for (service, metrics) in services.iter() {
            for (index, count) in metrics.responses.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "wasmgate_http_responses_total{{service=\"{service}\",code=\"{}xx\"}} {}",
                    index + 1,
                    count.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "wasmgate_http_responses_total{{service=\"\",code=\"unrouted\"}} {}",
            self.unrouted.load(Ordering::Relaxed)
        );
        let histograms: [(&str, &str, HistogramOf); 4] = [
            (
                "wasmgate_http_request_duration_seconds",
                "From a request's arrival to its response's headers.",
                |m| &m.duration,
            ),
            (
                "wasmgate_http_instantiate_seconds",
                "Time to instantiate a request's fresh instance.",
                |m| &m.instantiate,
            ),
            (
                "wasmgate_http_request_cpu_seconds",
                "CPU time a request's instance used.",
                |m| &m.cpu,
            ),
            (
                "wasmgate_http_request_memory_peak_bytes",
                "The most memory a request's instance held.",
                |m| &m.memory,
            ),
        ];
        for (name, help, pick) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (service, metrics) in services.iter() {
                pick(metrics).render(out, name, &format!("service=\"{service}\""));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MetricsSource;

    #[test]
    fn figures_are_the_counters_render_writes() {
        let metrics = HttpMetrics::default();
        assert_eq!(metrics.http_figures("default/web"), None);
        let web = metrics.service("default/web");
        for (status, seconds) in [(200, 0.0002), (200, 0.003), (503, 2.0)] {
            web.count_status(status);
            web.duration.observe(seconds);
        }
        let figures = metrics.http_figures("default/web").unwrap();
        assert_eq!(figures.responses, [0, 2, 0, 0, 1]);
        assert_eq!(figures.requests, 3);
        assert!((figures.duration_sum_seconds - 2.0032).abs() < 1e-6);
        let at = |bound: f64| {
            figures
                .duration_buckets
                .iter()
                .find(|(le, _)| *le == bound)
                .map(|(_, n)| *n)
        };
        assert_eq!(
            (at(0.00025), at(0.005), at(1.0), at(5.0)),
            (Some(1), Some(2), Some(2), Some(3))
        );
        let mut text = String::new();
        metrics.render(&mut text);
        assert!(text.contains(
            "wasmgate_http_request_duration_seconds_bucket{service=\"default/web\",le=\"0.005\"} 2"
        ));
    }
}
