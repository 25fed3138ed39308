//! HTTP clients. Every reqwest client replicheck makes starts here: TLS (for staging
//! instances behind https) needs its crypto provider chosen once per process, and no
//! client of a test harness should go through a system proxy.

/// A client builder with TLS ready and no system proxy.
pub fn builder() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // Fails only when the embedding program installed a provider of its own first.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder().no_proxy()
}
