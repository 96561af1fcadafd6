//! A small but real SMTP server on 127.0.0.1 for tests: it speaks the protocol over
//! TCP (EHLO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) and keeps every
//! message it accepted, so tests can parse what a client really delivered.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

type Refusals = Arc<Mutex<Vec<(String, String)>>>;

fn replies(refused: &[(&str, &str)]) -> Vec<(String, String)> {
    refused
        .iter()
        .map(|(a, reply)| (a.to_ascii_lowercase(), format!("{reply}\r\n")))
        .collect()
}

/// The reply set for an address, if it is one to refuse.
fn refusal(refused: &Refusals, address: &str) -> Option<String> {
    let address = address.to_ascii_lowercase();
    refused
        .lock()
        .unwrap()
        .iter()
        .find(|(a, _)| *a == address)
        .map(|(_, reply)| reply.clone())
}

pub struct SmtpServer {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    refused: Refusals,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    /// Starts on a free port.
    pub async fn start() -> SmtpServer {
        Self::start_on(0).await
    }

    /// Starts on a given port (to bring a server "back up" where a client expects it).
    pub async fn start_on(port: u16) -> SmtpServer {
        Self::start_refusing(port, &[]).await
    }

    /// Starts on a given port (0: any free one) and answers RCPT (or MAIL FROM) for each
    /// listed address with the given reply instead of 250, e.g. `("gone@x.test", "550
    /// 5.1.1 no such user")` for a mailbox that no longer exists, a 4xx for one that is
    /// busy, or the sender's address with "550 5.7.1 relaying denied".
    pub async fn start_refusing(port: u16, refused: &[(&str, &str)]) -> SmtpServer {
        let refused = Arc::new(Mutex::new(replies(refused)));
        let answers = refused.clone();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind SMTP");
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                let refused = answers.clone();
                tokio::spawn(async move {
                    let _ = session(sock, store, refused).await;
                });
            }
        });
        SmtpServer {
            port,
            received,
            refused,
            task,
        }
    }

    /// Changes the refusals for the sessions that start from now on.
    pub fn refuse(&self, refused: &[(&str, &str)]) {
        *self.refused.lock().unwrap() = replies(refused);
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn session(
    sock: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Received>>>,
    refused: Refusals,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 localhost test SMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-localhost\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")
                .await?;
        } else if upper.starts_with("HELO") {
            w.write_all(b"250 localhost\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..]
                .trim()
                .trim_matches(['<', '>'])
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(['<', '>'])
                .to_string();
            to.clear();
            match refusal(&refused, &from) {
                Some(reply) => w.write_all(reply.as_bytes()).await?,
                None => w.write_all(b"250 OK\r\n").await?,
            }
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = cmd[8..].trim().trim_matches(['<', '>']).to_string();
            if let Some(reply) = refusal(&refused, &rcpt) {
                w.write_all(reply.as_bytes()).await?;
            } else {
                to.push(rcpt);
                w.write_all(b"250 OK\r\n").await?;
            }
        } else if upper == "DATA" && to.is_empty() {
            w.write_all(b"554 no valid recipients\r\n").await?;
        } else if upper == "DATA" {
            w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let l = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(l);
            }
            store.lock().unwrap().push(Received {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            w.write_all(b"250 OK queued\r\n").await?;
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 OK\r\n").await?;
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"502 not implemented\r\n").await?;
        }
    }
}
