//! A small HTTP/1.1 client for the admin, on a plain `TcpStream`: keep-alive GETs with an API
//! token, answers framed by `Content-Length` or chunked, read as they arrive (event streams).
//! Lean on purpose: a thousand event-stream readers share the machine with the server they
//! measure.
use std::net::SocketAddr;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection to the admin.
pub(crate) struct Conn {
    stream: TcpStream,
    host: String,
    token: String,
    /// Read but not yet used: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
}

/// How the body of the answer being read ends.
enum Framing {
    Length(usize),
    /// In a chunk with this many bytes left (0: at a size line).
    Chunked(usize),
    UntilClose,
    Done,
}

/// An answer whose body is read with [`Response::read_into`].
pub(crate) struct Response<'a> {
    pub status: u16,
    conn: &'a mut Conn,
    framing: Framing,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            host: addr.to_string(),
            token: token.to_owned(),
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
        })
    }

    /// Sends `GET path` with extra `headers` and reads the answer's head.
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Response<'_>> {
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n",
            self.host, self.token
        );
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        let end = loop {
            if let Some(i) = find(&self.buf[self.pos..], b"\r\n\r\n") {
                break self.pos + i;
            }
            anyhow::ensure!(self.fill().await? > 0, "connection closed before an answer");
        };
        let head = String::from_utf8_lossy(&self.buf[self.pos..end]).into_owned();
        self.pos = end + 4;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP answer: {head:?}"))?;
        let mut framing = Framing::UntilClose;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                framing = Framing::Length(value.parse()?);
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                framing = Framing::Chunked(0);
            }
        }
        Ok(Response {
            status,
            conn: self,
            framing,
        })
    }

    /// Reads more from the socket; returns how much (0: closed).
    async fn fill(&mut self) -> anyhow::Result<usize> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 32 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 32 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

impl Response<'_> {
    /// Appends the body's next bytes to `out`: whatever has arrived, waiting for the socket
    /// only when nothing has. `false` at the end of the body.
    pub async fn read_into(&mut self, out: &mut Vec<u8>) -> anyhow::Result<bool> {
        loop {
            let before = out.len();
            self.decode(out)?;
            if out.len() > before {
                return Ok(true);
            }
            if matches!(self.framing, Framing::Done) {
                return Ok(false);
            }
            if self.conn.fill().await? == 0 {
                anyhow::ensure!(
                    matches!(self.framing, Framing::UntilClose),
                    "connection closed mid-answer"
                );
                self.framing = Framing::Done;
                return Ok(false);
            }
        }
    }

    /// The whole body's length.
    pub async fn skip_body(&mut self) -> anyhow::Result<usize> {
        let mut out = Vec::new();
        let mut len = 0;
        while self.read_into(&mut out).await? {
            len += out.len();
            out.clear();
        }
        Ok(len)
    }

    /// Moves what is buffered of the body into `out`, as far as it goes.
    fn decode(&mut self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        let c = &mut *self.conn;
        loop {
            let avail = &c.buf[c.pos..];
            match &mut self.framing {
                Framing::Done => return Ok(()),
                Framing::UntilClose => {
                    out.extend_from_slice(avail);
                    c.pos = c.buf.len();
                    return Ok(());
                }
                Framing::Length(left) => {
                    let n = (*left).min(avail.len());
                    out.extend_from_slice(&avail[..n]);
                    c.pos += n;
                    *left -= n;
                    if *left == 0 {
                        self.framing = Framing::Done;
                    }
                    return Ok(());
                }
                Framing::Chunked(0) => {
                    // A size line (after the previous chunk's CRLF, if any).
                    let skip = if avail.starts_with(b"\r\n") { 2 } else { 0 };
                    let Some(eol) = find(&avail[skip..], b"\r\n") else {
                        return Ok(());
                    };
                    let line = std::str::from_utf8(&avail[skip..skip + eol])?;
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                            .with_context(|| format!("bad chunk size {line:?}"))?;
                    if size == 0 {
                        // The last chunk, then (no trailers) an empty line.
                        let rest = &avail[skip + eol + 2..];
                        let Some(end) = find(rest, b"\r\n") else {
                            return Ok(());
                        };
                        c.pos += skip + eol + 2 + end + 2;
                        self.framing = Framing::Done;
                        return Ok(());
                    }
                    c.pos += skip + eol + 2;
                    self.framing = Framing::Chunked(size);
                }
                Framing::Chunked(left) => {
                    if avail.is_empty() {
                        return Ok(());
                    }
                    let n = (*left).min(avail.len());
                    out.extend_from_slice(&avail[..n]);
                    c.pos += n;
                    *left -= n;
                    if *left == 0 {
                        // The chunk's CRLF is skipped with the next size line.
                        self.framing = Framing::Chunked(0);
                    }
                }
            }
        }
    }
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
