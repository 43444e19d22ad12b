//! Allocates memory without end, 1 MiB at a time, touching every page, and reports progress.
fn main() {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 1 << 20]);
        if held.len() % 16 == 0 {
            println!("holding {} MiB", held.len());
        }
    }
}
