//! ws-echo: a WebSocket echo server for the end-to-end tests, run inside a container.
//! `ws-echo PORT` answers every upgrade on any path, echoes text and binary frames, answers
//! pings, and says which replica it is in the `X-Replica` response header (its hostname).
//! A plain GET gets `200 ws-echo` so readiness checks and the proxy's health can see it.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};

use anyhow::{Context, Result};
use dash_e2e::ws;

fn serve(stream: TcpStream) -> Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let head = ws::read_head(&mut reader)?;
    let replica = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let replica = replica.trim();
    let Some(key) = ws::header(&head, "sec-websocket-key") else {
        let body = "ws-echo\n";
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Replica: {replica}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    };
    write!(
        writer,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nX-Replica: {replica}\r\n\r\n",
        ws::accept_key(key)
    )?;
    loop {
        let (opcode, payload) = ws::read_frame(&mut reader)?;
        match opcode {
            ws::TEXT | ws::BINARY => ws::write_frame(&mut writer, opcode, &payload, false)?,
            ws::PING => ws::write_frame(&mut writer, ws::PONG, &payload, false)?,
            ws::CLOSE => {
                ws::write_frame(&mut writer, ws::CLOSE, &payload, false)?;
                return Ok(());
            }
            _ => {}
        }
    }
}

fn main() -> Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .context("usage: ws-echo PORT")?
        .parse()
        .context("PORT must be a number from 1 to 65535")?;
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("ws-echo: {e:#}");
            }
        });
    }
    Ok(())
}
