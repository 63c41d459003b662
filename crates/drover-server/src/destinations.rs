//! Where webhooks may connect: public unicast addresses only, unless the server runs with
//! `--allow-private-webhooks`. Checked when a webhook is created (its host as written, in any
//! spelling the URL parser accepts, and every address its name resolves to) and again at each
//! connection: the webhook client resolves through `CheckedResolver`, which refuses a name if
//! any of its addresses is not public and otherwise hands exactly the checked addresses to the
//! connector (DNS may change between creation and delivery). Delivery errors are recorded by
//! class, never as raw OS messages (which would tell open from closed ports).

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is not a public unicast one, or `None` if it is.
pub fn blocked(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "unspecified",
        (127, ..) => "loopback",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "shared address space (CGNAT)",
        (224..=239, ..) => "multicast",
        (255, 255, 255) if ip.is_broadcast() => "broadcast",
        (240..=255, ..) => "reserved",
        (192, 0, 0) => "reserved (IETF protocol assignments)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (192, 88, 99) => "reserved (6to4 relay)",
        _ => return None,
    })
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let embedded_v4 =
        || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    Some(match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => "IPv4-mapped",
        [0, 0, 0, 0, 0, 0, ..] => "IPv4-compatible",
        [0x64, 0xff9b, 0, 0, 0, 0, ..] | [0x64, 0xff9b, 1, ..] => {
            // NAT64: the IPv4 address inside decides.
            blocked_v4(embedded_v4())?
        }
        [0x2002, ..] => {
            // 6to4: the IPv4 address is in segments 1 and 2.
            let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
            blocked_v4(v4)?
        }
        [0x0100, 0, 0, 0, ..] => "discard-only",
        [0x2001, 0, ..] => "Teredo",
        [0x2001, 0x0db8, ..] => "documentation",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique local",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// A webhook destination that is not a public address.
#[derive(Debug)]
pub struct Blocked {
    pub host: String,
    pub ip: IpAddr,
    pub why: &'static str,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host == self.ip.to_string() {
            write!(f, "{} is a {} address", self.ip, self.why)
        } else {
            write!(
                f,
                "{} resolves to {}, a {} address",
                self.host, self.ip, self.why
            )
        }
    }
}

impl StdError for Blocked {}

/// A name that did not resolve.
#[derive(Debug)]
pub struct DnsFailed;

impl fmt::Display for DnsFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the name did not resolve")
    }
}

impl StdError for DnsFailed {}

/// Resolves and checks every address; `Blocked` if any is not public.
pub async fn resolve_checked(
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| DnsFailed)?
        .collect();
    if addrs.is_empty() {
        return Err(DnsFailed.into());
    }
    for a in &addrs {
        if let Some(why) = blocked(a.ip()) {
            return Err(Blocked {
                host: host.to_string(),
                ip: a.ip(),
                why,
            }
            .into());
        }
    }
    Ok(addrs)
}

/// The webhook client's resolver: the connector gets only checked addresses.
#[derive(Debug, Default)]
pub struct CheckedResolver;

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve_checked(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// An IP literal host of `url` that is not public (a literal never reaches the resolver).
pub fn blocked_literal(url: &reqwest::Url) -> Option<Blocked> {
    let ip = match url.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    blocked(ip).map(|why| Blocked {
        host: ip.to_string(),
        ip,
        why,
    })
}

/// How long a new webhook's name may take to resolve before it is accepted unchecked.
const CHECK_NEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks a new webhook's destination: an IP literal, and every address its name resolves to
/// now. A name that does not resolve now (or not within two seconds) is accepted: every
/// connection checks it again.
pub async fn check_new(url: &reqwest::Url) -> Result<(), Blocked> {
    if let Some(b) = blocked_literal(url) {
        return Err(b);
    }
    if let Some(url::Host::Domain(d)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(80);
        let resolved = tokio::time::timeout(CHECK_NEW_TIMEOUT, resolve_checked(d, port)).await;
        if let Ok(Err(e)) = resolved {
            if let Ok(b) = e.downcast::<Blocked>() {
                return Err(*b);
            }
        }
    }
    Ok(())
}

/// The class of a failed delivery: `blocked destination`, `dns`, `timeout`, `refused`, `tls`,
/// `connection reset`, `unreachable`, `connection failed` or `request failed`.
pub fn classify(e: &reqwest::Error) -> &'static str {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    let mut class = None;
    while let Some(err) = cur {
        if err.is::<Blocked>() {
            return "blocked destination";
        }
        if err.is::<DnsFailed>() {
            return "dns";
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            class = class.or(match io.kind() {
                ConnectionRefused => Some("refused"),
                TimedOut => Some("timeout"),
                InvalidData => Some("tls"),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                    Some("connection reset")
                }
                HostUnreachable | NetworkUnreachable => Some("unreachable"),
                _ => None,
            });
        }
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
            class = class.or(Some("tls"));
        }
        cur = err.source();
    }
    if e.is_timeout() {
        return "timeout";
    }
    class.unwrap_or(if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(raw: &str) -> Option<Blocked> {
        blocked_literal(&reqwest::Url::parse(raw).unwrap())
    }

    #[test]
    fn every_spelling_of_a_private_address_is_blocked() {
        for (raw, why) in [
            ("http://127.0.0.1/", "loopback"),
            ("http://0x7f000001/", "loopback"),
            ("http://2130706433/", "loopback"),
            ("http://017700000001/", "loopback"),
            ("http://127.1/", "loopback"),
            ("http://0/", "unspecified"),
            ("http://[::1]/", "loopback"),
            ("http://[::]/", "unspecified"),
            ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
            ("http://[::ffff:8.8.8.8]/", "IPv4-mapped"),
            ("http://[0:0:0:0:0:ffff:7f00:1]/", "IPv4-mapped"),
            ("http://[::127.0.0.1]/", "IPv4-compatible"),
            ("http://[64:ff9b::10.0.0.1]/", "private"),
            ("http://[2002:c0a8:0101::1]/", "private"),
            ("http://10.1.2.3/", "private"),
            ("http://172.31.255.255/", "private"),
            ("http://192.168.0.1/", "private"),
            ("http://0xa9.0xfe.0xa9.0xfe/", "link-local"),
            ("http://169.254.169.254/", "link-local"),
            ("http://100.64.0.1/", "shared address space (CGNAT)"),
            ("http://224.0.0.1/", "multicast"),
            ("http://255.255.255.255/", "broadcast"),
            ("http://240.0.0.1/", "reserved"),
            ("http://[fd00::1]/", "unique local"),
            ("http://[fe80::1]/", "link-local"),
            ("http://[ff02::1]/", "multicast"),
            ("http://[2001:db8::1]/", "documentation"),
        ] {
            let b = host_of(raw).unwrap_or_else(|| panic!("{raw} not blocked"));
            assert_eq!(b.why, why, "{raw}");
        }
    }

    #[test]
    fn public_addresses_and_names_pass_the_literal_check() {
        for raw in [
            "https://8.8.8.8/",
            "http://1.1.1.1:8080/x",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2606:4700::1111]/",
            "http://[64:ff9b::8.8.8.8]/",
            "https://example.com/",
        ] {
            assert!(host_of(raw).is_none(), "{raw}");
        }
    }

    #[tokio::test]
    async fn names_are_checked_by_what_they_resolve_to() {
        let e = resolve_checked("localhost", 80).await.unwrap_err();
        let b = e.downcast::<Blocked>().expect("blocked");
        assert_eq!(b.why, "loopback");
        let url = reqwest::Url::parse("http://localhost:9/h").unwrap();
        assert!(check_new(&url).await.is_err());
    }
}
