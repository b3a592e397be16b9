//! HTTP serving, sharded the way nginx does it: one single-threaded runtime per core, each
//! accepting on its own `SO_REUSEPORT` socket bound to the same address. The kernel spreads
//! connections over the sockets, and a request is read, answered and written by one thread
//! without waking another — which is what a feed server answering thousands of polls from
//! memory spends its time on. Background work (scheduler, writer, renderers) runs elsewhere.
//!
//! Feed requests take a short path in front of the router: the rendered document is looked
//! up by the request path and answered (`200` or `304`) without routing or middleware.
//! Everything else goes to the router. Connections speak HTTP/1.1 with keep-alive; a client
//! that does not finish sending its headers within 30 s is disconnected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use tower::ServiceExt;

use crate::app::App;
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

/// Binds `addr` `shards` times with `SO_REUSEPORT` (port 0: the port the first socket got),
/// one socket per HTTP thread (see [`serve`]). All are listening when this returns, so the
/// kernel spreads even the first connections over every thread. If the address cannot be
/// shared, fewer sockets serve it.
pub fn bind(addr: &str, shards: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let addr: SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("`{addr}`: {e}"))
    })?;
    let first = bind_addr(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..shards {
        match bind_addr(addr) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "Cannot share the listening address; serving HTTP on fewer threads.");
                break;
            }
        }
    }
    Ok(listeners)
}

fn bind_addr(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
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

/// Serves `router` on each of `listeners` (from [`bind`]), each on its own thread with its
/// own single-threaded runtime, until `stop` is cancelled; then each finishes its requests in
/// flight. `app` gives the feed short path its documents.
pub fn serve(
    app: Arc<App>,
    router: Router,
    listeners: Vec<std::net::TcpListener>,
    stop: CancellationToken,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        listener.set_nonblocking(true)?;
        let (app, router, stop) = (app.clone(), router.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name(format!("siar-http-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot start an HTTP thread.");
                        return;
                    }
                };
                rt.block_on(accept_loop(app, router, listener, stop));
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

async fn accept_loop(
    app: Arc<App>,
    router: Router,
    listener: std::net::TcpListener,
    stop: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "Cannot listen on an HTTP thread.");
            return;
        }
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let (app, router) = (app.clone(), router.clone());
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let fast = crate::web::feeds::answer(&app, &req);
            let router = router.clone();
            async move {
                match fast {
                    Some(resp) => Ok::<_, std::convert::Infallible>(resp),
                    None => router.oneshot(req.map(Body::new)).await,
                }
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Some connections were still busy when HTTP stopped.");
    }
}
