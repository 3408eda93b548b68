//! A small HTTP/1.1 client for the admin (hyper's own connection API, one keep-alive
//! connection per client): what a script or a browser tab does.
use std::net::SocketAddr;
use std::pin::Pin;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One connection to the admin, signed in with an API token.
pub(crate) struct Client {
    sender: SendRequest<Body>,
    host: String,
    token: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client {
            sender,
            host: addr.to_string(),
            token: token.to_owned(),
        })
    }

    /// Sends `GET path` with `headers`; the body is left to read.
    pub async fn send(
        &mut self,
        path: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> anyhow::Result<Response<Incoming>> {
        let mut req = Request::get(path)
            .header(header::HOST, &self.host)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        for (name, value) in headers {
            req = req.header(name, *value);
        }
        self.sender.ready().await?;
        Ok(self.sender.send_request(req.body(Body::empty())?).await?)
    }

    /// `GET path`, reading the whole answer: its status and length.
    pub async fn get(&mut self, path: &str, accept: &str) -> anyhow::Result<(StatusCode, usize)> {
        let res = self.send(path, &[(header::ACCEPT, accept)]).await?;
        let status = res.status();
        let mut body = res.into_body();
        let mut len = 0;
        while let Some(chunk) = next_chunk(&mut body).await {
            len += chunk?.len();
        }
        Ok((status, len))
    }
}

/// The next piece of a body's data (trailers skipped); `None` at its end.
pub(crate) async fn next_chunk(body: &mut Incoming) -> Option<anyhow::Result<Bytes>> {
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Err(e) => return Some(Err(e.into())),
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
        }
    }
}
