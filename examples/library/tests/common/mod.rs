//! What both tests say of the demo the same way: its readiness and its login flow, the
//! tables of a target file after `[start]`.

pub const HEALTH_AND_LOGIN: &str = r#"
[health]
ready = "/healthz/ready"
[login]
form = "/login"
username = "alice"
password = "wonderland"
protected = "/account"
accepted = { status = 200, body_contains = "Signed in as alice" }
rejected = { location = "/login" }
"#;
