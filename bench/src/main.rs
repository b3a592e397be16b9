//! siar's benchmark harness: each benchmark runs siar and a reference side by side in one run
//! and prints one table with medians over rounds and the ratio.
//!
//! ```text
//! scripts/bench                    # builds release binaries, runs every benchmark
//! siar-bench [BENCH...] [--seconds S] [--rounds R] [--clients C]
//! ```
//! Benchmarks:
//! - `ingest` — durable releases per second through `POST /api/v1/releases` with C concurrent
//!   clients, beside a raw sled insert+flush loop at the same concurrency.
//! - `feeds` — the RSS feed of 30 releases served by siar and by nginx (the identical bytes
//!   and headers, from a file), both loaded by `wrk` with C connections, for 200s and for 304s
//!   (`If-None-Match`). Needs `wrk` and `nginx` (Debian packages; scripts/bench installs them).
//! - `webhooks` — 1,000 releases published at one moment to 20 instant partners (20,000
//!   signed deliveries) into an nginx sink that logs each arrival; deliveries per second and
//!   publish→receipt latency, beside `wrk` posting a body of the same size to the same sink
//!   over as many connections (20). A second row sends the same deliveries with siar's
//!   webhook sender alone (its HTTP client, envelope and signatures on its threads, no store,
//!   no scheduling): the ceiling the whole daemon can reach with that sender.
//! - `mail` — a list of 100,000 (imported with `siar subscribers import`, timed) mailed one
//!   release through Postfix's `smtp-sink`, beside `smtp-source` sending as many messages of
//!   the same size over as many sessions (16) to another `smtp-sink`; messages per second
//!   and siar's peak RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;

struct Options {
    seconds: u64,
    rounds: usize,
    clients: usize,
    benches: Vec<String>,
}

/// One measured run: completed operations, wall time, latency histogram (µs).
struct Run {
    ops: usize,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

struct Row {
    name: String,
    unit: &'static str,
    siar: Vec<Run>,
    reference_name: String,
    reference: Vec<Run>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let opts = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for b in &opts.benches {
        match b.as_str() {
            "ingest" => rows.push(rt.block_on(ingest(&opts))?),
            "feeds" => rows.extend(rt.block_on(feeds(&opts))?),
            "webhooks" => rows.extend(rt.block_on(webhooks(&opts))?),
            "mail" => rows.push(rt.block_on(mail(&opts))?),
            other => bail!("unknown benchmark `{other}` (known: ingest, feeds, webhooks, mail)"),
        }
    }
    print_table(&opts, &rows);
    Ok(())
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        seconds: 5,
        rounds: 3,
        clients: 16,
        benches: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> anyhow::Result<u64> {
            args.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--seconds" => o.seconds = num("--seconds")?,
            "--rounds" => o.rounds = usize::try_from(num("--rounds")?)?,
            "--clients" => o.clients = usize::try_from(num("--clients")?)?,
            "-h" | "--help" => {
                println!(
                    "siar-bench [ingest] [feeds] [webhooks] [mail] [--seconds S] [--rounds R] [--clients C]"
                );
                std::process::exit(0);
            }
            b => o.benches.push(b.to_owned()),
        }
    }
    if o.benches.is_empty() {
        o.benches = vec![
            "ingest".into(),
            "feeds".into(),
            "webhooks".into(),
            "mail".into(),
        ];
    }
    if o.rounds == 0 || o.clients == 0 || o.seconds == 0 {
        bail!("--rounds, --clients and --seconds must be at least 1");
    }
    Ok(o)
}

fn print_table(o: &Options, rows: &[Row]) {
    println!();
    println!(
        "siar benchmarks: {} round(s) of {} s each, {} concurrent clients; medians over rounds",
        o.rounds, o.seconds, o.clients
    );
    println!(
        "{:<34} {:>12} {:>9} {:>9}   {:<32} {:>12} {:>9} {:>9}   {:>6}",
        "benchmark",
        "siar",
        "p50 ms",
        "p99 ms",
        "reference",
        "reference",
        "p50 ms",
        "p99 ms",
        "ratio"
    );
    for r in rows {
        let s_rate = median(r.siar.iter().map(Run::rate).collect());
        let r_rate = median(r.reference.iter().map(Run::rate).collect());
        println!(
            "{:<34} {:>8.0} {:<3} {:>9.2} {:>9.2}   {:<32} {:>8.0} {:<3} {:>9.2} {:>9.2}   {:>5.2}x",
            r.name,
            s_rate,
            r.unit,
            median(r.siar.iter().map(|x| x.ms(0.5)).collect()),
            median(r.siar.iter().map(|x| x.ms(0.99)).collect()),
            r.reference_name,
            r_rate,
            r.unit,
            median(r.reference.iter().map(|x| x.ms(0.5)).collect()),
            median(r.reference.iter().map(|x| x.ms(0.99)).collect()),
            // Each round runs both side by side: the median of the per-round ratios is the
            // comparison least disturbed by a noisy neighbour.
            median(r.siar.iter().zip(&r.reference).map(|(a, b)| a.rate() / b.rate()).collect())
        );
    }
    for r in rows {
        let rates = |v: &[Run]| {
            v.iter()
                .map(|x| format!("{:.0}", x.rate()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  {}: siar per round [{}], reference per round [{}]",
            r.name,
            rates(&r.siar),
            rates(&r.reference)
        );
    }
}

/// A distinct, realistic release: the KPU sample with a numbered title.
fn release(n: usize) -> String {
    format!(
        "Rilis Benchmark Nomor {n}\n\nSuasana pertemuan\n\nBANJARBARU – Komisi Pemilihan Umum (KPU) Kalimantan Selatan mendatangi Dinas Komunikasi dan Informatika Provinsi Kalimantan Selatan, Rabu (1/9).\n\n\
         Kunjungan ini dipimpin oleh Komisioner KPU Kalsel, Edy Ariansyah dan disambut oleh Plt. Sekretaris Diskominfo Kalsel, Jajang Markoni.\n\n\
         “Langkah-langkah yang dilakukan, termasuk hari ini. Kami ingin menjalin kerjasama untuk diseminasi informasi,” jelasnya.\n\n\
         Penyebaran informasi yang baik dan secara luas di masyarakat menurut Edy, juga menjadi poin penting lainnya dalam pertemuan ini nomor {n}. (ASC/RDM/RH)\n"
    )
}

fn siar_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("siar");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p siar), or run scripts/bench",
            bin.display()
        );
    }
    Ok(bin)
}

struct Daemon {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOKEN: &str = "bench-token";

fn start_siar() -> anyhow::Result<Daemon> {
    start_siar_with(None, &[])
}

/// siar with a configuration file and extra environment.
fn start_siar_with(config: Option<&str>, env: &[(&str, &str)]) -> anyhow::Result<Daemon> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(siar_binary()?);
    if let Some(c) = config {
        let path = dir.path().join("siar.toml");
        std::fs::write(&path, c)?;
        cmd.arg("--config").arg(path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .arg("serve")
        .current_dir(dir.path())
        .env("SIAR_API_TOKEN", TOKEN)
        .env("SIAR_SERVER_LISTEN", "127.0.0.1:0")
        .env("SIAR_STORE_PATH", dir.path().join("data"))
        .env("SIAR_INGEST_INBOX", dir.path().join("inbox"))
        // SIAR_BENCH_LOG=siar::writer=debug shows the daemon's own log, for diagnosis.
        .env(
            "SIAR_LOG",
            std::env::var("SIAR_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("SIAR_BENCH_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .context("starting siar")?;
    let out = child.stdout.take().context("siar stdout")?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .context("siar did not print its address")?
        .to_owned();
    Ok(Daemon {
        child,
        url,
        _dir: dir,
    })
}

async fn ingest(o: &Options) -> anyhow::Result<Row> {
    let mut row = Row {
        name: "ingest: durable releases/s".into(),
        unit: "/s",
        siar: Vec::new(),
        reference_name: "raw sled insert+flush loop".into(),
        reference: Vec::new(),
    };
    for round in 0..o.rounds {
        eprintln!("ingest round {}/{}: siar…", round + 1, o.rounds);
        row.siar.push(ingest_siar(o, round).await?);
        eprintln!("ingest round {}/{}: raw sled…", round + 1, o.rounds);
        row.reference.push(raw_sled(o, round)?);
    }
    Ok(row)
}

async fn ingest_siar(o: &Options, round: usize) -> anyhow::Result<Run> {
    let d = start_siar()?;
    let addr = d
        .url
        .strip_prefix("http://")
        .context("siar's address is not http://")?
        .to_owned();
    let next = Arc::new(AtomicUsize::new(round * 10_000_000));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..o.clients {
        let (addr, next, hist) = (addr.clone(), next.clone(), hist.clone());
        tasks.spawn(async move {
            // One kept-alive HTTP/1.1 connection per client, driven by hyper's bare client
            // connection: the load generator should cost as little CPU as it can, since it
            // shares the machine with the daemon it measures.
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            let mut ops = 0usize;
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let req = hyper::Request::post("/api/v1/releases")
                    .header(hyper::header::HOST, addr.as_str())
                    .header(hyper::header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                    .header(hyper::header::CONTENT_TYPE, "text/plain")
                    .body(http_body_util::Full::new(bytes::Bytes::from(release(n))))?;
                let t = Instant::now();
                send.ready().await?;
                let r = send.send_request(req).await?;
                let status = r.status();
                // Read the answer to its end, as a client does, so the connection is reused.
                http_body_util::BodyExt::collect(r.into_body()).await?;
                if status != hyper::StatusCode::CREATED {
                    bail!("siar answered {status}");
                }
                let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                hist.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .record(us.max(1))?;
                ops += 1;
            }
            anyhow::Ok(ops)
        });
    }
    let mut ops = 0;
    while let Some(r) = tasks.join_next().await {
        ops += r??;
    }
    let elapsed = start.elapsed();
    let latency = hist
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(Run {
        ops,
        elapsed,
        latency,
    })
}

/// The reference: C threads each inserting a release-sized record and flushing, as fast as
/// sled allows.
fn raw_sled(o: &Options, round: usize) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let tree = db.open_tree("releases")?;
    let next = Arc::new(AtomicUsize::new(round * 10_000_000));
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let start = Instant::now();
    let handles: Vec<_> = (0..o.clients)
        .map(|_| {
            let (db, tree, next) = (db.clone(), tree.clone(), next.clone());
            std::thread::spawn(move || -> anyhow::Result<(usize, Histogram<u64>)> {
                let mut hist = Histogram::<u64>::new(3)?;
                let mut ops = 0;
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    // About the size of siar's stored release plus its version record.
                    let value = release(n).repeat(2);
                    let t = Instant::now();
                    tree.insert(n.to_be_bytes(), value.as_bytes())?;
                    db.flush()?;
                    hist.record(
                        u64::try_from(t.elapsed().as_micros())
                            .unwrap_or(u64::MAX)
                            .max(1),
                    )?;
                    ops += 1;
                }
                Ok((ops, hist))
            })
        })
        .collect();
    let mut ops = 0;
    let mut latency = Histogram::<u64>::new(3)?;
    for h in handles {
        let (n, hist) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a sled thread panicked"))??;
        ops += n;
        latency.add(hist)?;
    }
    Ok(Run {
        ops,
        elapsed: start.elapsed(),
        latency,
    })
}

/// Parses wrk's summary: requests per second, p50 and p99 latency in microseconds.
fn parse_wrk(out: &str) -> anyhow::Result<(f64, u64, u64)> {
    let rate = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .context("wrk printed no Requests/sec")?
        .trim()
        .parse::<f64>()?;
    let p50 = wrk_latency(out, "50%")?;
    let p99 = wrk_latency(out, "99%")?;
    Ok((rate, p50, p99))
}

/// A latency line of wrk's `--latency` table, in microseconds.
fn wrk_latency(out: &str, label: &str) -> anyhow::Result<u64> {
    let v = out
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .with_context(|| format!("wrk printed no {label} latency (run with --latency)"))?
        .trim();
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse()?;
    let us = match unit {
        "us" => n,
        "ms" => n * 1000.0,
        "s" => n * 1_000_000.0,
        _ => bail!("unknown latency unit in `{v}`"),
    };
    Ok(us as u64)
}

/// One wrk run, as a [`Run`].
fn wrk(o: &Options, url: &str, headers: &[String]) -> anyhow::Result<Run> {
    wrk_with(o, url, headers, o.clients.max(2), None)
}

/// [`wrk`] with `connections` and an optional Lua script.
fn wrk_with(
    o: &Options,
    url: &str,
    headers: &[String],
    connections: usize,
    script: Option<&std::path::Path>,
) -> anyhow::Result<Run> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{}s", o.seconds),
        "--latency",
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .context("running wrk (apt-get install wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (rate, p50, p99) = parse_wrk(&text)?;
    // Two recorded values: the histogram's median reads back wrk's p50, its p99 wrk's p99.
    let mut latency = Histogram::<u64>::new(3)?;
    latency.record(p50.max(1))?;
    latency.record(p99.max(1))?;
    let secs = o.seconds as f64;
    Ok(Run {
        ops: (rate * secs) as usize,
        elapsed: Duration::from_secs_f64(secs),
        latency,
    })
}

struct Nginx {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// A fast shutdown through the master (SIGTERM), so it stops its workers too: killing the
    /// master alone leaves them running, orphaned, beside the next benchmark.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx serving `body` at /feeds/rss.xml with siar's headers, two workers like siar's two
/// runtime threads.
fn start_nginx(body: &[u8], headers: &reqwest::header::HeaderMap) -> anyhow::Result<Nginx> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    std::fs::create_dir_all(dir.path().join("feeds"))?;
    let file = dir.path().join("feeds/rss.xml");
    std::fs::write(&file, body)?;
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .replace('\'', "")
    };
    let last_modified = h("last-modified");
    let status = Command::new("touch")
        .arg("-d")
        .arg(&last_modified)
        .arg(&file)
        .status()?;
    if !status.success() {
        bail!("could not set the file time to {last_modified}");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let etag = h("etag");
    let conf = format!(
        r#"worker_processes 2;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    root {d};
    location = /feeds/rss.xml {{
      types {{ }}
      default_type "{ct}";
      etag off;
      add_header ETag '{etag}' always;
      add_header Cache-Control '{cc}' always;
      add_header Vary 'Accept-Encoding' always;
      add_header Link '{link}' always;
      if ($http_if_none_match = '{etag}') {{ return 304; }}
    }}
  }}
}}
"#,
        d = dir.path().display(),
        ct = h("content-type"),
        cc = h("cache-control"),
        link = h("link"),
    );
    run_nginx(
        dir,
        &conf,
        port,
        format!("http://127.0.0.1:{port}/feeds/rss.xml"),
    )
}

/// Starts nginx with `conf` in `dir` and waits until it accepts on `port`.
fn run_nginx(dir: tempfile::TempDir, conf: &str, port: u16, url: String) -> anyhow::Result<Nginx> {
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx (apt-get install nginx)")?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Nginx {
                child,
                url,
                _dir: dir,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "nginx did not start; see {}/error.log",
        dir.path().display()
    )
}

async fn feeds(o: &Options) -> anyhow::Result<Vec<Row>> {
    let d = start_siar()?;
    let client = reqwest::Client::builder().no_gzip().build()?;
    for n in 0..30 {
        let r = client
            .post(format!("{}/api/v1/releases", d.url))
            .bearer_auth(TOKEN)
            .header("Content-Type", "text/plain")
            .body(release(n))
            .send()
            .await?;
        if r.status() != reqwest::StatusCode::CREATED {
            bail!("siar answered {}", r.status());
        }
    }
    let url = format!("{}/feeds/rss.xml", d.url);
    let (headers, body) = loop {
        let r = client.get(&url).send().await?;
        let headers = r.headers().clone();
        let body = r.bytes().await?;
        if body
            .windows(b"<item>".len())
            .filter(|w| *w == b"<item>")
            .count()
            == 30
        {
            break (headers, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let nginx = start_nginx(&body, &headers)?;
    let etag = headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // Both servers must answer the same way before they are compared.
    for (who, u) in [("siar", &url), ("nginx", &nginx.url)] {
        let r = client.get(u.as_str()).send().await?;
        let same = r.headers().get("etag") == headers.get("etag") && r.bytes().await? == body;
        let r304 = client
            .get(u.as_str())
            .header("If-None-Match", &etag)
            .send()
            .await?;
        if !same || r304.status() != reqwest::StatusCode::NOT_MODIFIED {
            bail!("{who} does not serve the same feed and validators");
        }
    }
    eprintln!("feeds: {} bytes, ETag {etag}", body.len());
    let inm = vec![format!("If-None-Match: {etag}")];
    let mut ok = Row {
        name: "feeds: GET rss.xml 200".into(),
        unit: "/s",
        siar: Vec::new(),
        reference_name: "nginx, same bytes and headers".into(),
        reference: Vec::new(),
    };
    let mut not_modified = Row {
        name: "feeds: GET rss.xml 304".into(),
        unit: "/s",
        siar: Vec::new(),
        reference_name: "nginx, same validators".into(),
        reference: Vec::new(),
    };
    for round in 0..o.rounds {
        eprintln!("feeds round {}/{}", round + 1, o.rounds);
        // Alternate who goes first, so drift on a shared machine favours neither.
        if round % 2 == 0 {
            ok.siar.push(wrk(o, &url, &[])?);
            ok.reference.push(wrk(o, &nginx.url, &[])?);
            not_modified.siar.push(wrk(o, &url, &inm)?);
            not_modified.reference.push(wrk(o, &nginx.url, &inm)?);
        } else {
            ok.reference.push(wrk(o, &nginx.url, &[])?);
            ok.siar.push(wrk(o, &url, &[])?);
            not_modified.reference.push(wrk(o, &nginx.url, &inm)?);
            not_modified.siar.push(wrk(o, &url, &inm)?);
        }
    }
    Ok(vec![ok, not_modified])
}

/// nginx as the partners' sink: answers every POST with 204 and logs its arrival time, the
/// `webhook-id` and the body length.
struct Sink {
    /// Kept for its lifetime: dropping it stops nginx.
    _nginx: Nginx,
    log: PathBuf,
    base: String,
}

fn start_sink() -> anyhow::Result<Sink> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = dir.path().join("hooks.log");
    let conf = format!(
        r#"worker_processes 2;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format hook '$msec $http_webhook_id $content_length';
  access_log {log} hook buffer=256k flush=200ms;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  client_body_buffer_size 64k;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 204; }}
  }}
}}
"#,
        d = dir.path().display(),
        log = log.display(),
    );
    let base = format!("http://127.0.0.1:{port}");
    Ok(Sink {
        _nginx: run_nginx(dir, &conf, port, base.clone())?,
        log,
        base,
    })
}

impl Sink {
    /// Arrivals with a webhook id: (seconds since the epoch, id, body length).
    fn arrivals(&self) -> Vec<(f64, String, usize)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut parts = l.split(' ');
                let at: f64 = parts.next()?.parse().ok()?;
                let id = parts.next()?.to_owned();
                let len: usize = parts.next()?.parse().unwrap_or(0);
                (id != "-").then_some((at, id, len))
            })
            .collect()
    }
}

async fn webhooks(o: &Options) -> anyhow::Result<Vec<Row>> {
    let mut row = Row {
        name: "webhooks: deliveries/s".into(),
        unit: "/s",
        siar: Vec::new(),
        reference_name: "wrk POST, same sink, 20 conns".into(),
        reference: Vec::new(),
    };
    let mut sender = Row {
        name: "webhooks: sender alone".into(),
        unit: "/s",
        siar: Vec::new(),
        reference_name: "wrk POST, same sink, 20 conns".into(),
        reference: Vec::new(),
    };
    for round in 0..o.rounds {
        eprintln!("webhooks round {}/{}", round + 1, o.rounds);
        let sink = start_sink()?;
        let (run, body_len) = webhooks_siar(&sink).await?;
        drop(sink);
        let sink = start_sink()?;
        let alone = webhooks_sender_alone(&sink, body_len)?;
        drop(sink);
        let sink_ref = start_sink()?;
        let reference = webhooks_wrk(o, &sink_ref, body_len)?;
        drop(sink_ref);
        row.siar.push(run);
        sender.siar.push(alone);
        sender.reference.push(Run {
            ops: reference.ops,
            elapsed: reference.elapsed,
            latency: reference.latency.clone(),
        });
        row.reference.push(reference);
    }
    Ok(vec![row, sender])
}

/// The same 20,000 deliveries sent by siar's webhook sender alone, arranged as the daemon
/// arranges it: one single-threaded runtime per core, each with its share of the 20 partners,
/// one request at a time per partner, every body enveloped and signed; no store and no
/// scheduling.
fn webhooks_sender_alone(sink: &Sink, body_len: usize) -> anyhow::Result<Run> {
    use siar_fanout::webhook;
    let shards = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data = Arc::new(format!(
        "{{\"data\":\"{}\"}}",
        "x".repeat(body_len.saturating_sub(80))
    ));
    let started = Instant::now();
    let mut threads = Vec::new();
    for shard in 0..shards {
        let (base, data) = (sink.base.clone(), data.clone());
        threads.push(std::thread::spawn(
            move || -> anyhow::Result<Histogram<u64>> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let client = webhook::client(true, "siar-bench").map_err(anyhow::Error::msg)?;
                    let secrets =
                        webhook::Secret::parse_list("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                            .map_err(anyhow::Error::msg)?;
                    let mut tasks = tokio::task::JoinSet::new();
                    for p in (shard..WEBHOOK_PARTNERS).step_by(shards) {
                        let (client, secrets, data) =
                            (client.clone(), secrets.clone(), data.clone());
                        let url = webhook::target(&format!("{base}/p/p{p}"))
                            .map_err(anyhow::Error::msg)?;
                        tasks.spawn(async move {
                            let mut latency = Histogram::<u64>::new(3)?;
                            for r in 0..WEBHOOK_RELEASES {
                                let now = chrono::Utc::now();
                                let body = webhook::envelope_raw(
                                    "release.published",
                                    now,
                                    data.as_bytes(),
                                );
                                let id = format!("r{r}.v1.published");
                                let t = Instant::now();
                                let res = webhook::attempt(
                                    &client,
                                    &url,
                                    &id,
                                    &secrets,
                                    body,
                                    &[],
                                    Duration::from_secs(15),
                                    now,
                                )
                                .await;
                                if res.status != Some(204) {
                                    bail!("the sink answered {:?}: {}", res.status, res.error);
                                }
                                latency.record(t.elapsed().as_micros() as u64 + 1)?;
                            }
                            anyhow::Ok(latency)
                        });
                    }
                    let mut latency = Histogram::<u64>::new(3)?;
                    while let Some(h) = tasks.join_next().await {
                        latency.add(h??)?;
                    }
                    anyhow::Ok(latency)
                })
            },
        ));
    }
    let mut latency = Histogram::<u64>::new(3)?;
    for t in threads {
        let h = t
            .join()
            .map_err(|_| anyhow::anyhow!("a sender thread panicked"))??;
        latency.add(h)?;
    }
    Ok(Run {
        ops: WEBHOOK_PARTNERS * WEBHOOK_RELEASES,
        elapsed: started.elapsed(),
        latency,
    })
}

const WEBHOOK_PARTNERS: usize = 20;
const WEBHOOK_RELEASES: usize = 1000;

/// 1,000 releases scheduled for one moment, 20 instant partners: from that moment to the
/// last arrival. Returns the run and the mean body length siar sent.
async fn webhooks_siar(sink: &Sink) -> anyhow::Result<(Run, usize)> {
    let mut config = String::new();
    for i in 0..WEBHOOK_PARTNERS {
        config.push_str(&format!(
            "[[partners]]\nid = \"p{i}\"\nurl = \"{}/p/p{i}\"\nformat = \"ninjs\"\nsecret_env = \"SIAR_BENCH_SECRET\"\nallow_private = true\n\n",
            sink.base
        ));
    }
    let d = start_siar_with(
        Some(&config),
        &[(
            "SIAR_BENCH_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )],
    )?;
    let client = reqwest::Client::new();
    // Scheduled a little ahead, so all are stored before the moment comes.
    let publish_at = chrono_now_plus(Duration::from_secs(4));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, url, next, at) = (
            client.clone(),
            d.url.clone(),
            next.clone(),
            publish_at.0.clone(),
        );
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= WEBHOOK_RELEASES {
                    return anyhow::Ok(());
                }
                let r = client
                    .post(format!("{url}/api/v1/releases"))
                    .query(&[("publish_at", at.as_str())])
                    .bearer_auth(TOKEN)
                    .header("Content-Type", "text/plain")
                    .body(release(n))
                    .send()
                    .await?;
                if r.status() != reqwest::StatusCode::CREATED {
                    bail!("siar answered {}", r.status());
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let start = publish_at.1;
    let total = WEBHOOK_PARTNERS * WEBHOOK_RELEASES;
    let deadline = Instant::now() + Duration::from_secs(300);
    let arrivals = loop {
        let a = sink.arrivals();
        if a.len() >= total {
            break a;
        }
        if Instant::now() > deadline {
            bail!("only {} of {total} deliveries arrived", a.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut latency = Histogram::<u64>::new(3)?;
    let mut last = start;
    for (at, _, _) in &arrivals {
        last = last.max(*at);
        latency.record(((at - start).max(0.0) * 1e6) as u64 + 1)?;
    }
    let body_len = arrivals.iter().map(|a| a.2).sum::<usize>() / arrivals.len().max(1);
    let elapsed = Duration::from_secs_f64((last - start).max(0.001));
    let first = arrivals.iter().map(|a| a.0).fold(f64::MAX, f64::min);
    eprintln!(
        "webhooks: {} deliveries in {:.2} s (the first {:.2} s after publish_at), mean body {body_len} bytes",
        arrivals.len(),
        elapsed.as_secs_f64(),
        first - start
    );
    Ok((
        Run {
            ops: arrivals.len(),
            elapsed,
            latency,
        },
        body_len,
    ))
}

/// The moment `after` from now: as RFC 3339 for siar, and as seconds since the epoch.
fn chrono_now_plus(after: Duration) -> (String, f64) {
    let t = chrono::Utc::now() + chrono::Duration::from_std(after).unwrap_or_default();
    (
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        t.timestamp_millis() as f64 / 1000.0,
    )
}

/// wrk posting a JSON body of `body_len` bytes to the sink over 20 connections.
fn webhooks_wrk(o: &Options, sink: &Sink, body_len: usize) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("post.lua");
    let pad = body_len.saturating_sub(40).max(1);
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = '{{\"type\":\"release.published\",\"data\":\"' .. string.rep(\"x\", {pad}) .. '\"}}'\n"
        ),
    )?;
    wrk_with(
        o,
        &format!("{}/p/wrk", sink.base),
        &[],
        WEBHOOK_PARTNERS,
        Some(&script),
    )
}

// ---- mail ----

const MAIL_RECIPIENTS: usize = 100_000;
const MAIL_SESSIONS: usize = 16;

/// Postfix's `smtp-sink` on a free port; killed when dropped.
struct SmtpSink {
    child: Child,
    port: u16,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_sink_binary() -> anyhow::Result<&'static str> {
    for p in ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"] {
        if Path::new(p).exists() {
            return Ok(p);
        }
    }
    bail!("smtp-sink not found (Debian package postfix; scripts/bench installs it)")
}

fn start_smtp_sink(extra: &[&str]) -> anyhow::Result<SmtpSink> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new(smtp_sink_binary()?);
    cmd.args(["-u", "nobody"]).args(extra);
    let child = cmd
        .arg(format!("127.0.0.1:{port}"))
        .arg("1024")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting smtp-sink")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("smtp-sink did not start on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(SmtpSink { child, port })
}

fn mail_config(port: u16, list: &str) -> String {
    format!(
        "[smtp]\nurl = \"smtp://127.0.0.1:{port}?tls=none\"\nfrom = \"Diskominfo Kalsel <siaran@kalselprov.go.id>\"\nmax_connections = {MAIL_SESSIONS}\nrate_per_second = 1000000\n\n[[lists]]\nid = \"{list}\"\nname = \"Siaran Pers untuk Warga\"\n"
    )
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Imports `n` confirmed subscribers with the CLI; returns the seconds it took.
fn import_with_cli(d: &Daemon, list: &str, n: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("subscribers.csv");
    let mut text = String::from("email,nama\n");
    for i in 0..n {
        text.push_str(&format!("warga{i:06}@banjar.example,Warga {i}\n"));
    }
    std::fs::write(&csv, text)?;
    let started = Instant::now();
    let out = Command::new(siar_binary()?)
        .args(["--url", &d.url, "subscribers", "import"])
        .arg(&csv)
        .args(["--list", list, "--confirmed", "--source", "benchmark"])
        .env("SIAR_API_TOKEN", TOKEN)
        .stderr(Stdio::null())
        .output()
        .context("running siar subscribers import")?;
    if !out.status.success() {
        bail!(
            "siar subscribers import failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn publish_one(d: &Daemon) -> anyhow::Result<String> {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/releases", d.url))
        .bearer_auth(TOKEN)
        .header("Content-Type", "text/plain")
        .body(release(1))
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::CREATED {
        bail!("siar answered {}", r.status());
    }
    let v: serde_json::Value = r.json().await?;
    Ok(v["id"].as_str().unwrap_or_default().to_owned())
}

/// Waits until the release's mailing is done; returns its recipient counts.
async fn mailing_done(
    d: &Daemon,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        let ds: serde_json::Value = client
            .get(format!("{}/api/v1/releases/{id}/deliveries", d.url))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let list = ds["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["target"].as_str().is_some_and(|t| t.starts_with("list:")))
            .cloned();
        if let Some(l) = list {
            if l["status"] == "delivered" || l["status"] == "failed" {
                let lid = l["id"].as_str().unwrap_or_default();
                return Ok(client
                    .get(format!("{}/api/v1/deliveries/{lid}/recipients", d.url))
                    .bearer_auth(TOKEN)
                    .send()
                    .await?
                    .json()
                    .await?);
            }
        }
        if Instant::now() > deadline {
            bail!("the mailing did not finish within {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The size of the message siar sends for `release(1)`: one mail to one subscriber,
/// dumped by smtp-sink.
async fn siar_message_size() -> anyhow::Result<usize> {
    let dump = tempfile::tempdir()?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dump.path(), std::fs::Permissions::from_mode(0o777))?;
    }
    let template = format!("{}/m", dump.path().display());
    let sink = start_smtp_sink(&["-d", &template])?;
    let d = start_siar_with(Some(&mail_config(sink.port, "contoh")), &[])?;
    import_with_cli(&d, "contoh", 1)?;
    let id = publish_one(&d).await?;
    mailing_done(&d, &id, Duration::from_secs(30)).await?;
    drop(d);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(e) = std::fs::read_dir(dump.path())?.flatten().next() {
            let text = std::fs::read(e.path())?;
            // The dump holds the message and smtp-sink's few envelope lines: smtp-source
            // then sends a payload at least as large as siar's whole message (headers too).
            return Ok(text.len());
        }
        if Instant::now() > deadline {
            bail!("smtp-sink dumped no message");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn mail(o: &Options) -> anyhow::Result<Row> {
    let size = siar_message_size().await?;
    eprintln!("mail: siar's message for the benchmark release is {size} bytes (as dumped)");
    let mut row = Row {
        name: format!("mail: {}k recipients, msgs/s", MAIL_RECIPIENTS / 1000),
        unit: "/s",
        siar: Vec::new(),
        reference_name: format!("smtp-source -s {MAIL_SESSIONS} -d, same sink"),
        reference: Vec::new(),
    };
    for round in 0..o.rounds {
        eprintln!("mail round {}/{}", round + 1, o.rounds);
        // siar → smtp-sink.
        let sink = start_smtp_sink(&[])?;
        let d = start_siar_with(Some(&mail_config(sink.port, "warga")), &[])?;
        let import_s = import_with_cli(&d, "warga", MAIL_RECIPIENTS)?;
        let rss_before = peak_rss_mb(d.child.id());
        let started = Instant::now();
        let id = publish_one(&d).await?;
        let counts = mailing_done(&d, &id, Duration::from_secs(900)).await?;
        let elapsed = started.elapsed();
        let rss = peak_rss_mb(d.child.id());
        let sent = counts["sent"].as_u64().unwrap_or(0) as usize;
        eprintln!(
            "mail: siar sent {sent} in {:.1} s ({counts}); CLI import of {MAIL_RECIPIENTS} rows took {import_s:.1} s; peak RSS {rss:.0} MB ({rss_before:.0} MB before the mailing)",
            elapsed.as_secs_f64()
        );
        if sent != MAIL_RECIPIENTS {
            bail!("siar sent {sent} of {MAIL_RECIPIENTS}");
        }
        drop(d);
        drop(sink);
        let mut latency = Histogram::<u64>::new(3)?;
        latency.record(elapsed.as_micros() as u64)?;
        row.siar.push(Run {
            ops: sent,
            elapsed,
            latency,
        });
        // smtp-source → smtp-sink: as many sessions, the same number and size of messages.
        let sink = start_smtp_sink(&[])?;
        let started = Instant::now();
        let status = Command::new(smtp_sink_binary()?.replace("sink", "source"))
            .args([
                "-s",
                &MAIL_SESSIONS.to_string(),
                "-d",
                "-m",
                &MAIL_RECIPIENTS.to_string(),
            ])
            .args(["-l", &size.to_string()])
            .args([
                "-f",
                "siaran@kalselprov.go.id",
                "-t",
                "warga@banjar.example",
            ])
            .arg(format!("127.0.0.1:{}", sink.port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running smtp-source")?;
        let elapsed = started.elapsed();
        if !status.success() {
            bail!("smtp-source failed: {status}");
        }
        eprintln!(
            "mail: smtp-source sent {MAIL_RECIPIENTS} in {:.1} s",
            elapsed.as_secs_f64()
        );
        let mut latency = Histogram::<u64>::new(3)?;
        latency.record(elapsed.as_micros() as u64)?;
        row.reference.push(Run {
            ops: MAIL_RECIPIENTS,
            elapsed,
            latency,
        });
    }
    Ok(row)
}
