//! Prints the realtime clock in epoch microseconds as the first thing it does, then exits 0:
//! the cold-start probe (`benches/runtask.sh` compares it with the task's `createdAt`).
fn main() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    println!("{now}");
}
