//! `nightshift bench --search`: list searches over a table of `--jobs` jobs with varied
//! arguments, through the real admin over HTTP (the HTML page a browser gets), p50/p95 per query.
//!
//! The table: customer ids cycle over 100,000 (a given id: 1 job in 100,000), plans are `pro`
//! (30 %), `basic` (60 %) and `enterprise` (10 %), each with an email `user<id>@example.com`
//! and a secret field. A fifth of the jobs are done, half of them `enterprise` (the Done tab
//! with a search).
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::drain::CHUNK;
use super::http::Conn;
use super::web::Server;
use super::{Latency, Progress, Target, group, stop, worker};
use crate::{JobKind, NewJob};

const KIND: &str = "Bench Customer";

/// The bench kind's arguments.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Customer {
    customer_id: u64,
    email: String,
    plan: String,
    #[schemars(extend("writeOnly" = true))]
    token: String,
}

/// The queries measured: (figure name, `q`, extra query parameters).
pub const QUERIES: [(&str, &str, &str); 6] = [
    ("key_value_selective", "customer_id:4242", ""),
    ("key_value_common", "plan:pro", ""),
    ("free_text_selective", "user4242", ""),
    ("free_text_common", "example", ""),
    ("phrase_and_key", "\"user4242 example\" plan:pro", ""),
    ("tab_and_key_common", "plan:enterprise", "&status=done"),
];

/// Fills a table of `jobs` and measures each query `samples` times.
pub async fn run(
    database_url: Option<&str>,
    jobs: u64,
    samples: usize,
    progress: bool,
) -> anyhow::Result<Value> {
    let target = Target::new(database_url)?;
    let progress = Progress::new(progress, 2);
    let out = target
        .with_db("search", |url| measure(url, jobs, samples, &progress))
        .await;
    progress.finish();
    target.close();
    let mut report = out?;
    report.insert("backend".into(), Value::from(target.backend()));
    report.insert("jobs".into(), Value::from(jobs));
    Ok(Value::Object(report))
}

async fn measure(
    url: String,
    jobs: u64,
    samples: usize,
    progress: &Progress,
) -> anyhow::Result<Map<String, Value>> {
    let worker = worker(&url).await?;
    // Declared, not run: the jobs stay where the fill puts them.
    worker.register(JobKind::declare::<Customer>(KIND))?;
    progress.step(format!("filling {} jobs", group(jobs)));
    let t = Instant::now();
    let mut done = 0;
    while done < jobs {
        let k = CHUNK.min(jobs - done);
        let batch = (done..done + k)
            .map(|i| {
                let c = i % 100_000;
                let plan = match i % 10 {
                    0..=2 => "pro",
                    3..=8 => "basic",
                    _ => "enterprise",
                };
                NewJob::from_value(
                    KIND,
                    serde_json::json!({
                        "customer_id": c,
                        "email": format!("user{c}@example.com"),
                        "plan": plan,
                        "token": format!("secret{i}"),
                    }),
                )
            })
            .collect();
        worker.insert_many(batch).await?;
        done += k;
        progress.update(format!("filling {} / {}", group(done), group(jobs)));
    }
    let fill_s = t.elapsed().as_secs_f64();
    // A tenth done, spread over the table (the Done tab with a search).
    let db = worker.store().connection().clone();
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        "UPDATE nightshift_jobs SET status = 'done' WHERE id % 10 IN (0, 3)",
    )
    .await?;
    if url.starts_with("postgres") {
        // What autovacuum does after an update of a fifth of the table (the bench's server may
        // run without it): without the visibility map every capped count reads the heap, and
        // the Done tab's count scanned the 200,000 dead row versions first (~150 ms a page).
        sea_orm::ConnectionTrait::execute_unprepared(&db, "VACUUM ANALYZE nightshift_jobs").await?;
    }
    let server = Server::start(&worker).await?;
    progress.step("searching");
    let out = async {
        let mut conn = Conn::connect(server.addr, &server.token).await?;
        let mut figures = Map::new();
        let mut store_ms = Map::new();
        for (name, q, extra) in QUERIES {
            let path = format!(
                "/workers?q={}{extra}",
                serde_urlencoded::to_string([("", q)])?.trim_start_matches('=')
            );
            let mut taken = vec![];
            for _ in 0..samples.max(1) {
                let t = Instant::now();
                let mut res = conn.get(&path, &[("Accept", "text/html")]).await?;
                let len = res.skip_body().await?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                anyhow::ensure!(
                    res.status == 200 && len > 0,
                    "GET {path} answered {}",
                    res.status
                );
                taken.push(ms);
                progress.update(format!("{name}: {ms:.1} ms"));
            }
            figures.insert(name.to_owned(), serde_json::to_value(Latency::of(&taken))?);
            // The store's read alone (the page also counts the tabs, reads nodes, renders).
            let spec = crate::store::SearchQuery::parse(
                q,
                &crate::store::SearchContext::default(),
                chrono::Utc::now(),
            )?;
            let filter = crate::store::JobFilter {
                search: Some(spec),
                statuses: if extra.contains("done") {
                    vec![crate::JobStatus::Done]
                } else {
                    vec![]
                },
                ..Default::default()
            };
            let mut taken = vec![];
            for _ in 0..samples.max(1) {
                let t = Instant::now();
                worker.store().list_jobs(&filter, None, 51).await?;
                taken.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            store_ms.insert(name.to_owned(), serde_json::to_value(Latency::of(&taken))?);
        }
        figures.insert("store_read_ms".into(), Value::Object(store_ms));
        figures.insert("fill_s".into(), Value::from((fill_s * 10.0).round() / 10.0));
        anyhow::Ok(figures)
    }
    .await;
    stop(worker).await;
    server.stop().await;
    Ok(Map::from_iter([(
        "search_ms".to_owned(),
        Value::Object(out?),
    )]))
}
