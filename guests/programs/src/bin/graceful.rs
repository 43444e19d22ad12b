//! Runs until its stdin closes (wasmgate's stop signal), then says so and exits 0.
use std::io::Read;

fn main() {
    println!("running; waiting for the stop signal");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    println!("stop signal received; exiting cleanly");
}
