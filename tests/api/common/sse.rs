//! A server-sent-events client for tests: reads frames as they arrive.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::net::TcpStream;

/// One `event:` frame.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub data: serde_json::Value,
}

/// An open stream.
pub struct Stream {
    pub status: u16,
    pub content_type: Option<String>,
    body: hyper::body::Incoming,
    buffer: String,
    /// Comments seen (heartbeats, the greeting).
    pub comments: usize,
    /// The server ended the stream (seen by [`Stream::next_event`]).
    pub ended: bool,
    _sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
}

/// Opens `path` as an event stream, with the harness account's token by default.
pub async fn open(addr: SocketAddr, path: &str, last_event_id: Option<i64>) -> Stream {
    let auth = super::http::default_token(addr, path)
        .await
        .map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    open_with(addr, path, last_event_id, &headers).await
}

/// Opens `path` as an event stream with exactly these extra headers.
pub async fn open_with(
    addr: SocketAddr,
    path: &str,
    last_event_id: Option<i64>,
    headers: &[(&str, &str)],
) -> Stream {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut request = http::Request::get(path)
        .header("Host", "test")
        .header("Accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(http_body_util::Empty::new()).unwrap())
        .await
        .expect("response head");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Stream {
        status,
        content_type,
        body: response.into_body(),
        buffer: String::new(),
        comments: 0,
        ended: false,
        _sender: sender,
    }
}

impl Stream {
    /// The next event within `within`; `None` if the stream ended or nothing came.
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).ok();
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    return Some(Event { id, data });
                }
            }
            let frame = match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return None,
                Ok(Some(Ok(frame))) => frame,
                Ok(None | Some(Err(_))) => {
                    self.ended = true;
                    return None;
                }
            };
            if let Ok(bytes) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }

    /// Exactly `n` events, each within `within` of the last.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            match self.next_event(within).await {
                Some(event) => events.push(event),
                None => panic!(
                    "got {} of {n} events: {:?}",
                    events.len(),
                    events.iter().map(|e| e.id).collect::<Vec<_>>()
                ),
            }
        }
        events
    }

    /// Whether the server ended the stream within `within`.
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}
