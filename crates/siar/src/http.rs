//! HTTP serving, sharded the way nginx does it: one single-threaded runtime per core. One
//! acceptor hands each new connection to the shard with the fewest open connections, and from
//! then on a request is read, answered and written by that one thread without waking another
//! — which is what a feed server answering thousands of polls from memory spends its time on.
//! (The kernel's `SO_REUSEPORT` spreading hashes connections, so a few busy clients can land
//! on one thread while another idles; counting is even.) Background work (scheduler, writer,
//! renderers) runs elsewhere.
//!
//! Feed requests take a short path in front of the router: the rendered document is looked
//! up by the request path and answered (`200`, `304` or `404`) without routing or middleware.
//! A connection starts on the wire path ([`wire`]), which reads and answers plain feed polls
//! itself, and moves to hyper and the router at its first request of any other kind; hyper
//! answers feed requests the same way, through the same [`crate::web::feeds::Answer`].
//! Connections speak HTTP/1.1 with keep-alive; a client that does not finish sending a
//! request's head within 30 s of the previous answer is disconnected.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use http_body_util::Either;
use hyper::body::Incoming;
use tower::ServiceExt;

use crate::app::App;
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

mod wire;

/// Binds and listens on `addr` (port 0: any free port).
pub fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    let addr: SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("`{addr}`: {e}"))
    })?;
    bind_addr(addr)
}

fn bind_addr(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The number of shards for `threads` (0: one per core).
pub fn shards(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(16)
    }
}

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long requests in flight get to finish once `stop` is cancelled.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// One HTTP thread as the acceptor sees it: where to send connections, how many it has open.
struct Shard {
    tx: tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>,
    open: Arc<AtomicUsize>,
}

/// Serves `router` on `listener` (from [`bind`]) with `shards` threads, each with its own
/// single-threaded runtime, until `stop` is cancelled; then each finishes its requests in
/// flight. `app` gives the feed short path its documents.
pub fn serve(
    app: Arc<App>,
    router: Router,
    listener: std::net::TcpListener,
    shards: usize,
    stop: CancellationToken,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    listener.set_nonblocking(true)?;
    let mut handles = Vec::new();
    let mut targets = Vec::new();
    let mut listener = Some(listener);
    for i in 0..shards.max(1) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        targets.push(Shard {
            tx,
            open: open.clone(),
        });
        let (app, router, stop) = (app.clone(), router.clone(), stop.clone());
        // The last thread started also runs the acceptor, once every shard exists.
        let acceptor = (i + 1 == shards.max(1))
            .then(|| listener.take().map(|l| (l, std::mem::take(&mut targets))))
            .flatten();
        let handle = std::thread::Builder::new()
            .name(format!("siar-http-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot start an HTTP thread.");
                        return;
                    }
                };
                rt.block_on(async move {
                    if let Some((listener, shards)) = acceptor {
                        tokio::spawn(accept_loop(listener, shards, stop.clone()));
                    }
                    shard(app, router, rx, open, stop).await;
                });
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Accepts connections and hands each to the shard with the fewest open, until `stop`.
async fn accept_loop(listener: std::net::TcpListener, shards: Vec<Shard>, stop: CancellationToken) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "Cannot listen for HTTP connections.");
            return;
        }
    };
    let mut next = 0;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        // Fewest open connections; among equals, the one after the last chosen.
        let n = shards.len();
        let Some(i) = (0..n)
            .map(|k| (next + k) % n)
            .min_by_key(|&i| shards[i].open.load(Ordering::Relaxed))
        else {
            continue;
        };
        next = (i + 1) % n;
        shards[i].open.fetch_add(1, Ordering::Relaxed);
        if shards[i].tx.send(stream).is_err() {
            shards[i].open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Serves the connections the acceptor sends this thread, until `stop`.
async fn shard(
    app: Arc<App>,
    router: Router,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
    open: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    // This thread's own token: its connections wait on it without touching another thread's
    // cache lines, and it is cancelled with `stop`.
    let stop = stop.child_token();
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            got = rx.recv() => match got {
                Some(s) => s,
                None => break,
            },
            _ = stop.cancelled() => break,
        };
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot serve a connection.");
                open.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
        };
        let (app, router, open, stop) = (app.clone(), router.clone(), open.clone(), stop.clone());
        connections.spawn(async move {
            connection(app, router, stream, &stop).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("Some connections were still busy when HTTP stopped.");
    }
}

/// One connection: the wire path first, hyper and the router from the first request the
/// wire path does not answer (see [`wire`]). Once `stop` is cancelled, the request in flight
/// is answered and the connection closed.
async fn connection(
    app: Arc<App>,
    router: Router,
    stream: tokio::net::TcpStream,
    stop: &CancellationToken,
) {
    let peer = stream.peer_addr().ok();
    let (stream, read) = match wire::serve(&app, stream, stop, HEADER_READ_TIMEOUT).await {
        wire::Outcome::Closed => return,
        wire::Outcome::HandOff(stream, read) => (stream, read),
    };
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        if let Some(peer) = peer {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let fast = crate::web::feeds::answer(&app, &req);
        let router = router.clone();
        async move {
            match fast {
                Some(resp) => Ok::<_, std::convert::Infallible>(resp.map(Either::Left)),
                None => router
                    .oneshot(req.map(Body::new))
                    .await
                    .map(|r| r.map(Either::Right)),
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(
            hyper_util::rt::TokioIo::new(wire::Prefixed::new(read, stream)),
            service,
        );
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
