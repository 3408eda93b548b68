//! The admin under load, through its real router on a real port with an API token: list pages
//! while a backlog drains, and one job's event stream followed by many subscribers.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use super::drain::{fill, register_noop};
use super::http::Conn;
use super::{Fanout, Latency, Progress, group, stop, worker};
use crate::admin::serve::{ServeOptions, serve};
use crate::auth::{Accounts, Auth};
use crate::{JobContext, JobKind, Role, Worker};

const LOGGER: &str = "Bench Logger";

/// The admin served on port 0, and a token to use it.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) token: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(crate) async fn start(worker: &Worker) -> anyhow::Result<Server> {
        let accounts = Accounts::new(worker.store().connection().clone());
        accounts
            .add("bench", "bench-password-not-secret", Role::Viewer)
            .await?;
        let (token, _) = accounts.create_token("bench", "nightshift bench").await?;
        let app: axum::Router = crate::admin::router(worker.clone(), Auth::sessions());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let opts = ServeOptions {
            drain_timeout: Duration::from_secs(1),
            ..ServeOptions::default()
        };
        let task = tokio::spawn(serve(
            listener,
            app,
            async {
                let _ = stopped.await;
            },
            opts,
        ));
        Ok(Server {
            addr,
            token,
            stop,
            task,
        })
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// `admin_list_ms`, all pages together and each.
pub(crate) struct AdminList {
    pub all: Latency,
    pub by_page: Map<String, Value>,
}

/// `jobs` no-op jobs queued; a default worker drains them while the list pages (all tab, and
/// `?status=done`) are fetched in turn, as a browser would (HTML), at most `samples` of each.
/// At least one of each is taken even if the drain is over by then.
pub(crate) async fn admin_list(
    url: String,
    jobs: u64,
    samples: usize,
    progress: &Progress,
) -> anyhow::Result<AdminList> {
    let worker = worker(&url).await?;
    let counter = register_noop(&worker)?;
    fill(&worker, jobs, false, progress).await?;
    let server = Server::start(&worker).await?;
    let pages = [("all", "/workers"), ("done", "/workers?status=done")];
    let out = async {
        let mut conn = Conn::connect(server.addr, &server.token).await?;
        worker.start().await?;
        let mut taken: Vec<Vec<f64>> = vec![Vec::new(); pages.len()];
        for i in 0.. {
            let (name, path) = pages[i % pages.len()];
            let draining = counter.ran() < jobs;
            if taken[i % pages.len()].len() >= samples.max(1)
                || (!draining && taken.iter().all(|t| !t.is_empty()))
            {
                break;
            }
            let t = Instant::now();
            let mut res = conn.get(path, &[("Accept", "text/html")]).await?;
            let len = res.skip_body().await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(
                res.status == 200 && len > 0,
                "GET {path} answered {}",
                res.status
            );
            taken[i % pages.len()].push(ms);
            progress.update(format!(
                "GET {name}: {ms:.1} ms; {} / {} drained",
                group(counter.ran()),
                group(jobs)
            ));
            tokio::time::sleep(Duration::from_millis(10 + fastrand::u64(..20))).await;
        }
        let mut by_page = Map::new();
        for ((name, _), t) in pages.iter().zip(&taken) {
            by_page.insert((*name).to_owned(), serde_json::to_value(Latency::of(t))?);
        }
        Ok(AdminList {
            all: Latency::of(&taken.concat()),
            by_page,
        })
    }
    .await;
    stop(worker).await;
    server.stop().await;
    out
}

/// The time base log lines carry: microseconds since the first call.
fn since_epoch_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// What one subscriber has got so far (read for the progress line).
#[derive(Default)]
struct Tally {
    received: AtomicU64,
}

/// What one subscriber got in the end.
#[derive(Default)]
struct Got {
    received: u64,
    reconnects: u64,
    /// Delay of each line received, µs.
    delays_us: Vec<u32>,
}

/// `sse_fanout`: `subscribers` connections follow one job's events (the HTML frames a browser
/// gets) while it logs `lines` lines, 1,000 a second. A stream the server ends early (the
/// subscriber fell behind) reconnects with `Last-Event-ID`, as a browser does.
pub(crate) async fn sse_fanout(
    url: String,
    subscribers: usize,
    lines: u64,
    progress: &Progress,
) -> anyhow::Result<Fanout> {
    let worker = worker(&url).await?;
    let go = Arc::new(Notify::new());
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let g = go.clone();
    worker.register(JobKind::new(
        LOGGER,
        move |_: crate::demo::NoArgs, ctx: JobContext| {
            let (go, started) = (g.clone(), started_tx.clone());
            async move {
                let _ = started.send(());
                go.notified().await;
                let t0 = tokio::time::Instant::now();
                for i in 0..lines {
                    if i % 10 == 0 {
                        tokio::time::sleep_until(t0 + Duration::from_millis(i)).await;
                    }
                    ctx.log(format!("@@{i}:{}@@", since_epoch_us())).await?;
                }
                Ok(())
            }
        },
    ))?;
    let server = Server::start(&worker).await?;
    let tallies: Vec<Arc<Tally>> = (0..subscribers).map(|_| Arc::default()).collect();
    let out = async {
        worker.start().await?;
        let id = worker.enqueue_dynamic(LOGGER, &crate::demo::NoArgs {}).await?;
        tokio::time::timeout(Duration::from_secs(30), started.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the logging job did not start"))?;
        // Connect everyone (50 at a time), then let the job log.
        let (ready_tx, mut ready) = mpsc::unbounded_channel::<anyhow::Result<()>>();
        let connecting = Arc::new(Semaphore::new(50));
        let deadline = Instant::now() + Duration::from_millis(lines) + Duration::from_secs(120);
        let mut tasks = Vec::with_capacity(subscribers);
        for tally in &tallies {
            let sub = Subscriber {
                addr: server.addr,
                token: server.token.clone(),
                path: format!("/workers/{id}/events"),
                lines,
                tally: tally.clone(),
                deadline,
            };
            let (ready, connecting) = (ready_tx.clone(), connecting.clone());
            tasks.push(tokio::spawn(sub.run(ready, connecting)));
        }
        for n in 1..=subscribers {
            let r = tokio::time::timeout(Duration::from_secs(60), ready.recv())
                .await
                .map_err(|_| anyhow::anyhow!("subscribers did not connect within 60 s"))?;
            r.unwrap_or_else(|| Err(anyhow::anyhow!("a subscriber ended")))?;
            progress.update(format!("{} / {} subscribed", n, subscribers));
        }
        let t_go = Instant::now();
        go.notify_one();
        let mut tasks = futures::future::join_all(tasks);
        let give_up = tokio::time::Instant::from_std(deadline) + Duration::from_secs(10);
        let got = loop {
            tokio::select! {
                got = &mut tasks => break got,
                _ = tokio::time::sleep_until(give_up) => {
                    anyhow::bail!("the subscribers were still reading {lines} lines after {:.0} s", (deadline - t_go).as_secs_f64() + 10.0);
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    let min = tallies.iter().map(|t| t.received.load(Ordering::Relaxed)).min();
                    progress.update(format!(
                        "slowest subscriber has {} / {} lines",
                        min.unwrap_or(0),
                        lines
                    ));
                }
            }
        };
        let got: Vec<Got> = got.into_iter().map(|g| g.unwrap_or_default()).collect();
        let min_received = got.iter().map(|g| g.received).min().unwrap_or(0);
        let mut delays: Vec<u32> = got
            .iter()
            .flat_map(|g| g.delays_us.iter().copied())
            .collect();
        delays.sort_unstable();
        let pick = |p: f64| -> f64 {
            if delays.is_empty() {
                return 0.0;
            }
            let rank = ((p * delays.len() as f64).ceil() as usize).clamp(1, delays.len());
            (f64::from(delays[rank - 1]) / 10.0).round() / 100.0
        };
        Ok(Fanout {
            subscribers,
            lines,
            delivered_all: subscribers > 0 && min_received == lines,
            min_received,
            p99_delay_ms: pick(0.99),
            p50_delay_ms: pick(0.50),
            max_delay_ms: pick(1.0),
            reconnects: got.iter().map(|g| g.reconnects).sum(),
        })
    }
    .await;
    stop(worker).await;
    server.stop().await;
    out
}

/// One SSE client.
struct Subscriber {
    addr: SocketAddr,
    token: String,
    path: String,
    lines: u64,
    tally: Arc<Tally>,
    deadline: Instant,
}

impl Subscriber {
    /// Connects (the first time under `connecting`, so a thousand do not knock at once), says
    /// so on `ready`, and reads until the stream ends with the job.
    async fn run(
        self,
        ready: mpsc::UnboundedSender<anyhow::Result<()>>,
        connecting: Arc<Semaphore>,
    ) -> Got {
        let mut got = Got {
            delays_us: Vec::with_capacity(self.lines as usize),
            ..Got::default()
        };
        let mut seen = vec![false; self.lines as usize];
        let mut last_id: Option<String> = None;
        let mut permit = Some(connecting.acquire_owned().await);
        loop {
            let mut headers = vec![("Accept", "text/event-stream")];
            if let Some(id) = &last_id {
                headers.push(("Last-Event-ID", id.as_str()));
            }
            let mut conn = match Conn::connect(self.addr, &self.token).await {
                Ok(c) => c,
                Err(e) => {
                    if permit.is_some() {
                        let _ = ready.send(Err(e));
                    }
                    return got;
                }
            };
            let mut res = match conn.get(&self.path, &headers).await {
                Ok(r) if r.status == 200 => r,
                Ok(r) => {
                    let e = anyhow::anyhow!("GET {} answered {}", self.path, r.status);
                    if permit.is_some() {
                        let _ = ready.send(Err(e));
                    }
                    return got;
                }
                Err(e) => {
                    if permit.is_some() {
                        let _ = ready.send(Err(e));
                    }
                    return got;
                }
            };
            if permit.take().is_some() {
                let _ = ready.send(Ok(()));
            }
            let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
            let mut ended = false;
            // The id of the event being read (it comes before its data).
            let mut event_id = None;
            while let Ok(true) = res.read_into(&mut buf).await {
                // One pass over whole lines: cheap, so the readers leave the machine to the
                // server they measure.
                let mut start = 0;
                while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
                    let line = &buf[start..start + nl];
                    start += nl + 1;
                    if let Some(v) = line.strip_prefix(b"id: ") {
                        event_id = Some(String::from_utf8_lossy(v).into_owned());
                    } else if line.starts_with(b"data:") {
                        if let Some((i, sent)) = parse_line(line) {
                            self.received(i, sent, &mut seen, &mut got);
                            last_id = event_id.take().or(last_id);
                        }
                    } else if line == b"event: end" {
                        ended = true;
                    }
                }
                buf.drain(..start);
            }
            if ended || Instant::now() > self.deadline {
                return got;
            }
            // The server ended the stream early: come back for the rest, as a browser does.
            got.reconnects += 1;
        }
    }

    /// Line `i`, sent at `sent` µs, arrived now.
    fn received(&self, i: u64, sent: u64, seen: &mut [bool], got: &mut Got) {
        let now = since_epoch_us();
        if let Some(slot) = seen.get_mut(i as usize)
            && !*slot
        {
            *slot = true;
            got.received += 1;
            self.tally.received.store(got.received, Ordering::Relaxed);
            let us = now.saturating_sub(sent).min(u64::from(u32::MAX));
            got.delays_us.push(us as u32);
        }
    }
}

/// `…@@<line>:<sent µs>@@…` (in an HTML fragment or JSON alike).
fn parse_line(data: &[u8]) -> Option<(u64, u64)> {
    let at = data.windows(2).position(|w| w == b"@@")? + 2;
    let rest = &data[at..];
    let body = &rest[..rest.windows(2).position(|w| w == b"@@")?];
    let colon = body.iter().position(|&b| b == b':')?;
    let num = |d: &[u8]| std::str::from_utf8(d).ok()?.parse().ok();
    Some((num(&body[..colon])?, num(&body[colon + 1..])?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_parse_from_html_and_json() {
        assert_eq!(
            super::parse_line(br#"<div class="line"><time>12:00</time> @@12:3456@@</div>"#),
            Some((12, 3456))
        );
        assert_eq!(
            super::parse_line(br#"{"id":5,"line":"@@0:1@@"}"#),
            Some((0, 1))
        );
        assert_eq!(super::parse_line(b"pong"), None);
    }
}
