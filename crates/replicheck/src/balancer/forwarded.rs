//! The headers a TLS-terminating proxy adds: the client's address, the scheme the client
//! used, and the host it asked for. Hop-by-hop headers stop at the proxy (RFC 9110 7.6.1).

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Rewrites a request's headers for the upstream: appends the client to
/// `X-Forwarded-For` (as nginx's `$proxy_add_x_forwarded_for` does) and sets the scheme
/// and host the client used.
pub fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, scheme: &'static str) {
    remove_hop_by_hop(headers);
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// Removes the headers that describe one connection, not the message.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_client_scheme_and_host_and_drops_hop_by_hop() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("app.example:8443"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        add_forwarded(&mut headers, "127.0.0.3".parse().unwrap(), "https");
        assert_eq!(headers[&X_FORWARDED_FOR], "127.0.0.3");
        assert_eq!(headers[&X_FORWARDED_PROTO], "https");
        assert_eq!(headers[&X_FORWARDED_HOST], "app.example:8443");
        assert!(headers.get(header::CONNECTION).is_none());
        assert!(headers.get("x-secret-hop").is_none());
    }

    #[test]
    fn appends_to_an_existing_forwarded_for_chain() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        add_forwarded(&mut headers, "127.0.0.1".parse().unwrap(), "https");
        assert_eq!(headers[&X_FORWARDED_FOR], "203.0.113.9, 127.0.0.1");
    }
}
