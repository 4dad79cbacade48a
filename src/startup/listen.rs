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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_port_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = listen(addr, None).await.unwrap_err();
        assert!(matches!(err, StartError::Listen { addr: named, .. } if named == addr));
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[tokio::test]
    async fn a_passed_socket_is_used_instead_of_binding() {
        let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = passed.local_addr().unwrap();
        // The bind address is not used: binding it would fail.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listener = listen(taken.local_addr().unwrap(), Some(passed))
            .await
            .unwrap();
        assert_eq!(listener.local_addr().unwrap(), addr);
    }
}
