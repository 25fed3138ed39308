//! The sink's mail side: an SMTP server on one replica's own port, which accepts every
//! message (and any credentials, which it forgets) and keeps it as the replica's delivery.
//! mailin runs the protocol; this file does the I/O, with a bound on every line, message
//! and pause, and mail-parser decodes the message as a mail client would.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use mailin::{Action, AuthMechanism, Handler, Response, SessionBuilder, response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{Inbox, MAX_BODY};
use crate::history::delivered::Delivered;
use crate::vocab::replica::ReplicaId;

/// The longest line read: far beyond SMTP's 1000 characters, far below a memory problem.
const MAX_LINE: u64 = 64 * 1024;
/// How long a client may stay silent in the middle of a session.
const IDLE_WITHIN: Duration = Duration::from_secs(10);

pub(super) async fn serve(listener: TcpListener, replica: ReplicaId, inbox: Inbox) {
    // Aborting this task drops the set, which ends every session with it.
    let mut sessions = JoinSet::new();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while sessions.try_join_next().is_some() {}
        let inbox = inbox.clone();
        sessions.spawn(async move {
            let _ = session(stream, peer.ip(), replica, inbox).await;
        });
    }
}

/// A login the sink gives a client that sends without one: mailin offers AUTH only as a
/// requirement, and an app pointed at a mail catcher may well not log in.
const ANONYMOUS_LOGIN: &[u8] = b"AUTH PLAIN AHNpbmsAc2luaw==\r\n";

async fn session(stream: TcpStream, peer: IpAddr, replica: ReplicaId, inbox: Inbox) -> std::io::Result<()> {
    let mut builder = SessionBuilder::new("replicheck-sink");
    // Apps configured with a user and password log in before sending; any will do.
    builder.enable_auth(AuthMechanism::Plain).enable_auth(AuthMechanism::Login).insecure_enable_plaintext_auth();
    let mut smtp = builder.build(peer, Receiving::new(replica, inbox.clone()));
    let mut logged_in = false;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(&smtp.greeting().buffer()?).await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut read).take(MAX_LINE);
        let n = match tokio::time::timeout(IDLE_WITHIN, limited.read_until(b'\n', &mut line)).await {
            Ok(read) => read?,
            Err(_) => 0,
        };
        if n == 0 || !line.ends_with(b"\n") {
            // Gone, silent too long, or a line beyond any client's.
            return Ok(());
        }
        // Some clients end lines with a bare LF; SMTP's end of data is CRLF.CRLF.
        if !line.ends_with(b"\r\n") {
            line.pop();
            line.extend_from_slice(b"\r\n");
        }
        let command = line.get(..10).unwrap_or(&line).to_ascii_uppercase();
        if command.starts_with(b"HELO") {
            // Plain SMTP has no AUTH: a session that does not require it.
            smtp = SessionBuilder::new("replicheck-sink").build(peer, Receiving::new(replica, inbox.clone()));
            logged_in = true;
        } else if command.starts_with(b"MAIL FROM") && !logged_in {
            logged_in = smtp.process(ANONYMOUS_LOGIN).code == 235;
        }
        let answer = smtp.process(&line);
        if command.starts_with(b"AUTH") && answer.code == 235 {
            logged_in = true;
        }
        match answer.action {
            Action::NoReply => {}
            Action::Close => {
                write.write_all(&answer.buffer()?).await?;
                return Ok(());
            }
            Action::Reply | Action::UpgradeTls => write.write_all(&answer.buffer()?).await?,
        }
    }
}

/// One session's messages, kept as they end.
struct Receiving {
    replica: ReplicaId,
    inbox: Inbox,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
    too_large: bool,
}

impl Receiving {
    fn new(replica: ReplicaId, inbox: Inbox) -> Self {
        Self { replica, inbox, from: String::new(), to: Vec::new(), data: Vec::new(), too_large: false }
    }
}

impl Handler for Receiving {
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.to_owned();
        self.to = to.to_vec();
        self.data.clear();
        self.too_large = false;
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.data.len() + buf.len() > MAX_BODY {
            self.too_large = true;
        } else {
            self.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if self.too_large {
            self.inbox.refuse(self.replica, &format!("a message over {MAX_BODY} bytes"));
            return response::NO_STORAGE;
        }
        let delivered = read_message(&self.from, &self.to, &self.data);
        match self.inbox.arrive(self.replica, delivered) {
            Ok(()) => response::OK,
            Err(_) => response::OUT_OF_SPACE,
        }
    }

    fn auth_plain(&mut self, _authorization_id: &str, _authentication_id: &str, _password: &str) -> Response {
        response::AUTH_OK
    }

    fn auth_login(&mut self, _username: &str, _password: &str) -> Response {
        response::AUTH_OK
    }
}

/// The message as a mail client shows it: subject and text decoded, the text part (or the
/// HTML one when it has no text), and its headers by name.
fn read_message(from: &str, to: &[String], data: &[u8]) -> Delivered {
    let parsed = mail_parser::MessageParser::default().parse(data);
    let Some(message) = parsed else {
        return Delivered::Mail {
            from: from.to_owned(),
            to: to.to_vec(),
            subject: String::new(),
            headers: BTreeMap::new(),
            body: String::from_utf8_lossy(data).into_owned(),
        };
    };
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in message.headers_raw() {
        let value = value.trim().to_owned();
        headers.entry(name.to_ascii_lowercase()).and_modify(|v| *v = format!("{v}, {value}")).or_insert(value);
    }
    let body = message.body_text(0).or_else(|| message.body_html(0)).map(|b| b.into_owned()).unwrap_or_default();
    Delivered::Mail {
        from: from.to_owned(),
        to: to.to_vec(),
        subject: message.subject().unwrap_or_default().to_owned(),
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Sink;
    use tokio::time::Instant;

    /// A client that speaks SMTP line by line, as an app's mailer does.
    async fn send(port: u16, lines: &[&str]) -> Vec<String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut answers = Vec::new();
        let mut answer = String::new();
        read.read_line(&mut answer).await.unwrap();
        answers.push(answer.trim_end().to_owned());
        let mut in_data = false;
        for line in lines {
            write.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
            // The message's lines get no answer until its final dot.
            if in_data && *line != "." {
                continue;
            }
            in_data = *line == "DATA";
            loop {
                answer.clear();
                read.read_line(&mut answer).await.unwrap();
                answers.push(answer.trim_end().to_owned());
                if answer.len() < 4 || answer.as_bytes()[3] != b'-' {
                    break;
                }
            }
        }
        answers
    }

    #[tokio::test]
    async fn a_mail_is_kept_decoded_as_its_replicas_delivery() {
        let origin = Instant::now();
        let sink = Sink::start(IpAddr::from([127, 0, 0, 1])).await.unwrap();
        let port = sink.smtp_port(ReplicaId(1)).unwrap();
        assert_eq!(sink.smtp_port(ReplicaId(1)).unwrap(), port, "a replica keeps its port");
        assert_ne!(sink.smtp_port(ReplicaId(0)).unwrap(), port);
        let answers = send(
            port,
            &[
                "EHLO app",
                "AUTH PLAIN AGFsaWNlAHMzY3JldA==",
                "MAIL FROM:<shop@example.com>",
                "RCPT TO:<alice@example.com>",
                "DATA",
                "Subject: =?utf-8?q?Your_order_=E2=9C=93?=",
                "To: alice@example.com",
                "Content-Transfer-Encoding: quoted-printable",
                "",
                "Order ord-42 is on its way=",
                "..a dotted line",
                ".",
                "QUIT",
            ],
        )
        .await;
        assert!(answers.iter().any(|a| a.starts_with("235")), "{answers:?}");
        assert!(answers.iter().any(|a| a.starts_with("250 OK")), "{answers:?}");
        let got = sink.inbox().since(origin, origin);
        assert_eq!(got.kept.len(), 1, "{got:?}");
        assert_eq!(got.kept[0].replica, ReplicaId(1));
        let Delivered::Mail { from, to, subject, body, .. } = &got.kept[0].what else { panic!("a mail") };
        assert_eq!((from.as_str(), to.as_slice()), ("shop@example.com", &["alice@example.com".to_owned()][..]));
        assert_eq!(subject, "Your order ✓");
        assert!(body.contains("Order ord-42 is on its way.a dotted line"), "{body:?}");
        assert!(!serde_json::to_string(&got).unwrap().contains("s3cret"));
    }

    #[tokio::test]
    async fn a_client_that_does_not_log_in_sends_all_the_same_with_ehlo_or_helo() {
        let origin = Instant::now();
        let sink = Sink::start(IpAddr::from([127, 0, 0, 1])).await.unwrap();
        let port = sink.smtp_port(ReplicaId(0)).unwrap();
        for hello in ["EHLO app", "HELO app"] {
            let answers = send(port, &[hello, "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA", &format!("Subject: after {hello}"), "", "hi", ".", "QUIT"]).await;
            assert!(answers.iter().all(|a| !a.starts_with('5')), "{hello}: {answers:?}");
        }
        let subjects: Vec<String> = sink.inbox().since(origin, origin).kept.iter().map(|d| d.what.label()).collect();
        assert_eq!(subjects, ["mail to b@example.com: after EHLO app", "mail to b@example.com: after HELO app"]);
    }
}
