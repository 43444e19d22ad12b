//! A plain HTTP/1.1 client over std's TcpStream, for gateway tests: real requests on the wire,
//! one connection each.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response: status, headers (lowercase names), body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` to `address` with `Host: host` and `body` (with a Content-Length, or
/// chunked when `chunked`), and reads the whole response.
pub fn request(
    address: &str,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    chunked: bool,
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        stream.write_all(head.as_bytes())?;
        // The server may answer (413) and close before reading it all: stop writing then.
        let mut send = || -> std::io::Result<()> {
            for piece in body.chunks(8192) {
                stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                stream.write_all(piece)?;
                stream.write_all(b"\r\n")?;
            }
            stream.write_all(b"0\r\n\r\n")
        };
        let _ = send();
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes())?;
        // The server may answer (413) before reading it all.
        let _ = stream.write_all(body);
    }
    let mut raw = Vec::new();
    // A connection cut mid-body still yields what arrived.
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

pub fn get(address: &str, host: &str, path: &str) -> Reply {
    request(address, "GET", host, path, b"", false).expect("the gateway answers")
}

/// GET `path` until it answers 200 (the gateway takes a new route from the store a moment
/// after its task runs); panics with the last answer after 60 s.
pub fn get_when_served(address: &str, host: &str, path: &str) -> Reply {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let reply = get(address, host, path);
        if reply.status == 200 {
            return reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never answered: {reply:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn parse(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The data of a chunked body (what arrived, if it was cut).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return body;
        }
        let start = end + 2;
        let stop = (start + size).min(rest.len());
        body.extend_from_slice(&rest[start..stop]);
        if stop < start + size {
            return body;
        }
        rest = &rest[(stop + 2).min(rest.len())..];
    }
}
