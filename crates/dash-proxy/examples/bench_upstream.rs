//! A tiny, fast HTTP/1.1 upstream for proxy benchmarks: every request gets `200 ok`.
//!
//! ```text
//! cargo run --release -p dash-proxy --example bench_upstream -- [PORT] [THREADS]
//! ```
//! Listens on 127.0.0.1:PORT (default 9000) with THREADS runtime threads (default 1). It parses
//! just enough HTTP/1.1 for a benchmark: request heads, `Content-Length` bodies (skipped),
//! pipelining and `Connection: close`; chunked request bodies are not supported.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .map_or(Ok(9000), |p| p.parse())
        .map_err(invalid)?;
    let threads: usize = args.next().map_or(Ok(1), |t| t.parse()).map_err(invalid)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = TcpListener::bind(addr).await?;
        eprintln!("bench_upstream listening on {addr} with {threads} thread(s)");
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = serve(stream).await;
            });
        }
    })
}

fn invalid(e: std::num::ParseIntError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

async fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    // Bytes of a request body still to skip.
    let mut skip = 0usize;
    let mut out = Vec::with_capacity(RESPONSE.len() * 16);
    loop {
        if filled == buf.len() {
            // A request head larger than the buffer: give up on this connection.
            return Ok(());
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut start = 0;
        let mut close = false;
        loop {
            if skip > 0 {
                let take = skip.min(filled - start);
                skip -= take;
                start += take;
                if skip > 0 {
                    break;
                }
            }
            let Some(end) = find_head_end(&buf[start..filled]) else {
                break;
            };
            let head = &buf[start..start + end];
            skip = content_length(head);
            close |= has_connection_close(head);
            out.extend_from_slice(RESPONSE);
            start += end + 4;
            if close {
                break;
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close {
            return Ok(());
        }
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| line[colon + 1..].trim_ascii())
    })
}

fn content_length(head: &[u8]) -> usize {
    header(head, "content-length")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

fn has_connection_close(head: &[u8]) -> bool {
    header(head, "connection").is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}
