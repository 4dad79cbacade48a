//! `pgbridge --healthcheck`: the client side of `/healthz`, for a container's health check
//! (the image has no curl).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::listen::loopback;

/// `GET /healthz` on `bind` (loopback if it binds every interface), within 3 s: whether the
/// answer is 200.
///
/// ```no_run
/// # async fn demo() {
/// let healthy = pgbridge::startup::healthcheck("0.0.0.0:8080".parse().unwrap()).await;
/// std::process::exit(if healthy { 0 } else { 1 });
/// # }
/// ```
pub async fn healthcheck(bind: SocketAddr) -> bool {
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(loopback(bind)).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), check).await,
        Ok(Ok(true))
    )
}
