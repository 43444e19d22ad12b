//! A `wasi:http/proxy` component. `/` (and any path not below) answers a greeting with the
//! path; paths whose last segment is one of these are for the gateway's tests (so they work
//! under any route prefix: `/hello/echo`):
//!   /echo             the request body, back
//!   /big?bytes=N      N bytes of `x`, streamed in 64 KiB writes
//!   /trap             panics (a trap)
//!   /spin             burns CPU forever
//!   /hang             never answers (sleeps), after saying so on stderr (the task's log)
//!   /memory?mib=N     allocates N MiB, then answers
//!   /fetch?url=URL    makes an outbound GET to `http://HOST[:PORT]/PATH` and answers with
//!                     its status, or the error
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct HttpHello;

wasi::http::proxy::export!(HttpHello);

impl wasi::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query.as_str(), ""));
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
        };
        let last = path.rsplit('/').next().unwrap_or_default();
        match last {
            "echo" => {
                let body = read_body(&request);
                respond(response_out, 200, &[body]);
            }
            "big" => {
                let bytes: usize = param("bytes").and_then(|b| b.parse().ok()).unwrap_or(0);
                let chunk = vec![b'x'; 64 * 1024];
                let mut chunks = Vec::new();
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len());
                    chunks.push(chunk[..n].to_vec());
                    left -= n;
                }
                respond(response_out, 200, &chunks);
            }
            "trap" => panic!("asked to trap"),
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "hang" => {
                // Tests wait for this line to know the request holds its task.
                eprintln!("hang: holding the request");
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            "memory" => {
                let mib: usize = param("mib").and_then(|m| m.parse().ok()).unwrap_or(1);
                let held: Vec<Vec<u8>> = (0..mib).map(|_| vec![1u8; 1 << 20]).collect();
                let message = format!("held {} MiB\n", held.len());
                respond(response_out, 200, &[message.into_bytes()]);
            }
            "fetch" => {
                let answer = match param("url") {
                    Some(url) => fetch(&url),
                    None => "no url\n".to_string(),
                };
                respond(response_out, 200, &[answer.into_bytes()]);
            }
            _ => {
                let message = format!("Hello from wasmgate! You asked for {path_with_query}\n");
                respond(response_out, 200, &[message.into_bytes()]);
            }
        }
    }
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let Ok(body) = request.consume() else {
        return Vec::new();
    };
    let Ok(stream) = body.stream() else {
        return Vec::new();
    };
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

fn respond(out: ResponseOutparam, status: u16, chunks: &[Vec<u8>]) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .expect("static header is valid");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream is taken once");
    for chunk in chunks {
        for piece in chunk.chunks(4096) {
            if stream.blocking_write_and_flush(piece).is_err() {
                return;
            }
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

/// GET `url` (http://AUTHORITY/PATH); its status, or why it failed.
fn fetch(url: &str) -> String {
    let Some(rest) = url.strip_prefix("http://") else {
        return "only http:// urls\n".to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    match outgoing_handler::handle(request, None) {
        Err(error) => format!("refused: {error:?}\n"),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("status {}\n", response.status()),
                Some(Ok(Err(error))) => format!("failed: {error:?}\n"),
                _ => "no response\n".to_string(),
            }
        }
    }
}
