//! The wire path: feed polls answered straight from the socket.
//!
//! Nearly every request a feed server gets is a reader polling a feed, and most of those are
//! answered `304`. Through hyper, each of them builds a request and its header map, a
//! response and its header map, encodes it, and arms a timer: several times the work of
//! answering from memory, and more than nginx spends on the same answer. So every connection
//! starts here: requests are parsed in place with `httparse` (the parser hyper itself uses),
//! and a plain `GET` or `HEAD` of a feed path is answered from the current feeds, with the
//! headers [`Answer::each_header`] gives both paths, written into one output buffer.
//!
//! The first request of any other kind (another path or method, a body, `Expect`, `Upgrade`,
//! an unusual request target, a head too large or malformed) hands the connection, with every
//! byte read and not yet answered, to hyper and the router for the rest of its life; hyper
//! then answers it as if it had read it itself, errors included.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::StatusCode;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::web::feeds::{answer_with, Answer, Ask};

/// A request head longer than this goes to hyper, which takes up to its own limit and
/// answers `431` beyond it.
const MAX_HEAD: usize = 16 * 1024;

/// More header lines than this: hyper's business (it allows 100).
const MAX_HEADERS: usize = 32;

/// How a connection left the wire path.
pub(super) enum Outcome {
    /// Closed: the client hung up or asked to close, timed out, or siar is stopping.
    Closed,
    /// A request the wire path does not answer: hyper takes the connection over, starting
    /// with these bytes.
    HandOff(TcpStream, Bytes),
}

/// Serves feed requests on `stream` until the client closes, `stop` is cancelled, or a
/// request needs hyper. A client gets `timeout` to send each request's head, counted from
/// the previous answer (or the connection's start).
pub(super) async fn serve(
    app: &App,
    mut stream: TcpStream,
    stop: &CancellationToken,
    timeout: std::time::Duration,
) -> Outcome {
    let mut input = BytesMut::with_capacity(4096);
    let mut out = Out::default();
    let mut deadline = tokio::time::Instant::now() + timeout;
    // One timer for the connection's life: moved when it fires early, not per request.
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    loop {
        // Answer every complete request read so far, in order (pipelining).
        let mut close = false;
        loop {
            let (len, keep_alive) = match parse(&input) {
                Step::Feed(req) => {
                    respond(app, &req, &mut out);
                    (req.len, req.keep_alive)
                }
                Step::Partial => break,
                Step::Other => {
                    if out.write_to(&mut stream).await.is_err() {
                        return Outcome::Closed;
                    }
                    return Outcome::HandOff(stream, input.freeze());
                }
            };
            input.advance(len);
            if !keep_alive {
                close = true;
                break;
            }
        }
        if !out.is_empty() {
            if out.write_to(&mut stream).await.is_err() {
                return Outcome::Closed;
            }
            deadline = tokio::time::Instant::now() + timeout;
        }
        if close || stop.is_cancelled() {
            let _ = stream.shutdown().await;
            return Outcome::Closed;
        }
        if input.len() >= MAX_HEAD {
            return Outcome::HandOff(stream, input.freeze());
        }
        input.reserve(4096);
        loop {
            tokio::select! {
                biased;
                read = stream.read_buf(&mut input) => match read {
                    Ok(0) | Err(_) => return Outcome::Closed,
                    Ok(_) => break,
                },
                _ = &mut timer => {
                    if tokio::time::Instant::now() >= deadline {
                        return Outcome::Closed;
                    }
                    timer.as_mut().reset(deadline);
                }
                _ = &mut cancelled => return Outcome::Closed,
            }
        }
    }
}

/// A feed request the wire path answers.
struct FeedRequest<'a> {
    path: &'a str,
    ask: Ask<'a>,
    /// Bytes of the request (it has no body).
    len: usize,
    /// The connection stays open after the answer.
    keep_alive: bool,
    /// An HTTP/1.0 client that asked to keep the connection open: told so in the answer.
    keep_alive_10: bool,
}

enum Step<'a> {
    Feed(FeedRequest<'a>),
    /// The head is not complete yet.
    Partial,
    /// Anything else: hyper's.
    Other,
}

fn parse(buf: &[u8]) -> Step<'_> {
    if buf.is_empty() {
        return Step::Partial;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Step::Partial,
        Err(_) => return Step::Other,
    };
    let head = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Step::Other,
    };
    let Some(target) = req
        .path
        .filter(|p| p.starts_with("/feeds/") && plain_target(p))
    else {
        return Step::Other;
    };
    let path = match target.bytes().position(|b| b == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
    let http10 = req.version == Some(0);
    let mut keep_alive = !http10;
    let mut keep_alive_10 = false;
    let mut ask = Ask {
        head,
        ..Ask::default()
    };
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"if-none-match") {
            ask.if_none_match.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"accept-encoding") {
            ask.accept_encoding(h.value);
        } else if name.eq_ignore_ascii_case(b"if-modified-since") {
            ask.if_modified_since.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    keep_alive = true;
                    keep_alive_10 = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if h.value.trim_ascii() != b"0" {
                return Step::Other;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Step::Other;
        }
    }
    Step::Feed(FeedRequest {
        path,
        ask,
        len,
        keep_alive,
        keep_alive_10: keep_alive_10 && keep_alive,
    })
}

/// An origin-form target of the plainest kind (unreserved and sub-delimiter characters,
/// `%`, `/`, `:`, `@`, and a query): anything else is left to hyper's URI parser.
fn plain_target(target: &str) -> bool {
    target.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'/'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'?'
            )
    })
}

/// Writes the answer to `req` into `out`.
fn respond(app: &App, req: &FeedRequest, out: &mut Out) {
    answer_with(app, req.path, &req.ask, |a: &Answer| {
        let h = &mut out.head;
        h.extend_from_slice(match a.status {
            StatusCode::OK => b"HTTP/1.1 200 OK\r\n",
            StatusCode::NOT_MODIFIED => b"HTTP/1.1 304 Not Modified\r\n",
            _ => b"HTTP/1.1 404 Not Found\r\n",
        });
        a.each_header(|name, value| {
            h.extend_from_slice(name.as_str().as_bytes());
            h.extend_from_slice(b": ");
            h.extend_from_slice(value.as_bytes());
            h.extend_from_slice(b"\r\n");
        });
        if a.status != StatusCode::NOT_MODIFIED {
            h.extend_from_slice(b"content-length: ");
            h.extend_from_slice(a.body.len().to_string().as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        if !req.keep_alive {
            h.extend_from_slice(b"connection: close\r\n");
        } else if req.keep_alive_10 {
            h.extend_from_slice(b"connection: keep-alive\r\n");
        }
        h.extend_from_slice(b"date: ");
        date(|d| h.extend_from_slice(d));
        h.extend_from_slice(b"\r\n\r\n");
        if !req.ask.head && a.status != StatusCode::NOT_MODIFIED && !a.body.is_empty() {
            out.bodies.push((out.head.len(), a.body.clone()));
        }
    })
}

thread_local! {
    /// The `Date` value of the current second, made once a second per thread.
    static DATE: std::cell::RefCell<(u64, Vec<u8>)> = const { std::cell::RefCell::new((0, Vec::new())) };
}

/// Gives `f` the current `Date` header value (IMF-fixdate).
fn date(f: impl FnOnce(&[u8])) {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut d = cell.borrow_mut();
        if d.0 != secs || d.1.is_empty() {
            d.1 = crate::web::feeds::http_date(now.into()).into_bytes();
            d.0 = secs;
        }
        f(&d.1);
    })
}

/// Answers waiting to be written: their heads one after another in `head`, and the bodies to
/// go between them, each with the offset in `head` it follows.
#[derive(Default)]
struct Out {
    head: Vec<u8>,
    bodies: Vec<(usize, Bytes)>,
}

impl Out {
    fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// Writes everything waiting, in one system call when the socket takes it.
    async fn write_to(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        if self.bodies.is_empty() {
            stream.write_all(&self.head).await?;
        } else {
            let mut pieces = Vec::with_capacity(self.bodies.len() * 2 + 1);
            let mut at = 0;
            for (end, body) in &self.bodies {
                pieces.push(IoSlice::new(&self.head[at..*end]));
                pieces.push(IoSlice::new(body));
                at = *end;
            }
            pieces.push(IoSlice::new(&self.head[at..]));
            pieces.retain(|p| !p.is_empty());
            let mut rest = &mut pieces[..];
            while !rest.is_empty() {
                let n = stream.write_vectored(rest).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                IoSlice::advance_slices(&mut rest, n);
            }
        }
        self.head.clear();
        self.bodies.clear();
        Ok(())
    }
}

/// A connection handed to hyper: the bytes the wire path read and did not answer, then the
/// socket.
pub(super) struct Prefixed {
    prefix: Bytes,
    inner: TcpStream,
}

impl Prefixed {
    pub(super) fn new(prefix: Bytes, inner: TcpStream) -> Self {
        Prefixed { prefix, inner }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(buf: &[u8]) -> FeedRequest<'_> {
        match parse(buf) {
            Step::Feed(r) => r,
            Step::Partial => panic!("partial: {}", String::from_utf8_lossy(buf)),
            Step::Other => panic!("other: {}", String::from_utf8_lossy(buf)),
        }
    }

    fn is_other(buf: &[u8]) -> bool {
        matches!(parse(buf), Step::Other)
    }

    #[test]
    fn plain_feed_requests_are_read_with_their_validators() {
        let raw = b"GET /feeds/rss.xml?utm=x HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"abc\"\r\n\
                    Accept-Encoding: gzip;q=1, br;q=0\r\nIf-Modified-Since: Sun, 29 Nov 2026 10:00:00 GMT\r\n\r\nGET";
        let r = feed(raw);
        assert_eq!(r.path, "/feeds/rss.xml");
        assert_eq!(
            r.len,
            raw.len() - 3,
            "the next request's bytes are not taken"
        );
        assert!(r.keep_alive && !r.keep_alive_10 && !r.ask.head);
        assert_eq!(r.ask.if_none_match, Some(&b"\"abc\""[..]));
        assert!(r.ask.gzip && !r.ask.br, "br;q=0 refuses brotli");
        assert_eq!(
            r.ask.if_modified_since,
            Some(&b"Sun, 29 Nov 2026 10:00:00 GMT"[..])
        );
        let r = feed(
            b"HEAD /feeds/atom.xml HTTP/1.1\r\naccept-encoding: br\r\nconnection: close\r\n\r\n",
        );
        assert!(r.ask.head && r.ask.br && !r.keep_alive);
    }

    #[test]
    fn http_1_0_closes_unless_asked_to_keep_alive() {
        let r = feed(b"GET /feeds/rss.xml HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive && !r.keep_alive_10);
        let r = feed(b"GET /feeds/rss.xml HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(r.keep_alive && r.keep_alive_10);
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        assert!(matches!(parse(b""), Step::Partial));
        assert!(matches!(
            parse(b"GET /feeds/rss.xml HTTP/1.1\r\nHost: a\r\n"),
            Step::Partial
        ));
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for raw in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"POST /feeds/rss.xml HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            b"GET /feeds/rss.xml HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /feeds/rss.xml HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /feeds/rss.xml HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET /feeds/rss.xml HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            b"GET http://example.org/feeds/rss.xml HTTP/1.1\r\n\r\n",
            b"GET /feeds/r{s}s.xml HTTP/1.1\r\n\r\n",
            b"GET /feeds/rss.xml#x HTTP/1.1\r\n\r\n",
            b"get /feeds/rss.xml HTTP/1.1\r\n\r\n",
            b"GET /feeds/rss.xml HTTP/1.1\r\nBad Header\r\n\r\n",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        ] {
            assert!(is_other(raw), "{}", String::from_utf8_lossy(raw));
        }
        // More header lines than the wire path keeps.
        let mut many = b"GET /feeds/rss.xml HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(is_other(&many));
        // A body of length 0 is no body.
        feed(b"GET /feeds/rss.xml HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    }

    /// An app on a sled store in `dir`, with no feeds rendered yet (every feed path is 404).
    fn app(dir: &std::path::Path) -> App {
        let store = siar_store::Store::open(dir).unwrap();
        let clock = std::sync::Arc::new(crate::clock::TokioClock::new(chrono::Utc::now()));
        let (config, _) = crate::config::Config::load(None, Vec::new()).unwrap();
        App::new(config, store, clock).unwrap()
    }

    /// Runs the wire path on one accepted connection with `timeout`; gives the client's end
    /// and the outcome's task.
    async fn connection(
        app: std::sync::Arc<App>,
        stop: CancellationToken,
        timeout: std::time::Duration,
    ) -> (TcpStream, tokio::task::JoinHandle<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let task = tokio::spawn(async move {
            matches!(serve(&app, server, &stop, timeout).await, Outcome::Closed)
        });
        (client, task)
    }

    /// Reads until the server closes; what it sent.
    async fn until_closed(client: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_to_end(&mut got),
        )
        .await
        .expect("the server closes the connection");
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn slow_and_idle_clients_are_disconnected_and_stopping_closes_idle_connections() {
        let dir = tempfile::tempdir().unwrap();
        let app = std::sync::Arc::new(app(dir.path()));
        let timeout = std::time::Duration::from_millis(300);

        // A client that sends a head a byte at a time, never finishing it, is cut off when the
        // time for the head is up: bytes arriving do not extend it.
        let (mut client, task) = connection(app.clone(), CancellationToken::new(), timeout).await;
        let started = std::time::Instant::now();
        for b in b"GET /feeds/rss.xml HTTP/1.1\r\nX-Slow: " {
            if client.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(until_closed(&mut client).await, "");
        assert!(task.await.unwrap(), "closed, not handed to hyper");
        let took = started.elapsed();
        assert!(
            took >= timeout && took < timeout * 4,
            "cut off after {took:?}"
        );

        // After an answer, the client has the same time again for its next request.
        let (mut client, task) = connection(app.clone(), CancellationToken::new(), timeout).await;
        tokio::time::sleep(timeout / 2).await;
        client
            .write_all(b"GET /feeds/nope.xml HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let answered = std::time::Instant::now();
        let got = until_closed(&mut client).await;
        assert!(got.starts_with("HTTP/1.1 404 Not Found\r\n"), "{got}");
        assert!(got.ends_with("Feed tidak ditemukan.\n"), "{got}");
        assert!(
            answered.elapsed() >= timeout * 3 / 4,
            "{:?}",
            answered.elapsed()
        );
        assert!(task.await.unwrap());

        // Stopping closes a connection waiting for its next request at once.
        let stop = CancellationToken::new();
        let (mut client, task) = connection(
            app.clone(),
            stop.clone(),
            std::time::Duration::from_secs(60),
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        stop.cancel();
        assert_eq!(until_closed(&mut client).await, "");
        assert!(task.await.unwrap());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn the_date_is_an_http_date() {
        let mut got = Vec::new();
        date(|d| got = d.to_vec());
        let s = String::from_utf8(got).unwrap();
        assert_eq!(s.len(), 29, "{s}");
        assert!(s.ends_with(" GMT"), "{s}");
        assert!(chrono::DateTime::parse_from_rfc2822(&s.replace("GMT", "+0000")).is_ok());
    }
}
