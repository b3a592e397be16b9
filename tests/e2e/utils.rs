//! Starting and stopping the real daemon, and talking to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-5b1d";

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/samples/releases")
}

pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(samples().join(name)).unwrap()
}

pub fn siar_bin() -> &'static str {
    env!("CARGO_BIN_EXE_siar")
}

/// A running `siar serve` in its own directory. Dropping it kills the process.
pub struct Daemon {
    child: Option<Child>,
    pub url: String,
    pub dir: PathBuf,
    pub stderr: Arc<Mutex<String>>,
    config: Option<PathBuf>,
}

impl Daemon {
    /// Starts siar in `dir` (store `dir/data`, inbox `dir/inbox`), with a fast drop-folder scan.
    pub fn start(dir: &Path) -> Daemon {
        Self::start_with(dir, None, &[])
    }

    pub fn start_with(dir: &Path, config: Option<&Path>, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(siar_bin());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("serve")
            .current_dir(dir)
            .env_remove("SIAR_CONFIG")
            .env_remove("SIAR_URL")
            .env("SIAR_API_TOKEN", TOKEN)
            .env("SIAR_SERVER_LISTEN", "127.0.0.1:0")
            .env("SIAR_STORE_PATH", dir.join("data"))
            .env("SIAR_INGEST_INBOX", dir.join("inbox"))
            .env("SIAR_INGEST_SCAN_INTERVAL_MS", "100")
            .env("SIAR_INGEST_SETTLE_MS", "300")
            .env("SIAR_LOG", "info,sled=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start siar");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("siar did not start:\n{}", stderr.lock().unwrap());
            }
        };
        Daemon {
            child: Some(child),
            url,
            dir: dir.to_owned(),
            stderr,
            config: config.map(Path::to_owned),
        }
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait; returns the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.signal("-TERM")
    }

    /// Sends `signal` (e.g. `-INT`), then waits; returns the exit status.
    pub fn signal(mut self, signal: &str) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let st = Command::new("kill")
            .arg(signal)
            .arg(c.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!("siar did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's process id (the same across a SIGHUP restart in place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status once the process has ended by itself (polled for up to `secs`).
    pub fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` without waiting for anything.
    pub fn send_signal(&self, signal: &str) {
        let st = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// The daemon's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn client(&self) -> Api {
        Api {
            base: self.url.clone(),
            http: reqwest::Client::new(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    pub async fn post_text(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let r = self
            .post("/api/v1/releases")
            .header("Content-Type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.get(path).send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A distinct, valid Kalsel release.
pub fn release_text(n: usize) -> String {
    format!(
        "Rilis Uji Nomor {n}\n\nBANJARBARU – Pemerintah Provinsi Kalimantan Selatan menggelar kegiatan uji ke-{n}, Rabu (1/9).\n\n“Kegiatan ini penting,” ujar Kepala Dinas.\n\nKegiatan berlangsung lancar. (ASC/RH)\n"
    )
}

/// A real SMTP server this project did not write (Python's aiosmtpd, `tests/smtp/recorder.py`)
/// that records every message it accepts. Dropping it stops the process.
pub struct SmtpRecorder {
    child: Child,
    pub port: u16,
    pub out: PathBuf,
    pub faults: PathBuf,
}

/// One message the recorder accepted.
#[derive(Clone, Debug)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The Message-ID header (recorded even when the data is not).
    pub message_id: String,
    pub data: Vec<u8>,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a parseable message")
    }

    pub fn header(&self, name: &str) -> String {
        let m = self.parsed();
        // Unfolded (RFC 5322 §2.2.3): a long header may continue on indented lines.
        m.header_raw(name)
            .unwrap_or("")
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn subject(&self) -> String {
        self.parsed().subject().unwrap_or("").to_owned()
    }

    pub fn text(&self) -> String {
        self.parsed()
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default()
    }
}

impl SmtpRecorder {
    /// Starts on a free port, recording into `dir/name.jsonl`.
    pub fn start(dir: &Path, name: &str) -> SmtpRecorder {
        Self::start_on(dir, name, 0)
    }

    pub fn start_on(dir: &Path, name: &str, port: u16) -> SmtpRecorder {
        Self::spawn(dir, name, port, true, false)
    }

    /// Offers PIPELINING: siar sends MAIL, RCPT and DATA in one write.
    pub fn start_pipelining(dir: &Path, name: &str, port: u16) -> SmtpRecorder {
        Self::spawn(dir, name, port, true, true)
    }

    /// Records envelopes only (not the messages): for volume tests.
    pub fn start_envelopes_only(dir: &Path, name: &str) -> SmtpRecorder {
        Self::spawn(dir, name, 0, false, true)
    }

    fn spawn(dir: &Path, name: &str, port: u16, keep_data: bool, pipelining: bool) -> SmtpRecorder {
        let out = dir.join(format!("{name}.jsonl"));
        let faults = dir.join(format!("{name}-faults.json"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/smtp/recorder.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&out)
            .arg(&faults)
            .arg(port.to_string())
            .env("RECORD_DATA", if keep_data { "1" } else { "0" })
            .env("PIPELINING", if pipelining { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 tests/smtp/recorder.py (is aiosmtpd installed? scripts/test installs it)");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP recorder did not start: {line:?}"));
        SmtpRecorder {
            child,
            port,
            out,
            faults,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    pub fn set_faults(&self, json: serde_json::Value) {
        std::fs::write(&self.faults, json.to_string()).unwrap();
    }

    pub fn messages(&self) -> Vec<Received> {
        use base64::Engine as _;
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter(|l| l.ends_with('}'))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                Received {
                    from: v["from"].as_str().unwrap_or("").to_owned(),
                    to: v["to"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_owned())
                        .collect(),
                    message_id: v["message_id"].as_str().unwrap_or("").to_owned(),
                    data: base64::engine::general_purpose::STANDARD
                        .decode(v["data"].as_str().unwrap())
                        .unwrap(),
                }
            })
            .collect()
    }

    /// How many messages were accepted so far.
    pub fn count(&self) -> usize {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with('}'))
            .count()
    }

    /// Messages to `address`.
    pub fn to(&self, address: &str) -> Vec<Received> {
        self.messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address)))
            .collect()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpRecorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one series (name and labels, e.g. `siar_queue_depth{channel="list"}`) in
/// `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Serves `app` on a free port of 127.0.0.1 (for the test's lifetime); its base URL.
pub async fn serve_local(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// A fresh 2048-bit RSA key (PKCS#1 PEM) made by openssl, for DKIM.
pub fn dkim_key(dir: &Path) -> PathBuf {
    let key = dir.join("dkim.pem");
    let ok = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl genrsa");
    key
}

/// The path of the first link in `text` to `{base}/{kind}/…` (e.g. a confirmation link).
pub fn link_under(text: &str, base: &str, kind: &str) -> String {
    let start = text
        .find(&format!("{base}/{kind}/"))
        .unwrap_or_else(|| panic!("no {kind} link in:\n{text}"));
    let rest = &text[start + base.len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '"')
        .unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// Runs the `siar` command line in `dir` against the daemon at `url`, with the token:
/// (success, stdout, stderr).
pub fn run_cli(dir: &Path, url: &str, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new(siar_bin())
        .args(args)
        .current_dir(dir)
        .env("SIAR_URL", url)
        .env("SIAR_API_TOKEN", TOKEN)
        .env_remove("SIAR_CONFIG")
        .env_remove("SIAR_STORE_PATH")
        .output()
        .unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
