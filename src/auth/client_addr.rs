//! The client's address: the peer's, or — only when the peer is a proxy the operator
//! trusts (`TRUSTED_PROXIES`) — the one its `X-Forwarded-For` names.
//!
//! `X-Forwarded-For` is read from the right: each trusted hop vouches for the address to
//! its left, so the client is the first address from the right that is not a trusted
//! proxy. Anything a client writes there itself sits further left and is never reached
//! while an untrusted address comes first; from an untrusted peer the header is ignored.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed: addresses and CIDR ranges.
///
/// ```
/// use pgbridge::auth::TrustedProxies;
///
/// let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.2.3".parse().unwrap());
/// // From the proxy: the first untrusted address from the right.
/// let via_proxy = trusted.client_addr(Some("10.0.0.1".parse().unwrap()), &headers);
/// assert_eq!(via_proxy, Some("203.0.113.7".parse().unwrap()));
/// // From anyone else: the peer, whatever the header says.
/// let direct = trusted.client_addr(Some("198.51.100.1".parse().unwrap()), &headers);
/// assert_eq!(direct, Some("198.51.100.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts the proxies in `nets` (a single address is a /32 or /128).
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, from the peer's and the request's `X-Forwarded-For`.
    pub fn client_addr(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer?.to_canonical();
        if self.0.is_empty() {
            return Some(client);
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        for hop in hops.iter().rev() {
            if !self.contains(client) {
                break;
            }
            match parse_hop(hop) {
                Some(ip) => client = ip,
                // A hop the trusted proxy wrote but that is no address: stop at the proxy.
                None => break,
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|addr| addr.ip().to_canonical())
}

/// Parses one `TRUSTED_PROXIES` entry: an address or a CIDR range.
///
/// ```
/// use pgbridge::auth::client_addr::parse_trusted;
/// assert_eq!(parse_trusted("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
/// assert_eq!(parse_trusted("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
/// assert!(parse_trusted("10.0.0.0/33").is_err());
/// ```
pub fn parse_trusted(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    if let Ok(net) = entry.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    entry
        .parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{entry:?} is neither an IP address nor a CIDR range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_addr(ip("127.0.0.1"), &xff("1.2.3.4")),
            ip("127.0.0.1")
        );
        assert_eq!(none.client_addr(None, &xff("1.2.3.4")), None);
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = TrustedProxies::new(vec![
            parse_trusted("127.0.0.1").unwrap(),
            parse_trusted("10.0.0.0/8").unwrap(),
        ]);
        let peer = ip("127.0.0.1");
        assert_eq!(trusted.client_addr(peer, &xff("1.2.3.4")), ip("1.2.3.4"));
        // A client's own forged entries are further left.
        assert_eq!(
            trusted.client_addr(peer, &xff("9.9.9.9, 1.2.3.4, 10.0.0.2")),
            ip("1.2.3.4")
        );
        // Every hop trusted: the leftmost.
        assert_eq!(trusted.client_addr(peer, &xff("10.0.0.3")), ip("10.0.0.3"));
        // Junk written by the trusted proxy: the proxy itself.
        assert_eq!(trusted.client_addr(peer, &xff("junk")), peer);
        // Ports, brackets, IPv4-mapped IPv6, several headers.
        assert_eq!(
            trusted.client_addr(peer, &xff("[2001:db8::1]:443")),
            ip("2001:db8::1")
        );
        assert_eq!(
            trusted.client_addr(ip("::ffff:127.0.0.1"), &xff("5.6.7.8:9")),
            ip("5.6.7.8")
        );
        let mut headers = xff("1.1.1.1");
        headers.append("x-forwarded-for", "2.2.2.2".parse().unwrap());
        assert_eq!(trusted.client_addr(peer, &headers), ip("2.2.2.2"));
        // No header: the peer.
        assert_eq!(trusted.client_addr(peer, &HeaderMap::new()), peer);
        // An untrusted peer's header is ignored.
        assert_eq!(
            trusted.client_addr(ip("8.8.8.8"), &xff("1.2.3.4")),
            ip("8.8.8.8")
        );
    }
}
