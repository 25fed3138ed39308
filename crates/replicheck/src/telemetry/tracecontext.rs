//! W3C Trace Context: the `traceparent` the balancer puts on every request it forwards,
//! as a proxy with tracing does, so that the replicas' spans can be checked to continue it.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A trace and the span that is the parent of whatever the next hop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceParent {
    /// A new sampled trace: the balancer starts one for a request that carries none.
    pub fn start() -> TraceParent {
        TraceParent {
            trace_id: nonzero(rand::random()),
            span_id: nonzero(rand::random()),
            sampled: true,
        }
    }

    /// The balancer's own span in the caller's trace: same trace and sampling, a new span.
    pub fn child(self) -> TraceParent {
        TraceParent { span_id: nonzero(rand::random()), ..self }
    }

    /// Reads a `traceparent` value; `None` for anything the specification says to ignore.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        // version-traceid-parentid-flags; a later version may append fields after a dash.
        if value.len() < 55 || (value.len() > 55 && value[55] != b'-') {
            return None;
        }
        let field = |range: std::ops::Range<usize>| std::str::from_utf8(&value[range]).ok();
        let version = u8::from_str_radix(field(0..2)?, 16).ok()?;
        if version == 0xff || (version == 0 && value.len() != 55) || [2, 35, 52].iter().any(|&i| value[i] != b'-') {
            return None;
        }
        let hex = |range: std::ops::Range<usize>| field(range).filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let trace_id = u128::from_str_radix(hex(3..35)?, 16).ok().filter(|&id| id != 0)?;
        let span_id = u64::from_str_radix(hex(36..52)?, 16).ok().filter(|&id| id != 0)?;
        let flags = u8::from_str_radix(hex(53..55)?, 16).ok()?;
        Some(TraceParent { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    pub fn trace_hex(self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// `00-<trace>-<span>-<flags>`, written without a formatter: the balancer adds one to
    /// every request.
    pub fn header(self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
        for (i, at) in (3..35).rev().enumerate() {
            value[at] = HEX[(self.trace_id >> (4 * i)) as usize & 0xf];
        }
        for (i, at) in (36..52).rev().enumerate() {
            value[at] = HEX[(self.span_id >> (4 * i)) as usize & 0xf];
        }
        value[54] = if self.sampled { b'1' } else { b'0' };
        HeaderValue::from_bytes(&value).expect("hex digits and dashes are a valid header value")
    }
}

/// Makes the balancer a hop of the request's trace: a request that carries a valid
/// `traceparent` gets the balancer's span as its parent in the same trace; any other
/// gets a new sampled trace. `tracestate` is left as the caller sent it.
pub fn continue_trace(headers: &mut HeaderMap) {
    let parent = headers.get(&TRACEPARENT).and_then(|value| TraceParent::parse(value.as_bytes()));
    let ours = parent.map_or_else(TraceParent::start, TraceParent::child);
    headers.insert(TRACEPARENT, ours.header());
}

fn nonzero<T: Default + PartialEq + From<u8>>(id: T) -> T {
    if id == T::default() { T::from(1) } else { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_in_its_trace_with_a_new_parent() {
        let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(sent));
        continue_trace(&mut headers);
        let ours = TraceParent::parse(headers[&TRACEPARENT].as_bytes()).unwrap();
        assert_eq!(ours.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(ours.span_id, 0x00f0_67aa_0ba9_02b7);
        assert!(ours.sampled);
    }

    #[test]
    fn a_missing_or_invalid_traceparent_starts_a_sampled_trace() {
        for sent in [
            None,
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
            Some("garbage"),
        ] {
            let mut headers = HeaderMap::new();
            if let Some(sent) = sent {
                headers.insert(TRACEPARENT, HeaderValue::from_static(sent));
            }
            continue_trace(&mut headers);
            let ours = TraceParent::parse(headers[&TRACEPARENT].as_bytes()).unwrap();
            assert!(ours.sampled, "{sent:?}");
            assert_ne!(ours.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736", "{sent:?}");
        }
    }

    #[test]
    fn the_header_is_written_as_the_specification_shows_it() {
        let parent = TraceParent { trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736, span_id: 0x00f0_67aa_0ba9_02b7, sampled: true };
        assert_eq!(parent.header(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(TraceParent { sampled: false, ..parent }.header(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields_and_unsampled_stays_unsampled() {
        let later = TraceParent::parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more").unwrap();
        assert!(!later.sampled);
        assert_eq!(later.child().header().to_str().unwrap().len(), 55);
        assert!(later.child().header().to_str().unwrap().ends_with("-00"));
    }
}
