//! Download progress on the terminal: one line per blob, redrawn at most ten times a second,
//! with bytes, total and rate. Small blobs are not shown.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmgate::capacity::wasm::describe_bytes;
use wasmgate::image::PullProgress;

/// Blobs smaller than this download without a progress line.
const SHOW_FROM_BYTES: u64 = 1 << 20;
const REDRAW_EVERY: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct PullMeter {
    blobs: Mutex<HashMap<String, (Instant, Instant)>>,
}

impl PullMeter {
    pub fn into_sink(self) -> impl Fn(&PullProgress) + Send + Sync + 'static {
        let meter = Arc::new(self);
        move |progress: &PullProgress| meter.show(progress)
    }

    fn show(&self, progress: &PullProgress) {
        if progress.total < SHOW_FROM_BYTES {
            return;
        }
        let now = Instant::now();
        let mut blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        let (started, drawn) = blobs
            .entry(progress.digest.clone())
            .or_insert((now, now - REDRAW_EVERY));
        let done = progress.received >= progress.total;
        if !done && now.duration_since(*drawn) < REDRAW_EVERY {
            return;
        }
        *drawn = now;
        let seconds = now.duration_since(*started).as_secs_f64().max(0.001);
        let rate = (progress.received as f64 / seconds) as u64;
        let short: String = progress
            .digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rpulling {} {short}: {} / {} ({}/s){}",
            progress.reference,
            describe_bytes(progress.received),
            describe_bytes(progress.total),
            describe_bytes(rate),
            if done { "\n" } else { "" }
        );
        let _ = err.flush();
    }
}
