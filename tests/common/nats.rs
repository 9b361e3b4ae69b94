//! Private nats-server instances, so a test can stop and restart NATS without
//! disturbing the shared server or another test.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

/// A nats-server with JetStream; killed (and its storage removed) on drop.
pub struct NatsServer {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
    pub auth: Auth,
}

/// What a [`NatsServer`] asks of its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `--user` and `--pass`.
    User {
        user: String,
        password: String,
    },
    /// `--auth`.
    Token(String),
}

impl NatsServer {
    pub async fn start(port: u16) -> Self {
        Self::start_with(port, Auth::None).await
    }

    /// A server that refuses clients without these credentials.
    pub async fn start_with(port: u16, auth: Auth) -> Self {
        let dir = std::env::temp_dir().join(format!("vulnledger-nats-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            child: None,
            dir,
            port,
            auth,
        };
        server.restart().await;
        server
    }

    /// Kills the server; its storage stays for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and storage.
    pub async fn restart(&mut self) {
        self.stop();
        let mut command = Command::new("/usr/sbin/nats-server");
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir);
        match &self.auth {
            Auth::None => {}
            Auth::User { user, password } => {
                command.args(["--user", user, "--pass", password]);
            }
            Auth::Token(token) => {
                command.args(["--auth", token]);
            }
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers().await {
            assert!(
                Instant::now() < deadline,
                "nats-server never accepted connections"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the server is up: a client connects, or (when it needs credentials)
    /// the server greets with its INFO line, without our client's say.
    async fn answers(&self) -> bool {
        if self.auth == Auth::None {
            return vulnledger::bus::connect(&self.url(), |o| o).await.is_ok();
        }
        use tokio::io::AsyncBufReadExt;
        let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut reader = tokio::io::BufReader::new(stream);
        let mut line = String::new();
        let read = reader.read_line(&mut line);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), read).await,
            Ok(Ok(_)) if line.starts_with("INFO ")
        )
    }

    /// The server's URL, with its credentials (percent-encoded) if it needs some.
    pub fn url(&self) -> String {
        match &self.auth {
            Auth::None => nats_url(self.port),
            Auth::User { user, password } => format!(
                "nats://{}:{}@127.0.0.1:{}",
                percent_encode(user),
                percent_encode(password),
                self.port
            ),
            Auth::Token(token) => {
                format!("nats://{}@127.0.0.1:{}", percent_encode(token), self.port)
            }
        }
    }

    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(vulnledger::bus::connect(&self.url(), |o| o).await.unwrap())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn nats_url(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

/// Every byte but ASCII letters and digits as `%XX`.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
