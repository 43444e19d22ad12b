//! Prints its argv, its environment (sorted) and its working directory, one per line.
fn main() {
    for (index, arg) in std::env::args().enumerate() {
        println!("arg[{index}]={arg}");
    }
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (name, value) in vars {
        println!("env {name}={value}");
    }
    match std::env::current_dir() {
        Ok(dir) => println!("cwd={}", dir.display()),
        Err(error) => println!("cwd error: {error}"),
    }
}
