//! Who the client is. Direct connections: the TCP peer. From `trusted_proxies` only: the
//! source address of a PROXY protocol header (v1 or v2, parsed by `ppp`), then the right-most
//! untrusted hop of `Forwarded` (or, without it, `X-Forwarded-For`). Headers from anyone else
//! are ignored, so a client cannot choose the address that its bounds are counted against.

use crate::config::Net;
use ppp::v1::Addresses as V1;
use ppp::v2::{Addresses as V2, Command};
use ppp::{HeaderResult, PartialResult};
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest PROXY header read (v1 is at most 107 bytes; v2 carries TLVs).
pub const MAX_PROXY_HEADER: usize = 4096;

const V1_SIGNATURE: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The configured trusted proxies.
#[derive(Clone, Debug, Default)]
pub struct Trusted(Vec<Net>);

impl Trusted {
    pub fn new(nets: Vec<Net>) -> Trusted {
        Trusted(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// A trusted proxy's connection did not start with a valid header.
    Missing,
    /// An untrusted source sent one.
    Untrusted,
    /// The connection closed or failed first.
    Closed,
}

/// Reads the PROXY header of a connection from a trusted proxy. Returns the client's
/// address (the proxy's own for `LOCAL` and `UNKNOWN` headers, e.g. its health checks) and
/// the bytes read past the header, which belong to TLS or HTTP.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    proxy: SocketAddr,
) -> Result<(SocketAddr, Vec<u8>), ProxyError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        read_more(stream, &mut buf).await?;
        let parsed = HeaderResult::parse(&buf);
        // A v1 header is one line: past its end, "incomplete" means malformed.
        let v1_ended = buf.starts_with(V1_SIGNATURE) && buf.windows(2).any(|w| w == b"\r\n");
        if parsed.is_incomplete() {
            if buf.len() >= MAX_PROXY_HEADER || !signature_prefix(&buf) || v1_ended {
                return Err(ProxyError::Missing);
            }
            continue;
        }
        let (len, source) = match parsed {
            HeaderResult::V1(Ok(h)) => (
                h.header.len(),
                match h.addresses {
                    V1::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                    V1::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                    V1::Unknown => None,
                },
            ),
            HeaderResult::V2(Ok(h)) => (
                h.len(),
                match (h.command, h.addresses) {
                    (Command::Proxy, V2::IPv4(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (Command::Proxy, V2::IPv6(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    _ => None,
                },
            ),
            _ => return Err(ProxyError::Missing),
        };
        return Ok((source.unwrap_or(proxy), buf.split_off(len)));
    }
}

/// On a listener that takes PROXY headers, an untrusted source's first bytes must not be one:
/// reads just enough to tell, and gives the bytes back for TLS or HTTP.
pub async fn refuse_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Vec<u8>, ProxyError> {
    let mut buf = Vec::with_capacity(64);
    while buf.len() < V2_SIGNATURE.len() && signature_prefix(&buf) {
        read_more(stream, &mut buf).await?;
    }
    if buf.starts_with(V1_SIGNATURE) || buf.starts_with(V2_SIGNATURE) {
        return Err(ProxyError::Untrusted);
    }
    Ok(buf)
}

/// Whether `buf` could still be (or already starts) a PROXY header.
fn signature_prefix(buf: &[u8]) -> bool {
    [V1_SIGNATURE, V2_SIGNATURE].iter().any(|sig| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    })
}

async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(), ProxyError> {
    let mut chunk = [0u8; 512];
    let room = (MAX_PROXY_HEADER - buf.len()).min(chunk.len());
    match stream.read(&mut chunk[..room]).await {
        Ok(0) | Err(_) => Err(ProxyError::Closed),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

/// The client behind forwarding headers: `hop` is the address that connected to us (or that a
/// PROXY header named) and is trusted. Walks `Forwarded` (or else `X-Forwarded-For`) from the
/// right while the hops are trusted and returns the first untrusted one; if every hop is
/// trusted, the left-most. An entry that is not an address (`unknown`, an obfuscated name)
/// ends the walk at the hop before it. Also returns the scheme the right-most trusted hop
/// reported (`proto=` or `X-Forwarded-Proto`), if any.
pub fn from_forwarding(
    hop: IpAddr,
    trusted: &Trusted,
    forwarded: &[&str],
    x_forwarded_for: &[&str],
    x_forwarded_proto: &[&str],
) -> (IpAddr, Option<String>) {
    let (chain, scheme): (Vec<&str>, Option<String>) = if !forwarded.is_empty() {
        let elements: Vec<&str> = forwarded.iter().flat_map(|v| v.split(',')).collect();
        let scheme = elements.last().and_then(|e| pair(e, "proto"));
        let chain = elements
            .iter()
            .map(|e| pair_raw(e, "for").unwrap_or(""))
            .collect();
        (chain, scheme)
    } else {
        let scheme = x_forwarded_proto
            .iter()
            .flat_map(|v| v.split(','))
            .next_back()
            .map(|s| s.trim().to_ascii_lowercase());
        let chain = x_forwarded_for.iter().flat_map(|v| v.split(',')).collect();
        (chain, scheme)
    };
    let mut client = hop;
    for entry in chain.iter().rev() {
        let Some(ip) = parse_node(entry) else {
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    (client, scheme.filter(|s| s == "http" || s == "https"))
}

/// The value of `key=` in one `Forwarded` element, unquoted and lower-cased.
fn pair(element: &str, key: &str) -> Option<String> {
    pair_raw(element, key).map(|v| v.to_ascii_lowercase())
}

fn pair_raw<'a>(element: &'a str, key: &str) -> Option<&'a str> {
    element.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// An address as forwarding headers write it: `1.2.3.4`, `1.2.3.4:5`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:5`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(nets: &[&str]) -> Trusted {
        Trusted::new(nets.iter().map(|n| Net::parse(n).unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn right_most_untrusted_hop_wins() {
        let t = trusted(&["10.0.0.0/8"]);
        let hop = ip("10.0.0.1");
        let xff = |v: &[&str]| from_forwarding(hop, &t, &[], v, &[]).0;
        assert_eq!(xff(&["203.0.113.9"]), ip("203.0.113.9"));
        assert_eq!(
            xff(&["198.51.100.1, 203.0.113.9"]),
            ip("203.0.113.9"),
            "a client's own entry on the left is ignored"
        );
        assert_eq!(
            xff(&["198.51.100.1", "203.0.113.9, 10.1.1.1"]),
            ip("203.0.113.9")
        );
        assert_eq!(xff(&["10.2.2.2, 10.1.1.1"]), ip("10.2.2.2"), "all trusted");
        assert_eq!(xff(&[]), hop);
        assert_eq!(xff(&["garbage"]), hop);
        assert_eq!(xff(&["203.0.113.9, unknown"]), hop);
        assert_eq!(xff(&["[2001:db8::7]:443"]), ip("2001:db8::7"));
        assert_eq!(xff(&["::ffff:203.0.113.9"]), ip("203.0.113.9"));
    }

    #[test]
    fn forwarded_header_takes_precedence() {
        let t = trusted(&["10.0.0.0/8"]);
        let hop = ip("10.0.0.1");
        let (client, scheme) = from_forwarding(
            hop,
            &t,
            &["for=198.51.100.1, for=\"[2001:db8::1]:4711\";proto=https;by=10.0.0.1"],
            &["203.0.113.1"],
            &["http"],
        );
        assert_eq!(
            (client, scheme.as_deref()),
            (ip("2001:db8::1"), Some("https"))
        );
        let (client, scheme) = from_forwarding(hop, &t, &[], &["203.0.113.1"], &["HTTPS"]);
        assert_eq!(
            (client, scheme.as_deref()),
            (ip("203.0.113.1"), Some("https"))
        );
        let (_, scheme) = from_forwarding(hop, &t, &[], &[], &["gopher"]);
        assert_eq!(scheme, None);
        assert_eq!(
            from_forwarding(hop, &t, &["for=_hidden"], &[], &[]).0,
            hop,
            "obfuscated identifiers are not addresses"
        );
    }

    #[tokio::test]
    async fn proxy_headers_v1_and_v2() {
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut v1 = &b"PROXY TCP4 203.0.113.9 10.0.0.2 40000 443\r\nGET / HTTP/1.1\r\n"[..];
        let (client, rest) = read_proxy_header(&mut v1, proxy).await.unwrap();
        assert_eq!(client, "203.0.113.9:40000".parse().unwrap());
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([
            0x21, 0x11, 0, 12, 203, 0, 113, 9, 10, 0, 0, 2, 0x9c, 0x40, 1, 0xbb,
        ]);
        v2.extend(b"\x16\x03\x01");
        let (client, rest) = read_proxy_header(&mut &v2[..], proxy).await.unwrap();
        assert_eq!(client, "203.0.113.9:40000".parse().unwrap());
        assert_eq!(rest, b"\x16\x03\x01");

        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(
            read_proxy_header(&mut &local[..], proxy).await.unwrap().0,
            proxy
        );

        let mut plain = &b"GET / HTTP/1.1\r\n\r\n"[..];
        assert_eq!(
            read_proxy_header(&mut plain, proxy).await.unwrap_err(),
            ProxyError::Missing
        );
        let mut cut = &b"PROXY TCP4 203.0.113.9"[..];
        assert_eq!(
            read_proxy_header(&mut cut, proxy).await.unwrap_err(),
            ProxyError::Closed
        );
        let mut bad = &b"PROXY TCP4 nonsense here\r\n"[..];
        assert_eq!(
            read_proxy_header(&mut bad, proxy).await.unwrap_err(),
            ProxyError::Missing
        );
    }

    #[tokio::test]
    async fn untrusted_sources_may_not_send_one() {
        let mut v1 = &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"[..];
        assert_eq!(
            refuse_proxy_header(&mut v1).await.unwrap_err(),
            ProxyError::Untrusted
        );
        let mut v2 = V2_SIGNATURE;
        assert_eq!(
            refuse_proxy_header(&mut v2).await.unwrap_err(),
            ProxyError::Untrusted
        );
        let mut http = &b"GET / HTTP/1.1\r\n\r\n"[..];
        let first = refuse_proxy_header(&mut http).await.unwrap();
        assert!(b"GET / HTTP/1.1\r\n\r\n".starts_with(&first) && !first.is_empty());
        let mut tls = &b"\x16\x03\x01\x02\x00"[..];
        assert_eq!(
            refuse_proxy_header(&mut tls).await.unwrap(),
            b"\x16\x03\x01\x02\x00"
        );
    }
}
