//! Tries the network through `wasi:sockets`: `connect ADDR...` opens a TCP connection to each
//! address and says `connected ADDR` or `refused ADDR: why`; `listen ADDR` tries to serve on
//! one. The sandbox decides which succeed.
use std::net::{TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((verb, addresses)) = args.split_first() else {
        eprintln!("usage: connect|listen ADDR...");
        std::process::exit(2);
    };
    for address in addresses {
        let result = match verb.as_str() {
            "listen" => TcpListener::bind(address.as_str()).map(|_| ()),
            _ => TcpStream::connect(address.as_str()).map(|_| ()),
        };
        match result {
            Ok(()) => println!("{verb}ed {address}"),
            Err(error) => println!("refused {address}: {error}"),
        }
    }
}
