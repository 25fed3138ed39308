//! Live updates as a target file describes them (`[broadcast.NAME]`): how a user subscribes
//! (a WebSocket or an event stream), how a message is published (a request, or a message
//! on a socket), and what each subscriber must receive, within how long.

use std::time::Duration;

use serde::Deserialize;

use crate::file::{FileError, SourceFile};
use crate::step::{RequestSpec, Template};

/// How a subscriber is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    WebSocket,
    /// `text/event-stream`, read as the replica writes it.
    Events,
}

/// A broadcast flow as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BroadcastFile {
    subscribe: toml::Spanned<SubscribeFile>,
    /// A first message on the socket, such as a join.
    join: Option<toml::Spanned<Template>>,
    publish: Option<toml::Spanned<RequestSpec>>,
    /// A message on a socket of the publishing replica, instead of a request.
    send: Option<toml::Spanned<Template>>,
    receive: Option<toml::Spanned<Template>>,
    #[serde(default = "default_within", with = "humantime_serde")]
    within: Duration,
}

fn default_within() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeFile {
    ws: Option<String>,
    sse: Option<String>,
}

/// A message published through one replica, which every subscriber should receive,
/// whatever replica holds its connection.
#[derive(Debug, Clone)]
pub struct Broadcast {
    pub name: String,
    pub transport: Transport,
    /// The subscription's path and query.
    pub path: String,
    pub join: Option<Template>,
    pub publish: Publish,
    /// What a subscriber must receive, with `{value}`.
    pub receive: Template,
    pub within: Duration,
}

#[derive(Debug, Clone)]
pub enum Publish {
    /// A request, with `{value}`.
    Request(Box<RequestSpec>),
    /// A text message on a WebSocket of the publishing replica, with `{value}`.
    Send(Template),
}

impl BroadcastFile {
    pub(super) fn resolve(self, name: &str, file: &SourceFile) -> Result<Broadcast, FileError> {
        let table = format!("broadcast.{name}");
        let span = self.subscribe.span();
        let (transport, path) = match self.subscribe.into_inner() {
            SubscribeFile { ws: Some(path), sse: None } => (Transport::WebSocket, path),
            SubscribeFile { ws: None, sse: Some(path) } => (Transport::Events, path),
            _ => {
                return Err(file
                    .error_at(span, format!("[{table}] subscribe needs one of `ws` (a WebSocket) or `sse` (an event stream)"))
                    .with_help(Some("for example subscribe = { ws = \"/hub\" } or subscribe = { sse = \"/events\" }".into())));
            }
        };
        if !path.starts_with('/') {
            return Err(file.error_at(span, format!("[{table}] subscribe: `{path}` is not a path")).with_help(Some("a path on the app, such as \"/hub\"".into())));
        }
        let only_value = |template: &Template, what: &str| -> Result<(), FileError> {
            template.check_vars(|name| name == "value").map_err(|unknown| {
                file.error_at(template.span(), format!("unknown placeholder `{{{unknown}}}` in [{table}] {what}"))
                    .with_help(Some("the only placeholder here is {value}, a value of its own per message".into()))
            })
        };
        let sends_value = |templates: &[&Template]| templates.iter().any(|t| t.vars().any(|name| name == "value"));
        if let Some(join) = &self.join {
            if transport == Transport::Events {
                return Err(file.error_at(join.span(), format!("[{table}] join is a message on a WebSocket; an event stream has no way back")));
            }
            only_value(join.get_ref(), "join")?;
        }
        let publish = match (self.publish, self.send) {
            (Some(request), None) => {
                let span = request.span();
                let request = request.into_inner();
                if request.url.is_none() {
                    return Err(file.error_at(span, format!("[{table}] publish needs `url`")));
                }
                let templates: Vec<&Template> = request.url.iter().chain(request.headers.values()).chain(request.form.values()).chain(&request.body).collect();
                for template in &templates {
                    only_value(template, "publish")?;
                }
                if !sends_value(&templates) {
                    return Err(file
                        .error_at(span, format!("[{table}] publish never sends `{{value}}`"))
                        .with_help(Some("each message carries a value of its own, by which its subscribers are seen to receive it".into())));
                }
                Publish::Request(Box::new(request))
            }
            (None, Some(send)) => {
                if transport == Transport::Events {
                    return Err(file.error_at(send.span(), format!("[{table}] send is a message on a WebSocket; publish with a request instead")));
                }
                only_value(send.get_ref(), "send")?;
                if !sends_value(&[send.get_ref()]) {
                    return Err(file.error_at(send.span(), format!("[{table}] send never sends `{{value}}`")));
                }
                Publish::Send(send.into_inner())
            }
            (Some(request), Some(_)) => return Err(file.error_at(request.span(), format!("[{table}] has both `publish` and `send`: one way to publish"))),
            (None, None) => {
                return Err(file
                    .error_at(file.table_span(&table), format!("[{table}] needs `publish` (a request) or `send` (a message on a socket)"))
                    .with_help(Some("for example publish = { method = \"POST\", url = \"/messages\", form = { text = \"{value}\" } }".into())));
            }
        };
        let receive = match self.receive {
            Some(receive) => {
                only_value(receive.get_ref(), "receive")?;
                if !sends_value(&[receive.get_ref()]) {
                    return Err(file.error_at(receive.span(), format!("[{table}] receive never names `{{value}}`: every message would look alike")));
                }
                receive.into_inner()
            }
            None => Template::parse("{value}").expect("static template"),
        };
        super::background::bounded(self.within, &table, "within", "no message arrives in no time", file)?;
        Ok(Broadcast { name: name.to_owned(), transport, path, join: self.join.map(toml::Spanned::into_inner), publish, receive, within: self.within })
    }
}
