//! Accounts for tests: sign up, log in, and send requests as one account.

use std::net::SocketAddr;

use serde_json::{Value, json};

use super::http::{Reply, send_as_is};

/// One account's bearer token on one service.
#[derive(Clone, Debug)]
pub struct Account {
    pub addr: SocketAddr,
    pub token: String,
}

impl Account {
    /// Signs `username` up (if needed) and logs in.
    pub async fn new(addr: SocketAddr, username: &str) -> Self {
        let token = super::http::account(addr, username, &format!("{username} password")).await;
        Self { addr, token }
    }

    /// Sends `method path` with this account's token, a JSON body if given, and `headers`.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {}", self.token));
        if body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.map(|b| b.to_string()).unwrap_or_default())
            .expect("request");
        send_as_is(self.addr, request)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `POST /notes`; the new note's id.
    pub async fn create(&self, title: &str) -> i64 {
        self.create_in("/notes", json!({ "title": title })).await
    }

    /// `POST collection` with `body` (any owned resource); the new item's id.
    pub async fn create_in(&self, collection: &str, body: Value) -> i64 {
        let reply = self.send("POST", collection, Some(body), &[]).await;
        assert_eq!(reply.status, 201, "POST {collection}: {}", reply.text());
        reply.json()["id"].as_i64().expect("id")
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, &[]).await
    }
}

/// Sends `method path` with no credentials at all.
pub async fn anonymous(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send_as_is(addr, request.body(String::new()).expect("request"))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Asserts the 401 every refused credential gets: the JSON shape and `WWW-Authenticate`.
pub fn assert_401(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text());
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
    let body = reply.json();
    assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    assert!(body["error"]["message"].is_string(), "{what}");
}
