//! A `wasi:http/proxy` component that answers every request with a greeting and the path.
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct HttpHello;

wasi::http::proxy::export!(HttpHello);

impl wasi::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain".to_vec(),
        )])
        .expect("static header is valid");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("stream is taken once");
        let message = format!("Hello from wasmgate! You asked for {path}\n");
        stream.blocking_write_and_flush(message.as_bytes()).expect("client is reading");
        drop(stream);
        OutgoingBody::finish(body, None).expect("body finishes once");
    }
}
