//! Parsing of `mqtt://host:port` and `mqtts://host:port` (TLS) broker URLs given on the command
//! line or in config files.

/// A broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: connect with TLS, verifying the broker against the configured CA.
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("broker URL \"{0}\" must start with mqtt:// or mqtts://")]
    Scheme(String),
    #[error("broker URL \"{0}\" has no host")]
    Host(String),
    #[error("broker URL \"{0}\" has an invalid port")]
    Port(String),
}

impl std::str::FromStr for BrokerAddr {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<Self, UrlError> {
        let (rest, tls) = if let Some(r) = url.strip_prefix("mqtts://") {
            (r, true)
        } else {
            let r = url
                .strip_prefix("mqtt://")
                .or_else(|| url.strip_prefix("tcp://"))
                .ok_or_else(|| UrlError::Scheme(url.into()))?;
            (r, false)
        };
        let default_port = if tls { 8883 } else { 1883 };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal without a port, like [::1], has colons but ends in ']'.
            Some((h, p)) if !p.ends_with(']') => {
                (h, p.parse().map_err(|_| UrlError::Port(url.into()))?)
            }
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(UrlError::Host(url.into()));
        }
        Ok(BrokerAddr {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_defaults() {
        let a: BrokerAddr = "mqtt://127.0.0.1:1884".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 1884));
        let a: BrokerAddr = "mqtt://broker.example".parse().unwrap();
        assert_eq!(a.port, 1883);
        let a: BrokerAddr = "mqtt://[::1]:1885".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 1885));
    }

    #[test]
    fn parses_tls_and_refuses_other_schemes_and_bad_ports() {
        assert!(matches!(
            "http://x".parse::<BrokerAddr>(),
            Err(UrlError::Scheme(_))
        ));
        let a: BrokerAddr = "mqtts://broker.example".parse().unwrap();
        assert_eq!((a.port, a.tls), (8883, true));
        let a: BrokerAddr = "mqtts://localhost:9883".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port, a.tls), ("localhost", 9883, true));
        assert!(!"mqtt://x".parse::<BrokerAddr>().unwrap().tls);
        assert!(matches!(
            "mqtt://x:99999".parse::<BrokerAddr>(),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            "mqtt://:1883".parse::<BrokerAddr>(),
            Err(UrlError::Host(_))
        ));
    }
}
