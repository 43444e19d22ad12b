//! Exits with the code given as its first argument (default 0).
fn main() {
    let code: i32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    println!("exiting with {code}");
    // A component reports the full code through wasi:cli/exit.exit-with-code; std's exit would
    // only say success or failure.
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    wasip2::cli::exit::exit_with_code(code as u8);
    std::process::exit(code);
}
