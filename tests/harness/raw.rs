//! Hand-built MQTT 3.1.1 packets over a plain TCP socket, for what a well-behaved client library
//! will not do: a client id that differs from the user name, a connection dropped before the
//! CONNACK, floods of QoS 0 publishes from one buffer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The MQTT "remaining length" varint.
fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s);
}

/// A CONNECT packet (clean session, keep-alive 60 s).
pub fn connect_packet(client_id: &str, user: Option<&str>, password: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    string(b"MQTT", &mut body);
    body.push(4);
    let mut flags = 0x02;
    if user.is_some() {
        flags |= 0x80;
    }
    if password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    string(client_id.as_bytes(), &mut body);
    if let Some(u) = user {
        string(u.as_bytes(), &mut body);
    }
    if let Some(p) = password {
        string(p.as_bytes(), &mut body);
    }
    let mut pkt = vec![0x10];
    remaining_length(body.len(), &mut pkt);
    pkt.extend_from_slice(&body);
    pkt
}

/// The fixed header and topic of a QoS 0 PUBLISH whose payload (`len` bytes) follows.
pub fn publish_header(topic: &str, len: usize) -> Vec<u8> {
    let mut pkt = vec![0x30];
    remaining_length(2 + topic.len() + len, &mut pkt);
    string(topic.as_bytes(), &mut pkt);
    pkt
}

/// Sends CONNECT and closes the socket at once, before the broker's CONNACK can be read (the
/// CONNACK then meets a closed socket and is answered with a reset).
pub fn connect_and_drop(port: u16, client_id: &str, user: Option<&str>, password: Option<&str>) {
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.write_all(&connect_packet(client_id, user, password));
    }
}

/// A connected raw client.
#[derive(Debug)]
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    /// Connects and returns the CONNACK return code (0 = accepted, 5 = not authorised) with
    /// the connection (only useful when accepted).
    pub fn connect(
        port: u16,
        client_id: &str,
        user: Option<&str>,
        password: Option<&str>,
    ) -> (u8, Raw) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&connect_packet(client_id, user, password))
            .unwrap();
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack).unwrap();
        assert_eq!(ack[0], 0x20, "expected a CONNACK, got {ack:?}");
        (ack[3], Raw { stream: s })
    }

    /// Writes a QoS 0 PUBLISH of `len` bytes of `fill`; false once the broker closed the
    /// connection.
    pub fn publish_fill(&mut self, topic: &str, len: usize, fill: u8) -> bool {
        let chunk = vec![fill; 64 * 1024];
        if self.stream.write_all(&publish_header(topic, len)).is_err() {
            return false;
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            if self.stream.write_all(&chunk[..n]).is_err() {
                return false;
            }
            left -= n;
        }
        true
    }

    /// Whether the broker has closed this connection (reads until EOF or `wait` passes).
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}
