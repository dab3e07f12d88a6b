//! A small admin_api client over hyper's HTTP/1 connection: plain HTTP to loopback addresses,
//! HTTPS (`https://…`) trusting a pinned cluster CA or an operator's CA (`context`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use dash_core::api::ApiError;
use dash_rpc::https::{Stream, Trust};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the Dash admin API at {addr}; is `dash server` running? (DASH_ADDR sets the address)"
    )]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Api(String),
    /// HTTPS could not be set up or the server was not trusted; the message says why.
    #[error("{0}")]
    Tls(String),
    #[error("talking to the admin API: {0}")]
    Http(String),
}

pub struct Client {
    /// The masters' admin API addresses (`DASH_ADDR=a:7070,b:7070,…`): every master answers
    /// (a follower forwards writes to the leader), so any one that is up will do.
    addrs: Vec<Endpoint>,
    /// The one that answered last.
    current: std::sync::atomic::AtomicUsize,
    token: Option<String>,
    /// GETs ask for the answering master's state as it is (`?stale=true`).
    stale: bool,
    /// What an https address must prove (None: https addresses are refused, saying why).
    trust: Option<Trust>,
    tls: std::sync::OnceLock<Result<std::sync::Arc<rustls::ClientConfig>, String>>,
}

/// One address: `host:port` or `http://host:port` (plain), `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host_port: String,
    pub tls: bool,
}

impl Endpoint {
    pub fn parse(text: &str) -> Endpoint {
        let t = text.trim();
        let (tls, rest) = if let Some(r) = t.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = t.strip_prefix("http://") {
            (false, r)
        } else {
            (false, t)
        };
        // A path after the address (`https://h:7443/`) is not part of it.
        let host_port = rest.split('/').next().unwrap_or(rest).to_string();
        Endpoint { host_port, tls }
    }

    /// The host part (for checking a certificate's names).
    fn host(&self) -> &str {
        match self.host_port.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => &self.host_port,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tls {
            write!(f, "https://{}", self.host_port)
        } else {
            f.write_str(&self.host_port)
        }
    }
}

impl Client {
    /// `addr`: one address, or several separated by commas (tried in turn).
    pub fn new(addr: String, token: Option<String>) -> Self {
        let mut addrs: Vec<Endpoint> = addr
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(Endpoint::parse)
            .collect();
        if addrs.is_empty() {
            addrs.push(Endpoint::parse(&addr));
        }
        Self {
            addrs,
            current: Default::default(),
            token,
            stale: false,
            trust: None,
            tls: Default::default(),
        }
    }

    /// With `stale`, reads take the answering master's state as it is (`--stale`).
    pub fn stale(mut self, stale: bool) -> Self {
        self.stale = stale;
        self
    }

    /// What https addresses must prove: the pinned cluster CA, or an operator's CA.
    pub fn trust(mut self, trust: Option<Trust>) -> Self {
        self.trust = trust;
        self
    }

    fn addr(&self) -> &Endpoint {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.addrs[i % self.addrs.len()]
    }

    /// A connection to the first master that takes it, starting with the one that answered
    /// last; with several, each gets a second. An https one must pass the TLS checks: a
    /// server that fails them is an error at once, not a reason to try the next.
    async fn connect(&self) -> Result<TokioIo<Stream>, ClientError> {
        let start = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let n = self.addrs.len();
        let mut last = None;
        for k in 0..n {
            let i = (start + k) % n;
            let ep = &self.addrs[i];
            let addr = &ep.host_port;
            let attempt = if n == 1 {
                TcpStream::connect(addr).await
            } else {
                tokio::time::timeout(std::time::Duration::from_secs(1), TcpStream::connect(addr))
                    .await
                    .unwrap_or_else(|_| {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no answer within 1 s",
                        ))
                    })
            };
            match attempt {
                Ok(s) => {
                    self.current.store(i, std::sync::atomic::Ordering::Relaxed);
                    if !ep.tls {
                        return Ok(TokioIo::new(Stream::Plain(s)));
                    }
                    return self.handshake(s, ep).await.map(TokioIo::new);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ClientError::Connect {
            addr: self
                .addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            source: last.unwrap_or_else(|| std::io::Error::other("no address")),
        })
    }

    async fn handshake(&self, tcp: TcpStream, ep: &Endpoint) -> Result<Stream, ClientError> {
        let Some(trust) = &self.trust else {
            return Err(ClientError::Tls(format!(
                "{ep}: no CA to check the server against; log in once with `dash login {ep} \
                 --token …` (a DASH1- token carries the cluster's CA fingerprint), or set \
                 DASH_CA_FINGERPRINT or DASH_CACERT"
            )));
        };
        let config = self
            .tls
            .get_or_init(|| dash_rpc::https::client_config(trust).map(std::sync::Arc::new))
            .clone()
            .map_err(|e| ClientError::Tls(format!("{ep}: {e}")))?;
        dash_rpc::https::connect(tcp, ep.host(), trust, config)
            .await
            .map_err(|e| ClientError::Tls(format!("{ep}: TLS refused: {e}")))
    }

    /// A request to the admin API with its host and bearer token.
    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        let uri = if self.stale && method == Method::GET {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}stale=true")
        } else {
            path.to_string()
        };
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", self.addr().host_port.as_str());
        match &self.token {
            Some(t) => req.header("authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
    ) -> Result<Response<Incoming>, ClientError> {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(self.connect().await?)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = self.request(method, path);
        let req = match body {
            ReqBody::Empty => req.body(http_body_util::Either::Left(Full::new(Bytes::new()))),
            ReqBody::Json(b) => req
                .header("content-type", "application/json")
                .body(http_body_util::Either::Left(Full::new(b))),
            ReqBody::File(f) => {
                let stream = tokio_util_stream(f);
                req.header("content-type", "application/x-tar")
                    .body(http_body_util::Either::Right(StreamBody::new(stream)))
            }
        }
        .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(error_of(resp).await)
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.send(Method::GET, path, ReqBody::Empty).await?;
        decode(resp).await
    }

    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        self.send_json(Method::POST, path, body).await
    }

    pub async fn put<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        self.send_json(Method::PUT, path, body).await
    }

    /// `body` as JSON to `path`; the answer decoded.
    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = self.send(method, path, ReqBody::Json(json.into())).await?;
        decode(resp).await
    }

    /// A request whose answer has no body of interest.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<(), ClientError> {
        let body = match body {
            Some(b) => ReqBody::Json(
                serde_json::to_vec(b)
                    .map_err(|e| ClientError::Http(e.to_string()))?
                    .into(),
            ),
            None => ReqBody::Empty,
        };
        let resp = self.send(method, path, body).await?;
        let _ = resp.into_body().collect().await;
        Ok(())
    }

    pub async fn delete<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let resp = self.send(Method::DELETE, path, ReqBody::Empty).await?;
        decode(resp).await
    }

    /// Uploads a file as the request body.
    pub async fn upload<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        file: tokio::fs::File,
    ) -> Result<T, ClientError> {
        let resp = self.send(Method::POST, path, ReqBody::File(file)).await?;
        decode(resp).await
    }

    /// A GET whose answer is written to the new file `dest` (through `dest.partial`, renamed
    /// once complete and synced). Returns its size.
    pub async fn download(&self, path: &str, dest: &std::path::Path) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let resp = self.send(Method::GET, path, ReqBody::Empty).await?;
        let mut partial = dest.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        let io =
            |e: std::io::Error| ClientError::Http(format!("writing {}: {e}", partial.display()));
        let written = async {
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .await
                .map_err(io)?;
            let mut body = resp.into_body();
            let mut n = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    n += data.len() as u64;
                    f.write_all(&data).await.map_err(io)?;
                }
            }
            f.sync_all().await.map_err(io)?;
            Ok::<u64, ClientError>(n)
        }
        .await;
        match written {
            Ok(n) => {
                tokio::fs::rename(&partial, dest).await.map_err(io)?;
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(e)
            }
        }
    }

    /// A GET that upgrades the connection to `protocol`; the raw connection after the 101.
    pub async fn upgrade(
        &self,
        path: &str,
        protocol: &str,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, ClientError> {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(self.connect().await?)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let req = self
            .request(Method::GET, path)
            .header("connection", "Upgrade")
            .header("upgrade", protocol)
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(error_of(resp).await);
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(TokioIo::new(upgraded))
    }

    /// Calls `on_line` for each line of a streaming answer until it ends.
    pub async fn stream(&self, path: &str, on_line: impl FnMut(&str)) -> Result<(), ClientError> {
        let resp = self.send(Method::GET, path, ReqBody::Empty).await?;
        Self::lines(resp, on_line).await
    }

    /// Like [`Client::stream`], for a POST with a JSON body.
    pub async fn stream_post(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        on_line: impl FnMut(&str),
    ) -> Result<(), ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = self
            .send(Method::POST, path, ReqBody::Json(json.into()))
            .await?;
        Self::lines(resp, on_line).await
    }

    async fn lines(
        resp: Response<Incoming>,
        mut on_line: impl FnMut(&str),
    ) -> Result<(), ClientError> {
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ClientError::Http(format!(
                    "the stream ended early ({e}): the master stopped or restarted, or the \
                     connection broke; run the command again"
                ))
            })?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    on_line(String::from_utf8_lossy(&line[..line.len() - 1]).as_ref());
                }
            }
        }
        Ok(())
    }
}

enum ReqBody {
    Empty,
    Json(Bytes),
    File(tokio::fs::File),
}

type FileStream = std::pin::Pin<
    Box<dyn futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send>,
>;

fn tokio_util_stream(file: tokio::fs::File) -> FileStream {
    use tokio::io::AsyncReadExt;
    Box::pin(futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    }))
}

async fn decode<T: serde::de::DeserializeOwned>(
    resp: Response<Incoming>,
) -> Result<T, ClientError> {
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Http(format!("unexpected answer: {e}")))
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) if !e.diagnostics.is_empty() => ClientError::Api(e.diagnostics.join("\n")),
        Ok(e) => ClientError::Api(e.message),
        Err(_) => ClientError::Api(format!(
            "{status}: {}",
            String::from_utf8_lossy(body).trim()
        )),
    }
}

/// The error an unsuccessful answer carries (its `{code, message}` body).
async fn error_of(resp: Response<Incoming>) -> ClientError {
    let status = resp.status();
    match resp.into_body().collect().await {
        Ok(body) => api_error(status, &body.to_bytes()),
        Err(e) => ClientError::Http(e.to_string()),
    }
}
