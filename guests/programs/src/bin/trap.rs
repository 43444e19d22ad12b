//! Traps: `trap unreachable` executes the `unreachable` instruction; `trap panic` panics.
fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("panic") => panic!("the guest panicked on purpose"),
        _ => unreachable_instruction(),
    }
}

#[inline(never)]
fn unreachable_instruction() {
    #[cfg(target_family = "wasm")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_family = "wasm"))]
    std::process::abort();
}
