//! Burns CPU. `spin` loops forever without calling the host; `spin SECONDS` loops until
//! SECONDS of wall time have passed, then prints how many rounds it ran and exits 0.
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let seconds: Option<f64> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    match seconds {
        None => {
            let mut x: u64 = 0;
            loop {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        Some(seconds) => {
            let start = Instant::now();
            let mut rounds: u64 = 0;
            while start.elapsed().as_secs_f64() < seconds {
                for _ in 0..10_000 {
                    rounds = black_box(rounds.wrapping_add(1));
                }
            }
            println!("rounds={rounds}");
        }
    }
}
