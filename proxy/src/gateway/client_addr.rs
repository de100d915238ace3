//! Which address a request comes from. Behind Nginx or Cloudflare every TCP peer is the proxy, so limits and
//! the request log would see one client; `server.trusted_proxies` names the proxies whose forwarding headers
//! are believed. Anyone else could write those headers, so from any other peer they are ignored.
//!
//! Pure: the caller passes the peer address and the header values.

use std::fmt;
use std::net::IpAddr;

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or one address (`192.0.2.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or a network like 10.0.0.0/8 or 2001:db8::/32")]
pub struct CidrError(pub String);

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError(text.to_string());
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
            None => (text.trim(), None),
        };
        let network = canonical(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return Err(bad());
        }
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn same_prefix(a: u128, b: u128, width: u8, prefix: u8) -> bool {
    let host_bits = u32::from(width - prefix);
    // A /0 compares nothing; shifting by the full width would overflow.
    host_bits >= u32::from(width) || (a >> host_bits) == (b >> host_bits)
}

/// IPv4 peers of a dual-stack socket arrive as `::ffff:a.b.c.d`; they are compared and shown as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|cidr| cidr.contains(ip))
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy; then `CF-Connecting-IP` when
/// present and valid, else the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (every
/// entry to its left was written by someone we cannot vouch for). `forwarded_for` holds each
/// `X-Forwarded-For` header value in the order received. A malformed entry stops the walk: nothing left
/// of it can be believed, and the peer is used.
pub fn client_ip(
    peer: IpAddr,
    trusted: &[Cidr],
    cf_connecting_ip: Option<&str>,
    forwarded_for: &[&str],
) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(trusted, peer) {
        return peer;
    }
    if let Some(ip) = cf_connecting_ip.and_then(parse_entry) {
        return ip;
    }
    let mut leftmost_trusted = None;
    for entry in forwarded_for.iter().rev().flat_map(|value| value.rsplit(',')) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        match parse_entry(entry) {
            Some(ip) if is_trusted(trusted, ip) => leftmost_trusted = Some(ip),
            Some(ip) => return ip,
            None => return peer,
        }
    }
    // Every hop is a trusted proxy: the first of them is as close to the client as can be known.
    leftmost_trusted.unwrap_or(peer)
}

/// An address as proxies write it: `192.0.2.7`, `2001:db8::1`, `192.0.2.7:4711` or `[2001:db8::1]:4711`.
fn parse_entry(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    #[test]
    fn cidr_parses_networks_and_single_addresses() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.200.3.4")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.7")));
        assert!(!Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.9")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        // A v4 network matches a v4 peer seen through a dual-stack socket.
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("2001:db8::1")));
    }

    #[test]
    fn cidr_refuses_nonsense() {
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "example.com", "10.0.0.0/x", "1.2.3.4/"] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_its_headers_say() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &trusted, Some("198.51.100.1"), &["198.51.100.2"]),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("203.0.113.9"), &[], Some("198.51.100.1"), &[]), ip("203.0.113.9"));
    }

    #[test]
    fn cloudflare_header_wins_from_a_trusted_peer() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &trusted, Some("198.51.100.1"), &["198.51.100.2"]),
            ip("198.51.100.1")
        );
        // A malformed CF header falls back to X-Forwarded-For.
        assert_eq!(client_ip(ip("10.0.0.1"), &trusted, Some("nope"), &["198.51.100.2"]), ip("198.51.100.2"));
    }

    #[test]
    fn forwarded_for_takes_the_rightmost_untrusted_hop() {
        let trusted = cidrs(&["10.0.0.0/8", "127.0.0.1"]);
        let peer = ip("127.0.0.1");
        // The client may forge the left part; the right-most hop not ours is what our proxy saw.
        assert_eq!(client_ip(peer, &trusted, None, &["6.6.6.6, 198.51.100.7, 10.0.0.2"]), ip("198.51.100.7"));
        // Several header lines are one list, in order.
        assert_eq!(
            client_ip(peer, &trusted, None, &["6.6.6.6", "198.51.100.7:4711, 10.0.0.2"]),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(peer, &trusted, None, &["[2001:db8::9]:80"]), ip("2001:db8::9"));
        // All hops trusted: the first of them.
        assert_eq!(client_ip(peer, &trusted, None, &["10.0.0.3, 10.0.0.2"]), ip("10.0.0.3"));
        // No header: the proxy itself.
        assert_eq!(client_ip(peer, &trusted, None, &[]), peer);
        // Garbage right of any untrusted hop: nothing can be believed.
        assert_eq!(client_ip(peer, &trusted, None, &["198.51.100.7, garbage, 10.0.0.2"]), peer);
    }

    #[test]
    fn mapped_v4_peers_are_matched_and_reported_as_v4() {
        let trusted = cidrs(&["127.0.0.0/8"]);
        assert_eq!(client_ip(ip("::ffff:127.0.0.1"), &trusted, None, &["198.51.100.7"]), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("::ffff:203.0.113.9"), &trusted, None, &["198.51.100.7"]), ip("203.0.113.9"));
    }
}
