//! Which server a client given several (`--server a,b,c`) talks to next: the one rule the SDK,
//! the CLI and the worker share.
//!
//! After a miss (no connection, or a 503 / gRPC `UNAVAILABLE`), a client goes to the leader a
//! standby named in [`crate::cluster::LEADER_HEADER`] **when that address is one of its own
//! servers**, else to the next server of its list (wrapping around). A leader address that is
//! not in the list is never followed: the client would send its token to a host it was not
//! told to trust (a server's advertised address can also be one the client cannot reach).

/// `http://host:port` as servers are compared: `http://` added when there is no scheme,
/// scheme and host lower-cased, trailing slashes removed.
pub fn normalize_address(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    format!("{scheme}://{}{path}", authority.to_ascii_lowercase())
}

/// The index in `servers` of the leader at `address`, if it is one of them.
pub fn position(servers: &[String], address: &str) -> Option<usize> {
    let want = normalize_address(address);
    servers.iter().position(|s| normalize_address(s) == want)
}

/// The server to try after a miss on `servers[current]`: the leader named by `leader` when it
/// is one of `servers` and not the one that just missed, else the next one (wrapping around;
/// the same one when there is only one).
pub fn next_server(servers: &[String], current: usize, leader: Option<&str>) -> usize {
    let n = servers.len().max(1);
    let current = current % n;
    match leader.and_then(|l| position(servers, l)) {
        Some(i) if i != current => i,
        _ => (current + 1) % n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn addresses_compare_without_case_scheme_or_slash_differences() {
        assert_eq!(normalize_address("127.0.0.1:7070"), "http://127.0.0.1:7070");
        assert_eq!(
            normalize_address(" HTTP://Node-A:7070/ "),
            "http://node-a:7070"
        );
        assert_eq!(
            normalize_address("https://h:1/Prefix/"),
            "https://h:1/Prefix"
        );
    }

    #[test]
    fn a_miss_moves_to_the_next_server_wrapping_around() {
        let s = list(&["http://a:1", "http://b:1", "http://c:1"]);
        assert_eq!(next_server(&s, 0, None), 1);
        assert_eq!(next_server(&s, 1, None), 2);
        assert_eq!(next_server(&s, 2, None), 0);
        assert_eq!(next_server(&s, 5, None), 0, "an index past the end wraps");
        assert_eq!(next_server(&list(&["http://a:1"]), 0, None), 0);
    }

    #[test]
    fn a_leader_in_the_list_is_followed_one_outside_it_is_not() {
        let s = list(&["http://a:1", "http://b:1", "http://c:1"]);
        assert_eq!(next_server(&s, 0, Some("http://c:1")), 2);
        assert_eq!(next_server(&s, 0, Some("C:1/")), 2, "compared normalized");
        assert_eq!(
            next_server(&s, 0, Some("http://evil:1")),
            1,
            "not in the list: the next one"
        );
        assert_eq!(
            next_server(&s, 1, Some("http://b:1")),
            2,
            "a server naming itself: the next one"
        );
        assert_eq!(next_server(&s, 1, Some("https://a:1")), 2, "scheme matters");
    }
}
