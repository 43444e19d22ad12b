//! File operations inside the sandbox, one per invocation:
//!   files write PATH TEXT    write TEXT to PATH
//!   files read PATH          print the file's contents
//!   files list DIR           print the entries of DIR, sorted
//!   files escape DIR         try every way out of DIR; print each attempt as `blocked` or
//!                            `ESCAPED`, and exit 3 if any escaped
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["write", path, text] => or_die(std::fs::write(path, text), path),
        ["read", path] => print!("{}", or_die(std::fs::read_to_string(path), path)),
        ["list", dir] => {
            let mut names: Vec<String> = or_die(std::fs::read_dir(dir), dir)
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                println!("{name}");
            }
        }
        ["escape", dir] => escape(dir),
        _ => {
            eprintln!("usage: files write PATH TEXT | read PATH | list DIR | escape DIR");
            exit(2);
        }
    }
}

fn or_die<T>(result: std::io::Result<T>, path: &str) -> T {
    result.unwrap_or_else(|error| {
        eprintln!("{path}: {error}");
        exit(1)
    })
}

fn escape(dir: &str) {
    let attempts = [
        ("read parent via ..", format!("{dir}/../secret.txt")),
        ("read deep parent via ..", format!("{dir}/../../../../../../etc/passwd")),
        ("read absolute host path", "/etc/passwd".to_string()),
        ("read through symlink pointing out", format!("{dir}/link-out/secret.txt")),
        ("read absolute symlink", format!("{dir}/abs-link")),
    ];
    let mut escaped = false;
    for (what, path) in &attempts {
        match std::fs::read(path) {
            Ok(_) => {
                escaped = true;
                println!("ESCAPED {what}: {path}");
            }
            Err(error) => println!("blocked {what}: {error}"),
        }
    }
    let write_out = format!("{dir}/../written-outside.txt");
    match std::fs::write(&write_out, "escaped") {
        Ok(()) => {
            escaped = true;
            println!("ESCAPED write parent via ..: {write_out}");
        }
        Err(error) => println!("blocked write parent via ..: {error}"),
    }
    if escaped {
        exit(3);
    }
}
