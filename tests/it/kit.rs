//! The testing kit (`nightshift::testing`) on a sample job, as an application's tests use it.
use std::time::Duration;

use nightshift::testing::{Drained, Outcome, assert_enqueued, drain, perform, refute_enqueued};
use nightshift::{JobArgs, JobContext, ResultCell};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::helpers::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Import {
    customer_id: i64,
    rows: u32,
    /// How the sample handler should end.
    end: String,
    #[schemars(extend("writeOnly" = true))]
    api_key: String,
}

impl JobArgs for Import {
    const KIND: &'static str = "import";
}

async fn import(args: Import, ctx: JobContext) -> anyhow::Result<()> {
    ctx.log(format!("importing {} rows", args.rows)).await?;
    for i in 0..args.rows {
        let cell = if i == 2 && args.end == "bad row" {
            ResultCell::error(format!("row {i}"), "no such product")
        } else {
            ResultCell::ok(format!("row {i}"))
        };
        ctx.add_result_row(vec![cell]).await?;
    }
    ctx.set_progress(100).await?;
    ctx.set_progress_text("imported").await?;
    match args.end.as_str() {
        "fail" => anyhow::bail!("the CSV was truncated"),
        "cancel" => Err(nightshift::cancel("customer closed their account")),
        "snooze" => Err(nightshift::snooze(Duration::from_secs(60))),
        "panic" => panic!("unreachable row"),
        _ => Ok(()),
    }
}

fn job(customer_id: i64, end: &str) -> Import {
    Import {
        customer_id,
        rows: 3,
        end: end.into(),
        api_key: "sk-live-1".into(),
    }
}

#[tokio::test]
async fn perform_runs_a_handler_inline_and_records_what_it_reported() {
    let run = perform(import, job(1, "ok")).await;
    assert_eq!(run.outcome, Outcome::Done);
    assert_eq!(run.logs, ["importing 3 rows"]);
    assert_eq!(run.progress, Some(100));
    assert_eq!(run.progress_text.as_deref(), Some("imported"));
    assert_eq!(run.rows.len(), 3);
    assert_eq!(run.rows[1][0].value, "row 1");

    assert_eq!(
        perform(import, job(1, "bad row")).await.outcome,
        Outcome::ErrorRows(1)
    );
    assert_eq!(
        perform(import, job(1, "fail")).await.outcome,
        Outcome::Failed("the CSV was truncated".into())
    );
    assert_eq!(
        perform(import, job(1, "cancel")).await.outcome,
        Outcome::Cancelled("customer closed their account".into())
    );
    assert_eq!(
        perform(import, job(1, "snooze")).await.outcome,
        Outcome::Snoozed(Duration::from_secs(60))
    );
    assert_eq!(
        perform(import, job(1, "panic")).await.outcome,
        Outcome::Panicked("unreachable row".into())
    );
    // Arguments that do not fit the type name the field, as a stored job's would.
    let kind = nightshift::JobKind::of(import);
    let run = nightshift::testing::perform_kind(&kind, serde_json::json!({"customer_id": 1})).await;
    assert!(
        matches!(&run.outcome, Outcome::BadArgs(m) if m.contains("rows")),
        "{run:?}"
    );
}

both_databases! {
    /// `assert_enqueued` finds a job by its typed arguments (secrets decrypted), `refute_enqueued`
    /// fails on one, and `drain` runs everything due, counting how each ended.
    async fn assert_enqueued_and_drain(db: TestDb) {
        let worker = builder(&db)
            .secret_key(nightshift::secrets::Keyring::generate())
            .build()
            .await
            .unwrap();
        worker.handle(import).unwrap();
        let client = worker.client();
        for (customer, end) in [(7, "ok"), (8, "ok"), (9, "fail"), (10, "cancel")] {
            client.enqueue(job(customer, end)).await.unwrap();
        }
        let id = assert_enqueued::<Import>(&client, |j| j.customer_id == 9).await;
        assert_eq!(client.job(id).await.unwrap().args["api_key"], nightshift::kind::SECRET_MASK);
        assert_enqueued::<Import>(&client, |j| j.api_key == "sk-live-1").await;
        refute_enqueued::<Import>(&client, |j| j.customer_id == 11).await;
        let missing = tokio::spawn({
            let client = client.clone();
            async move { assert_enqueued::<Import>(&client, |j| j.customer_id == 11).await }
        })
        .await;
        assert!(missing.is_err(), "assert_enqueued panics when nothing matches");

        let drained = drain(&worker, Duration::from_secs(20)).await.unwrap();
        assert_eq!(drained, Drained { done: 2, failed: 1, cancelled: 1 });
        assert!(nightshift::testing::enqueued::<Import>(&client).await.unwrap().is_empty());
        worker.shutdown().await;
    }
}
