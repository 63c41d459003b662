//! Deny by default off loopback: where the server may listen, and with what.

use std::net::SocketAddr;

/// Whether the server may listen on `addr`: anywhere with TLS; without it only on loopback,
/// unless `insecure_no_tls` (a trusted proxy terminates TLS, or a private network). With
/// `no_auth` only on loopback, whatever else is given. The error says why and what to do.
pub fn listen_policy(
    addr: SocketAddr,
    tls_configured: bool,
    insecure_no_tls: bool,
    no_auth: bool,
) -> Result<(), String> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if no_auth {
        return Err(format!(
            "refusing to listen on {addr} with --no-auth: anyone who can reach this address \
             could run commands on every worker. --no-auth is only allowed on a loopback \
             address (e.g. --listen 127.0.0.1:{}); elsewhere, give clients a token \
             (`drover token create`)",
            addr.port()
        ));
    }
    if !tls_configured && !insecure_no_tls {
        return Err(format!(
            "refusing to listen on {addr} without TLS: tokens, task commands and their output \
             would cross the network in clear text. Give the server a certificate \
             (--tls-cert FILE --tls-key FILE), or, if a trusted proxy terminates TLS or the \
             network is private, say so with --insecure-no-tls; to stay on this machine, \
             listen on 127.0.0.1:{}",
            addr.port()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_needs_tls_or_an_explicit_opt_out_and_auth() {
        let lo: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let lo6: SocketAddr = "[::1]:7070".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        let lan: SocketAddr = "10.1.2.3:7070".parse().unwrap();
        for a in [lo, lo6] {
            for (tls, insecure, no_auth) in [(false, false, false), (false, false, true)] {
                assert_eq!(listen_policy(a, tls, insecure, no_auth), Ok(()));
            }
        }
        for a in [any, lan] {
            let e = listen_policy(a, false, false, false).unwrap_err();
            assert!(e.contains("without TLS") && e.contains("--tls-cert"), "{e}");
            assert!(e.contains("--insecure-no-tls"), "{e}");
            assert_eq!(listen_policy(a, true, false, false), Ok(()));
            assert_eq!(listen_policy(a, false, true, false), Ok(()));
            for (tls, insecure) in [(true, false), (false, true), (false, false)] {
                let e = listen_policy(a, tls, insecure, true).unwrap_err();
                assert!(e.contains("--no-auth is only allowed on a loopback"), "{e}");
            }
        }
    }
}
