//! Which `Host` a request may name (against DNS rebinding): loopback names and addresses, the
//! listen address (any address when listening on a wildcard: rebinding needs a name), and the
//! names given with `--allowed-host`.

use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Debug)]
pub struct HostPolicy {
    listen: IpAddr,
    /// Lowercase, without a port.
    extra: Vec<String>,
}

/// The host part of a `Host` header or an authority: without port and brackets, lowercase,
/// without a trailing dot.
pub fn host_part(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => a,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl HostPolicy {
    pub fn new(listen: SocketAddr, extra: &[String]) -> HostPolicy {
        HostPolicy {
            listen: listen.ip(),
            extra: extra.iter().map(|h| host_part(h)).collect(),
        }
    }

    /// Whether a request naming `authority` (`Host` header value) is for this server.
    pub fn allows(&self, authority: &str) -> bool {
        let host = host_part(authority);
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return ip.is_loopback() || ip == self.listen || self.listen.is_unspecified();
        }
        self.extra.contains(&host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listen_address_and_extra_names() {
        let p = HostPolicy::new(
            "127.0.0.1:7070".parse().unwrap(),
            &["Drover.example.com:443".into()],
        );
        for ok in [
            "127.0.0.1:7070",
            "localhost",
            "LOCALHOST:80",
            "[::1]:7070",
            "127.0.0.2",
            "app.localhost",
            "drover.example.com",
            "drover.example.com.:8443",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "drover.example.com.evil",
            "10.0.0.1",
            "0x7f000001",
            "localhost.evil.com",
            "",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
        let lan = HostPolicy::new("10.0.0.5:7070".parse().unwrap(), &[]);
        assert!(lan.allows("10.0.0.5:7070") && !lan.allows("10.0.0.6"));
        let any = HostPolicy::new("0.0.0.0:7070".parse().unwrap(), &[]);
        assert!(any.allows("192.168.1.9:7070") && !any.allows("rebind.evil.example"));
    }
}
