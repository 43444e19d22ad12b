//! A service with a health check, in one program:
//!   health serve [FILE]   create FILE (when given), say so, and run until stopped (stdin closes)
//!   health check FILE     exit 0 when FILE exists, else say so on stderr and exit 1
//!   health hang           never answer (a check that times out)
use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["serve", rest @ ..] => {
            if let Some(file) = rest.first() {
                if let Err(error) = std::fs::write(file, "ok") {
                    eprintln!("cannot create {file}: {error}");
                    std::process::exit(1);
                }
            }
            println!("serving");
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            println!("stopped");
        }
        ["check", file] => {
            if std::path::Path::new(file).exists() {
                println!("healthy");
            } else {
                eprintln!("unhealthy: {file} is missing");
                std::process::exit(1);
            }
        }
        ["hang"] => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        _ => {
            eprintln!("usage: health serve [FILE] | check FILE | hang");
            std::process::exit(2);
        }
    }
}
