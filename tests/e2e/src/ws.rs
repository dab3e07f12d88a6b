//! A small RFC 6455 WebSocket over blocking std sockets: enough for the `ws-echo` test server
//! that runs inside a container and for the test's client, so the proxy's upgrade path is
//! checked end to end against a real replica. Text, binary, ping/pong and close frames;
//! no extensions, no fragmentation (frames up to 16 MiB).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use anyhow::{Context, Result, bail};
use base64::Engine;
use sha1::{Digest, Sha1};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_FRAME: u64 = 16 << 20;

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The `Sec-WebSocket-Accept` value for a client's key.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Reads an HTTP head (up to the blank line) as lines.
pub fn read_head(r: &mut impl BufRead) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            bail!("connection closed inside the HTTP head");
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
        if lines.len() > 100 {
            bail!("HTTP head of more than 100 lines");
        }
    }
}

/// The value of header `name` (case-insensitive) in a head read by [`read_head`].
pub fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Writes one frame; clients mask (with a fixed key: the proxy must not care), servers don't.
pub fn write_frame(w: &mut impl Write, opcode: u8, payload: &[u8], mask: bool) -> Result<()> {
    let mut head = vec![0x80 | opcode];
    let m = if mask { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        head.push(m | len as u8);
    } else if len <= usize::from(u16::MAX) {
        head.push(m | 126);
        head.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        head.push(m | 127);
        head.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mut body = payload.to_vec();
    if mask {
        let key = [0x5a, 0xc3, 0x19, 0x7e];
        head.extend_from_slice(&key);
        for (i, b) in body.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    w.write_all(&head)?;
    w.write_all(&body)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame: (opcode, unmasked payload).
pub fn read_frame(r: &mut impl Read) -> Result<(u8, Vec<u8>)> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b).context("reading a frame header")?;
    if b[0] & 0x80 == 0 {
        bail!("fragmented frames are not supported by this test client");
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let len = match b[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            r.read_exact(&mut l)?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            r.read_exact(&mut l)?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    if len > MAX_FRAME {
        bail!("frame of {len} bytes is over the {MAX_FRAME}-byte limit");
    }
    let mut key = [0u8; 4];
    if masked {
        r.read_exact(&mut key)?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    if masked {
        for (i, x) in payload.iter_mut().enumerate() {
            *x ^= key[i % 4];
        }
    }
    Ok((opcode, payload))
}

/// A client connection after a successful upgrade.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The 101 response's head.
    pub head: Vec<String>,
}

impl Client {
    /// Connects to `addr` and upgrades `path` on virtual host `host`.
    pub fn connect(addr: &str, host: &str, path: &str) -> Result<Client> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let mut writer = stream.try_clone()?;
        let key = "ZGFzaC13cy1lMmUtdGVzdA==";
        write!(
            writer,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut reader = BufReader::new(stream);
        let head = read_head(&mut reader)?;
        let status = head.first().map(String::as_str).unwrap_or("");
        if !status.starts_with("HTTP/1.1 101") {
            bail!("upgrade refused: {head:?}");
        }
        if header(&head, "sec-websocket-accept") != Some(accept_key(key).as_str()) {
            bail!("wrong Sec-WebSocket-Accept in {head:?}");
        }
        Ok(Client {
            reader,
            writer,
            head,
        })
    }

    pub fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        write_frame(&mut self.writer, opcode, payload, true)
    }

    pub fn recv(&mut self) -> Result<(u8, Vec<u8>)> {
        read_frame(&mut self.reader)
    }
}
