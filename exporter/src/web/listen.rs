use std::net::{SocketAddr, ToSocketAddrs};

/// Parses a listen address as Go's `net.Listen` takes it: `host:port`,
/// `[v6]:port`, or `:port` for every interface.
pub fn parse_listen_address(addr: &str) -> anyhow::Result<SocketAddr> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    full.to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("--web.listen-address {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--web.listen-address {addr:?}: resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_addresses_parse() {
        assert_eq!(
            parse_listen_address(":9100").unwrap(),
            "0.0.0.0:9100".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:80").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert!(parse_listen_address("nonsense").is_err());
    }
}
