//! siar's benchmark harness: each benchmark runs siar and a reference side by side in one run
//! and prints one table with medians over rounds and the ratio.
//!
//! ```text
//! scripts/bench                    # builds release binaries, runs every benchmark
//! siar-bench [BENCH...] [--seconds S] [--rounds R] [--clients C]
//! ```
//! Benchmarks: `ingest` — durable releases per second through `POST /api/v1/releases` with C
//! concurrent clients, beside a raw sled insert+flush loop at the same concurrency.

use std::path::PathBuf;
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
            other => bail!("unknown benchmark `{other}` (known: ingest)"),
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
                println!("siar-bench [ingest] [--seconds S] [--rounds R] [--clients C]");
                std::process::exit(0);
            }
            b => o.benches.push(b.to_owned()),
        }
    }
    if o.benches.is_empty() {
        o.benches.push("ingest".into());
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
            s_rate / r_rate
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
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(siar_binary()?)
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
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(round * 10_000_000));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..o.clients {
        let (client, url, next, hist) = (client.clone(), d.url.clone(), next.clone(), hist.clone());
        tasks.spawn(async move {
            let mut ops = 0usize;
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let r = client
                    .post(format!("{url}/api/v1/releases"))
                    .bearer_auth(TOKEN)
                    .header("Content-Type", "text/plain")
                    .body(release(n))
                    .send()
                    .await?;
                if r.status() != reqwest::StatusCode::CREATED {
                    bail!("siar answered {}", r.status());
                }
                // Read the answer to its end, as a client does, so the connection is reused.
                r.bytes().await?;
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
