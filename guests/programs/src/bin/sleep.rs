//! Sleeps for SECONDS (default: forever), ignoring any stop signal, then exits 0.
fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(f64::MAX);
    println!("sleeping");
    std::thread::sleep(std::time::Duration::from_secs_f64(seconds.min(1e9)));
    println!("woke up");
}
