//! The listening socket: the one a service manager passed (`LISTEN_FDS`), else a new one
//! bound to `BIND_ADDR`; and the address a person opens for it.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::error::StartError;

/// `inherited` made non-blocking and handed to tokio, else a new socket bound to `bind`.
pub(super) async fn listen(
    bind: SocketAddr,
    inherited: Option<std::net::TcpListener>,
) -> Result<TcpListener, StartError> {
    let Some(listener) = inherited else {
        return TcpListener::bind(bind)
            .await
            .map_err(|source| StartError::Listen { addr: bind, source });
    };
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(StartError::ListenFds)?;
    tracing::info!(
        addr = ?listener.local_addr().ok(),
        "using the listening socket passed in LISTEN_FDS (BIND_ADDR is not used)"
    );
    Ok(listener)
}

/// `addr` with loopback in place of "every interface": where a person, or the health
/// check, connects.
///
/// ```
/// let addr = "0.0.0.0:8080".parse().unwrap();
/// assert_eq!(pgbridge::startup::loopback(addr).to_string(), "127.0.0.1:8080");
/// ```
pub fn loopback(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}
