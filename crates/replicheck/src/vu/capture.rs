//! Captures: values a step takes from its response for later steps.

use cookie_store::CookieStore;
use url::Url;

use super::expect::Response;
use super::form::Page;
use crate::step::CaptureSource;

/// The captured value, or `None` when the response does not have it.
pub fn extract(source: &CaptureSource, response: &Response, page: &Page, jar: &CookieStore, url: &Url) -> Option<String> {
    match source {
        CaptureSource::Cookie(name) => jar.get_request_values(url).find(|(n, _)| n == name).map(|(_, v)| v.to_owned()),
        CaptureSource::FormField(name) => page.input(name).map(str::to_owned),
        CaptureSource::Header(name) => response.headers.get(name.as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned),
        CaptureSource::Json(pointer) => {
            let value: serde_json::Value = serde_json::from_str(response.body).ok()?;
            match value.pointer(pointer)? {
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        }
        CaptureSource::Regex(regex) => {
            let caps = regex.captures(response.body)?;
            caps.get(1).or_else(|| caps.get(0)).map(|m| m.as_str().to_owned())
        }
    }
}

/// The source in words, for a failure message.
pub fn describe(source: &CaptureSource) -> String {
    match source {
        CaptureSource::Cookie(name) => format!("cookie {name}"),
        CaptureSource::FormField(name) => format!("form field {name}"),
        CaptureSource::Header(name) => format!("header {name}"),
        CaptureSource::Json(pointer) => format!("JSON value at {pointer}"),
        CaptureSource::Regex(regex) => format!("a match of /{}/", regex.as_str()),
    }
}
