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

/// A short-timeout client for readiness probes, never through a proxy. Each probe opens
/// a connection of its own, as the kubelet's do: a probe that kept one alive would keep a
/// draining server from ever seeing its connections idle, and from exiting.
pub fn probe_client() -> reqwest::Client {
    builder()
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs(1))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}
