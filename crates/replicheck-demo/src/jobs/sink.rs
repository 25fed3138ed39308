//! Deliveries: JSON posted to a path under the replica's sink URL, as webhooks are. A
//! failed delivery is logged and given up, so a receiver that is gone cannot hold a worker.

use std::time::Duration;

use serde_json::Value;

/// How long one delivery may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Sink {
    base: String,
    client: reqwest::Client,
}

impl Sink {
    pub fn new(base: &str) -> Result<Sink, String> {
        // Fails only when a provider was chosen first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The sink is plain http beside the replica: no proxy from the environment, and no
        // CA store to load (the demo's image has none).
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .no_proxy()
            .tls_certs_only([])
            .build()
            .map_err(|e| format!("cannot make the delivery client: {e}"))?;
        Ok(Sink { base: base.trim_end_matches('/').to_owned(), client })
    }

    /// Posts `body` to `path` under the sink; whether the receiver took it.
    pub async fn deliver(&self, path: &str, body: &Value) -> bool {
        let url = format!("{}{path}", self.base);
        let sent = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                eprintln!("delivery of {body} to {url} refused: {}", response.status());
                false
            }
            Err(err) => {
                eprintln!("delivery of {body} to {url} failed: {err}");
                false
            }
        }
    }
}
