//! The shape of a cookie or token value, read once as it arrives and kept instead of the
//! value: an opaque id that points into a store on the server, or a self-contained value
//! that carries its data under a signature or encryption.
//!
//! A value refused by another replica fails for a different reason in each case: an id
//! the other replica's store does not hold (sessions kept per instance), or a signature or
//! ciphertext the other replica's keys do not open (keys not shared). The probable cause
//! follows the shape, so that the remedy a team reads first is the right one.

use serde::{Deserialize, Serialize};

/// What a value looks like, from its form alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Shape {
    /// A short random token with no structure (`PHPSESSID`, `JSESSIONID`, Django's
    /// `sessionid`): the data it stands for is on the server.
    OpaqueId,
    /// An opaque id under a signature (`s:<id>.<signature>`, express-session's
    /// `connect.sid`): the data is on the server, and the keys decide whether the id is
    /// read at all.
    SignedId,
    /// Data with a signature, in parts (a JWT, `payload.timestamp.signature`,
    /// `data--digest`, Tornado's `2|...|signature`): the keys decide.
    Signed,
    /// One long encoded blob (ASP.NET Core's data protection, `CfDJ8...`; encrypted data):
    /// most likely sealed by keys, but an id sealed by keys looks the same.
    Sealed,
    /// Nothing tells: plain text, or a token too long for an id and too short to carry
    /// sealed data.
    Unknown,
}

/// Values no longer than this, in one token, are read as ids: frameworks' ids are 16 to 32
/// random bytes, while a sealed value needs 28 bytes for its nonce and tag before any data.
const ID_MAX: usize = 44;
/// Random ids are at least this long (96 bits in base64); shorter values are data.
const ID_MIN: usize = 16;
/// Ids of one letter case (hex, lowercase alphanumerics) may be this long: sealed data is
/// encoded in mixed-case base64.
const ONE_CASE_ID_MAX: usize = 64;
/// Values at least this long, in one token, are read as sealed data: a nonce and an
/// authentication tag alone take 28 bytes, and a sealed value carries data besides.
const SEALED_MIN: usize = 80;
/// A signature's part is at least this long (a truncated SHA-1 HMAC in base64 is 27).
const SIGNATURE_MIN: usize = 20;

/// The prefix of every ASP.NET Core data-protection payload (its magic header, base64url).
const DATA_PROTECTION: &str = "CfDJ8";

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::OpaqueId => "opaque-id",
            Shape::SignedId => "signed-id",
            Shape::Signed => "signed",
            Shape::Sealed => "sealed",
            Shape::Unknown => "unknown",
        }
    }

    /// The shape of a value as it came in a `Set-Cookie` or a page: percent-decoded and
    /// unquoted first, as the app wrote it.
    pub fn of(raw: &str) -> Shape {
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let value = decoded.trim().trim_matches('"');
        if value.is_empty() {
            return Shape::Unknown;
        }
        // cookie-parser's signed cookies: a random id under the signature (express-session)
        // or data (a user name, `j:{...}`) under it.
        if let Some((signed, signature)) = value
            .strip_prefix("s:")
            .and_then(|signed| signed.rsplit_once('.'))
            && is_signature(signature)
        {
            let id = is_token(signed) && (ID_MIN..=ONE_CASE_ID_MAX).contains(&signed.len());
            return if id { Shape::SignedId } else { Shape::Signed };
        }
        if value.starts_with("eyJ")
            && value.split('.').count() == 3
            && value.split('.').all(is_token)
        {
            return Shape::Signed;
        }
        let parts: Vec<&str> = value
            .split("--")
            .flat_map(|p| p.split(['.', '|', ':']))
            .collect();
        if parts.len() > 1 {
            let signed = parts.last().is_some_and(|last| is_signature(last));
            return if signed {
                Shape::Signed
            } else {
                Shape::Unknown
            };
        }
        if !is_token(value) {
            return Shape::Unknown;
        }
        match value.len() {
            _ if value.starts_with(DATA_PROTECTION) && value.len() >= SEALED_MIN => Shape::Sealed,
            len if len <= ID_MAX || (len <= ONE_CASE_ID_MAX && one_case(value)) => Shape::OpaqueId,
            // A signature and readable data in one blob (Pyramid's signed cookie session,
            // Rack's marshalled data): data in the cookie, where an id would be random.
            _ if carries_readable_data(value) => Shape::Signed,
            len if len >= SEALED_MIN => Shape::Sealed,
            _ => Shape::Unknown,
        }
    }

    /// Whether the value carries data only keys open: refused elsewhere, it points to keys.
    pub fn is_self_contained(self) -> bool {
        matches!(self, Shape::Signed | Shape::Sealed)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Session cookies frameworks name by default, whose value is an id into a store kept on
/// the server (in the process, unless the app is given a shared one), and the framework.
pub fn session_cookie(name: &str) -> Option<&'static str> {
    Some(match name {
        "JSESSIONID" => "a servlet container's session id",
        "PHPSESSID" => "PHP's session id",
        "ASP.NET_SessionId" => "ASP.NET's session id",
        "sessionid" => "Django's session id",
        "_session_id" => "Rails' session id (a server-side store)",
        "connect.sid" => "express-session's signed session id",
        "CGISESSID" => "a CGI session id",
        _ => return None,
    })
}

/// One run of characters of base64, base64url or hex.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'='))
}

/// Readable text this long, decoded from base64, is data: random or encrypted bytes hold
/// such a run about once in ten million.
const READABLE_RUN: usize = 16;

/// Whether the token, decoded from base64 (either alphabet, padded or not), holds a run of
/// readable text.
fn carries_readable_data(token: &str) -> bool {
    use base64::Engine as _;
    let normalized: String = token
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let Ok(bytes) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(normalized) else {
        return false;
    };
    let mut run = 0;
    bytes.iter().any(|b| {
        run = if b.is_ascii_graphic() || *b == b' ' {
            run + 1
        } else {
            0
        };
        run >= READABLE_RUN
    })
}

fn one_case(s: &str) -> bool {
    !(s.bytes().any(|b| b.is_ascii_uppercase()) && s.bytes().any(|b| b.is_ascii_lowercase()))
}

fn is_signature(s: &str) -> bool {
    s.len() >= SIGNATURE_MIN && is_token(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_of_servers_that_keep_sessions_are_opaque() {
        for id in [
            "8f2b6c0e4d1a9b7c3e5f2a1d0c9b8a7e", // Django's sessionid, Rails' _session_id
            "k3j5l2m4n6b8v0c1x9z7q5w3e2",       // PHPSESSID
            "vj4x1n2p5rtqkz0yq3cdw1ab",         // ASP.NET_SessionId
            "1A2B3C4D5E6F7A8B9C0D1E2F3A4B5C6D", // Tomcat's JSESSIONID
            "5f2b6c0e4d1a9b7c3e5f2a1d0c9b8a7e5f2b6c0e4d1a9b7c3e5f2a1d0c9b8a7e", // 32 bytes in hex
            "nz3a8cp5qw2e7rt9yu1io4pa6sd0fg",   // express-session's uid
        ] {
            assert_eq!(Shape::of(id), Shape::OpaqueId, "{id}");
        }
    }

    #[test]
    fn an_express_session_id_is_a_signed_id_and_a_signed_name_is_signed_data() {
        let value = "s%3AnZ3a8cP5qW2e7rT9yU1iO4pA6sD0fG.kL3jH5gF7dS9aZ1xC3vB5nM7qW9eR2tY4uI6oP8aSd";
        assert_eq!(Shape::of(value), Shape::SignedId);
        // cookie-parser's signed cookie holding a user name, and one holding JSON.
        assert_eq!(
            Shape::of("s%3Abob.kL3jH5gF7dS9aZ1xC3vB5nM7qW9eR2tY4uI6oP8aSd"),
            Shape::Signed
        );
        assert_eq!(
            Shape::of("s%3Aj%3A%7B%22a%22%3A1%7D.kL3jH5gF7dS9aZ1xC3vB5nM7qW9eR2tY4uI6oP8aSd"),
            Shape::Signed
        );
    }

    #[test]
    fn signed_data_in_parts_is_signed() {
        for value in [
            // A JWT.
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            // Flask's session (itsdangerous), compressed and not.
            ".eJyrVkrOz0nNTVWyUkpKLkpVqgUAQjgGqA.ZxY2Kg.4Jm2s1V5nQ8tYbW3kP0rL7uXcE9",
            "eyJub3RlIjoiaGkifQ.ZxY2Kg.4Jm2s1V5nQ8tYbW3kP0rL7uXcE9",
            // Django's signing: value:timestamp:signature.
            "alice:1tQx2c:Kq3v9dR2mXo1Yb7cPz5uWn0sLe4Hf8Gt6Ja2Vk",
            // Rails' cookie store, encrypted (data--iv--tag), percent-encoded.
            "Zm9vYmFyYmF6cXV4cXV1eA%3D%3D--aXZpdml2aXZpdml2aXY%3D--dGFndGFndGFndGFndGFnMQ%3D%3D",
            // Rack's signed cookie: data--hex digest.
            "BAh7BkkiD3Nlc3Npb25faWQGOgZFVA%3D%3D--3f4e1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f",
            // Tornado's secure cookie, version 2.
            "\"2|1:0|10:1733480000|4:user|4:Ym9i|5f2b6c0e4d1a9b7c3e5f2a1d0c9b8a7e5f2b6c0e4d1a9b7c3e5f2a1d0c9b8a7e\"",
        ] {
            assert_eq!(Shape::of(value), Shape::Signed, "{value}");
        }
    }

    #[test]
    fn a_blob_that_decodes_to_readable_data_is_signed_data() {
        use base64::Engine as _;
        // Pyramid's signed cookie session: base64url(HMAC-SHA512 || JSON).
        let mut blob = vec![0x9c_u8; 64];
        blob.extend_from_slice(
            br#"[1733480000, 1733480000, {"user": "bob", "_csrft_": "5f2b6c0e"}]"#,
        );
        let cookie = base64::engine::general_purpose::URL_SAFE.encode(&blob);
        assert_eq!(Shape::of(&cookie), Shape::Signed, "{cookie}");
        // The same length of random-looking bytes is sealed.
        let sealed: Vec<u8> = (0..blob.len())
            .map(|i| (i * 151 % 251) as u8 ^ 0xa5)
            .collect();
        assert_eq!(
            Shape::of(&base64::engine::general_purpose::URL_SAFE.encode(&sealed)),
            Shape::Sealed
        );
    }

    #[test]
    fn long_blobs_are_sealed_and_data_protection_says_so_itself() {
        let protected = format!("CfDJ8{}", "Ab3_x-9Q".repeat(20));
        assert_eq!(Shape::of(&protected), Shape::Sealed);
        assert_eq!(Shape::of(&"Zq8wX2vB".repeat(12)), Shape::Sealed);
    }

    #[test]
    fn what_nothing_tells_is_unknown() {
        assert_eq!(
            Shape::of("node0abc123def456ghi789.node0"),
            Shape::Unknown,
            "Jetty's id with its worker"
        );
        assert_eq!(Shape::of("hello world"), Shape::Unknown);
        assert_eq!(Shape::of(""), Shape::Unknown);
        assert_eq!(Shape::of(&"a".repeat(70)), Shape::Unknown);
        // Mixed case and longer than an id: a short sealed value looks like this too.
        assert_eq!(
            Shape::of("AAAAAQb3xK9mQ2vR7tY1uI5oP3aS8dF0gH2jK4lZ6xC8vB0nM1qW3eR5tY7uI9o"),
            Shape::Unknown
        );
        assert_eq!(Shape::of("a.b"), Shape::Unknown);
    }

    #[test]
    fn frameworks_session_cookies_are_known_by_name() {
        for name in [
            "JSESSIONID",
            "PHPSESSID",
            "ASP.NET_SessionId",
            "sessionid",
            "_session_id",
            "connect.sid",
        ] {
            assert!(session_cookie(name).is_some(), "{name}");
        }
        assert_eq!(
            session_cookie("session"),
            None,
            "Flask's is a signed cookie, decided by its value"
        );
    }
}
