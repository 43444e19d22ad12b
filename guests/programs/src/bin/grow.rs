//! Grows its memory slowly: 1 MiB every 100 ms (touching every page), up to LIMIT MiB
//! (default 32), then holds it until stopped (stdin closes). For tests of memory reporting.
use std::io::Read;

fn main() {
    let limit: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let mut held: Vec<Vec<u8>> = Vec::new();
    while held.len() < limit {
        held.push(vec![1u8; 1 << 20]);
        println!("holding {} MiB", held.len());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    println!("released {} MiB", held.len());
}
