//! Which client a request comes from, for the login lockout: the TCP peer, or, when the
//! peer is a trusted reverse proxy (`server.trusted_proxies`), the address it reports in
//! `X-Forwarded-For` (or in `Forwarded`, RFC 7239, when `server.client_address_header`
//! says so). A header from any other peer is ignored: anyone can write one.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::config::ClientAddressHeader;

/// The reverse proxies whose client header is believed; none by default.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    ranges: Vec<IpNet>,
    header: ClientAddressHeader,
}

impl TrustedProxies {
    pub(crate) fn new(ranges: Vec<IpNet>, header: ClientAddressHeader) -> TrustedProxies {
        TrustedProxies { ranges, header }
    }

    /// Whether `ip` is one of the trusted proxies. An IPv4 address seen as IPv6 (a
    /// dual-stack listener reports `::ffff:127.0.0.1`) matches its IPv4 range too.
    fn trusts(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.ranges
            .iter()
            .any(|range| range.contains(&ip) || range.contains(&canonical))
    }

    /// The address of the client behind a request that arrived from `peer`.
    ///
    /// From an untrusted peer (or with no proxies trusted): the peer itself. From a
    /// trusted one: the configured header's list read from the right, where each proxy
    /// appended the address it was reached from. The first entry that is not a trusted
    /// proxy is the client; entries further left were sent by that client and may be
    /// forged. When every entry read is a trusted address (a client inside a trusted
    /// range), the farthest is the client. Reading stops at an entry that is not an
    /// address (bytes that are not text, `unknown` and obfuscated names included) or
    /// where the header ends: the farthest address read so far is the client, the peer
    /// when there is none.
    pub(crate) fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut farthest = peer;
        for hop in forwarded_from_right(headers, self.header) {
            let Some(hop) = hop else {
                break;
            };
            let hop = hop.to_canonical();
            if !self.trusts(hop) {
                return hop;
            }
            farthest = hop;
        }
        farthest
    }
}

/// The entries of every line of the client header, right-most first (several header
/// lines make one list, in order); `None` for an entry that names no address.
fn forwarded_from_right(
    headers: &HeaderMap,
    header: ClientAddressHeader,
) -> impl Iterator<Item = Option<IpAddr>> + '_ {
    let name = match header {
        ClientAddressHeader::XForwardedFor => "x-forwarded-for",
        ClientAddressHeader::Forwarded => "forwarded",
    };
    let lines: Vec<_> = headers.get_all(name).iter().collect();
    // Split the raw bytes, not the line as text: the client writes the left part, and a
    // byte that is not text there must spoil only its own entry, not the address the
    // proxy appended on the right. For `Forwarded` a comma inside a quoted value would
    // not end an element, but no address contains one: splitting there can only spoil
    // entries the client wrote, further left than the proxies' own.
    lines.into_iter().rev().flat_map(move |line| {
        line.as_bytes()
            .rsplit(|b| *b == b',')
            .map(|entry| {
                let entry = std::str::from_utf8(entry).ok()?;
                match header {
                    ClientAddressHeader::XForwardedFor => forwarded_address(entry),
                    ClientAddressHeader::Forwarded => forwarded_for_pair(entry),
                }
            })
            .collect::<Vec<_>>()
    })
}

/// The address in the `for=` pair of one `Forwarded` element
/// (`for=192.0.2.60;proto=https;by=203.0.113.43`, `for="[2001:db8::17]:4711"`); `None`
/// without one, or for `unknown` and obfuscated names (`for=_hidden`).
fn forwarded_for_pair(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => value,
    };
    forwarded_address(value)
}

/// One `X-Forwarded-For` entry as an address: `203.0.113.5`, `2001:db8::1`, or with a
/// port as some proxies write it (`203.0.113.5:41234`, `[2001:db8::1]:443`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(with_port) = entry.parse::<SocketAddr>() {
        return Some(with_port.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            entries
                .iter()
                .map(|e| crate::config::parse_trusted_proxy(e).unwrap())
                .collect(),
            ClientAddressHeader::XForwardedFor,
        )
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        let headers = forwarded(&["203.0.113.5"]);
        assert_eq!(
            none.client_address(ip("127.0.0.1"), &headers),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["203.0.113.5"]);
        assert_eq!(
            trusted.client_address(ip("198.51.100.7"), &headers),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_right_most_untrusted_entry() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(
            trusted.client_address(peer, &forwarded(&["203.0.113.5"])),
            ip("203.0.113.5")
        );
        // The client wrote 198.51.100.1 itself; its real address was appended after it,
        // then a second trusted proxy's.
        assert_eq!(
            trusted.client_address(peer, &forwarded(&["198.51.100.1, 203.0.113.5, 10.1.2.3"])),
            ip("203.0.113.5")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            trusted.client_address(peer, &forwarded(&["198.51.100.1", "203.0.113.5, 10.1.2.3"])),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn a_forged_trusted_address_further_left_does_not_help_the_client() {
        let trusted = proxies(&["127.0.0.1"]);
        let headers = forwarded(&["127.0.0.1, 203.0.113.5"]);
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &headers),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn a_missing_or_unreadable_header_leaves_the_peer() {
        let trusted = proxies(&["127.0.0.1"]);
        let peer = ip("127.0.0.1");
        assert_eq!(trusted.client_address(peer, &HeaderMap::new()), peer);
        for unreadable in [
            "",
            "unknown",
            "203.0.113.5 junk",
            "203.0.113.5,",
            "300.1.2.3",
        ] {
            assert_eq!(
                trusted.client_address(peer, &forwarded(&[unreadable])),
                peer,
                "{unreadable:?}"
            );
        }
        let mut not_text = HeaderMap::new();
        not_text.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.\xff").unwrap(),
        );
        assert_eq!(trusted.client_address(peer, &not_text), peer);
    }

    #[test]
    fn junk_left_of_the_client_is_never_read() {
        // A client cannot fall back to the proxy's address (and lock out everyone
        // behind it) by sending junk: its real address is read first.
        let trusted = proxies(&["127.0.0.1"]);
        let headers = forwarded(&["unknown, 203.0.113.5"]);
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &headers),
            ip("203.0.113.5")
        );
        // Nor with bytes that are not text (nginx appends the address to the client's
        // header on the same line).
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe junk, 203.0.113.5").unwrap(),
        );
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &headers),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn a_client_inside_a_trusted_range_is_the_farthest_address_read() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(
            trusted.client_address(peer, &forwarded(&["10.9.8.7, 10.0.0.2"])),
            ip("10.9.8.7")
        );
        assert_eq!(
            trusted.client_address(peer, &forwarded(&["unknown, 10.0.0.2"])),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn ports_brackets_and_ipv6_are_read() {
        let trusted = proxies(&["::1", "127.0.0.1"]);
        let cases = [
            ("203.0.113.5:41234", "203.0.113.5"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            (" 203.0.113.5 ", "203.0.113.5"),
        ];
        for (entry, client) in cases {
            assert_eq!(
                trusted.client_address(ip("::1"), &forwarded(&[entry])),
                ip(client),
                "{entry}"
            );
        }
    }

    fn standard_forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("forwarded", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    #[test]
    fn the_standard_forwarded_header_is_read_when_configured() {
        let ranges = proxies(&["127.0.0.1", "10.0.0.0/8"]).ranges;
        let trusted = TrustedProxies::new(ranges, ClientAddressHeader::Forwarded);
        let peer = ip("127.0.0.1");
        let cases = [
            ("for=203.0.113.5", "203.0.113.5"),
            ("For=\"203.0.113.5:41234\";proto=https", "203.0.113.5"),
            ("for=\"[2001:db8::17]:4711\"", "2001:db8::17"),
            ("proto=https;for=203.0.113.5;by=10.0.0.2", "203.0.113.5"),
            // The client's own claim on the left, its address and a second proxy's.
            (
                "for=198.51.100.1, for=203.0.113.5, for=10.1.2.3",
                "203.0.113.5",
            ),
            // A forged quote cannot swallow the proxy's element.
            ("for=\"198.51.100.1, for=203.0.113.5", "203.0.113.5"),
            ("for=unknown, for=10.0.0.2", "10.0.0.2"),
        ];
        for (line, client) in cases {
            assert_eq!(
                trusted.client_address(peer, &standard_forwarded(&[line])),
                ip(client),
                "{line}"
            );
        }
        for unreadable in [
            "for=_hidden",
            "for=unknown",
            "proto=https",
            "for=\"203.0.113.5",
        ] {
            assert_eq!(
                trusted.client_address(peer, &standard_forwarded(&[unreadable])),
                peer,
                "{unreadable}"
            );
        }
        // Only the configured header counts: X-Forwarded-For is the client's here.
        assert_eq!(
            trusted.client_address(peer, &forwarded(&["203.0.113.5"])),
            peer
        );
        // And with the default, `Forwarded` is the client's.
        let default = proxies(&["127.0.0.1"]);
        assert_eq!(
            default.client_address(peer, &standard_forwarded(&["for=203.0.113.5"])),
            peer
        );
    }

    #[test]
    fn ipv4_seen_as_ipv6_matches_its_ipv4_range() {
        // A listener on [::] reports IPv4 peers as ::ffff:a.b.c.d.
        let trusted = proxies(&["127.0.0.1"]);
        let headers = forwarded(&["::ffff:203.0.113.5"]);
        assert_eq!(
            trusted.client_address(ip("::ffff:127.0.0.1"), &headers),
            ip("203.0.113.5")
        );
        // An untrusted peer is the client, as the connection names it.
        assert_eq!(
            trusted.client_address(ip("::ffff:198.51.100.7"), &headers),
            ip("::ffff:198.51.100.7")
        );
    }
}
