//! Parsing of `mqtt://host:port` broker URLs given on the command line or in config files.
//! TLS (`mqtts://`) belongs to the deployment-hardening work and is refused with a clear message
//! until then, rather than silently connecting in plain text.

/// A broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("broker URL \"{0}\" must start with mqtt://")]
    Scheme(String),
    #[error(
        "broker URL \"{0}\": mqtts:// (TLS) is not supported by this version; use mqtt:// on a protected network or a TLS-terminating proxy"
    )]
    Tls(String),
    #[error("broker URL \"{0}\" has no host")]
    Host(String),
    #[error("broker URL \"{0}\" has an invalid port")]
    Port(String),
}

impl std::str::FromStr for BrokerAddr {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<Self, UrlError> {
        if url.starts_with("mqtts://") {
            return Err(UrlError::Tls(url.into()));
        }
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| UrlError::Scheme(url.into()))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal without a port, like [::1], has colons but ends in ']'.
            Some((h, p)) if !p.ends_with(']') => {
                (h, p.parse().map_err(|_| UrlError::Port(url.into()))?)
            }
            _ => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(UrlError::Host(url.into()));
        }
        Ok(BrokerAddr {
            host: host.to_owned(),
            port,
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
    fn refuses_other_schemes_tls_and_bad_ports() {
        assert!(matches!(
            "http://x".parse::<BrokerAddr>(),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            "mqtts://x".parse::<BrokerAddr>(),
            Err(UrlError::Tls(_))
        ));
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
