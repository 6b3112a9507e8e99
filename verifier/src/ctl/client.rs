//! A small blocking HTTP client for the operator API: bearer token, JSON in and out, and error
//! responses turned into one-line messages (`{"error": ...}` bodies, connection failures).

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use ureq::http::Response;

use crate::api::ErrorBody;

/// Largest response body the client reads (a page of 1,000 devices fits comfortably).
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(base: &str, token: String) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.auth())
            .call()
            .map_err(|e| self.unreachable(e))?;
        decode(resp)
    }

    pub fn post_json<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let resp = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.auth())
            .send_json(body)
            .map_err(|e| self.unreachable(e))?;
        decode(resp)
    }

    pub fn put_json<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let resp = self
            .agent
            .put(self.url(path))
            .header("Authorization", self.auth())
            .send_json(body)
            .map_err(|e| self.unreachable(e))?;
        decode(resp)
    }

    pub fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<T> {
        let resp = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.auth())
            .header("Content-Type", content_type)
            .send(body)
            .map_err(|e| self.unreachable(e))?;
        decode(resp)
    }

    /// A GET whose successful answer is text (an EAR JWT), not JSON.
    pub fn get_text(&self, path: &str) -> Result<String> {
        let mut resp = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.auth())
            .call()
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return decode::<serde_json::Value>(resp).map(|_| String::new());
        }
        resp.body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .context("reading the verifier's response")
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!("cannot reach the verifier API at {}: {e}", self.base)
    }
}

fn decode<T: DeserializeOwned>(mut resp: Response<ureq::Body>) -> Result<T> {
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_vec()
        .context("reading the verifier's response")?;
    if !status.is_success() {
        let msg = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        bail!("{msg} (HTTP {})", status.as_u16());
    }
    serde_json::from_slice(&body).context("the verifier's response is not the expected JSON")
}
