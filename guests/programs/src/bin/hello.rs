//! Prints a greeting and exits 0: the smallest task.
fn main() {
    println!("Hello from wasmgate!");
}
