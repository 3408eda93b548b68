//! Search over a million jobs' arguments, on both databases: `key:value`, free text over values
//! only (never key names), secrets never found, bad queries refused with a message, search
//! combined with tabs and paging, and the index migration's backfill of existing rows.
use chrono::Utc;
use nightshift::JobKind;
use nightshift::store::{SearchContext, SearchQuery};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::app::{TestApp, spawn_app_on};
use crate::helpers::{TestDb, both_databases};

/// The arguments of `Customer Sync`, a kind declared here and run nowhere: its jobs wait.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Customer {
    customer_id: u64,
    email: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    plan: String,
    #[schemars(extend("writeOnly" = true))]
    #[serde(default)]
    password: String,
}

const KIND: &str = "Customer Sync";

async fn app_with_customers(db: &TestDb) -> TestApp {
    let app = spawn_app_on(&db.url).await;
    app.worker
        .register(JobKind::declare::<Customer>(KIND).schedulable())
        .unwrap();
    app
}

async fn customer(app: &TestApp, args: Value) -> i64 {
    app.worker.enqueue_dynamic(KIND, &args).await.unwrap()
}

/// The ids `/workers?{query}` lists (JSON), asserting a 200.
async fn ids(app: &TestApp, query: &str) -> Vec<i64> {
    let (status, body) = app.get_json(&format!("/workers?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect()
}

fn q(text: &str) -> String {
    format!("q={}", urlencode(text))
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_owned()
}

both_databases! {
    /// `customer_id:42` finds that argument's value; free text finds values, never key names;
    /// a secret is never found, by value or by key.
    async fn key_value_and_values_only(db: TestDb) {
        let app = app_with_customers(&db).await;
        let a = customer(&app, json!({"customer_id": 42, "email": "alice@example.com", "note": "big plan", "password": "hunter2"})).await;
        let b = customer(&app, json!({"customer_id": 420, "email": "bob@example.com", "note": "plan big"})).await;
        let c = customer(&app, json!({"customer_id": 7, "email": "customer_id@example.org"})).await;

        assert_eq!(ids(&app, &q("customer_id:42")).await, vec![a]);
        assert_eq!(ids(&app, &q("customer_id:420")).await, vec![b]);
        assert_eq!(ids(&app, &q("CUSTOMER_ID:7")).await, vec![c], "keys ignore case");
        assert_eq!(ids(&app, &q("ali")).await, Vec::<i64>::new(), "whole words");
        assert_eq!(ids(&app, &q("ali*")).await, vec![a], "a word's start");
        assert_eq!(ids(&app, &q("email:bo*")).await, vec![b]);
        assert_eq!(ids(&app, &q("alice@example.com")).await, vec![a]);
        assert_eq!(ids(&app, &q("email:example")).await, vec![c, b, a]);
        assert_eq!(ids(&app, &q("\"big plan\"")).await, vec![a], "a phrase is in order");
        assert_eq!(ids(&app, &q("big plan")).await, vec![b, a], "words in any order");
        // Only job c holds the words customer and id in a value; a and b hold the key only.
        assert_eq!(ids(&app, &q("customer_id")).await, vec![c]);
        assert_eq!(ids(&app, &q("email")).await, Vec::<i64>::new(), "a key is not a value");
        assert_eq!(ids(&app, &q("customer_id:42 kind:\"customer sync\" state:new")).await, vec![a]);
        assert_eq!(ids(&app, &q("customer_id:42 state:done")).await, Vec::<i64>::new());
        for secret in ["hunter2", "hunter*", "password:hunter2", "password:h*", "\"hunter2\""] {
            assert_eq!(ids(&app, &q(secret)).await, Vec::<i64>::new(), "{secret}");
        }
        assert_eq!(ids(&app, &q("password:x")).await, Vec::<i64>::new());
    }

    /// A bad query is refused with a message naming the problem: 422 JSON with `fields.q`, and
    /// on the page above an empty list — never every job as if it matched, never a 500.
    async fn bad_queries_say_why(db: TestDb) {
        let app = app_with_customers(&db).await;
        customer(&app, json!({"customer_id": 1, "email": "a@example.com"})).await;
        for (query, needle) in [
            ("after:yesterday", "is not a date"),
            ("customer_idd:1", "unknown field"),
            ("state:sleeping", "is not a state"),
            ("\"open", "not closed"),
            ("***", "no letters or digits"),
        ] {
            let (status, body) = app.get_json(&format!("/workers?{}", q(query))).await;
            assert_eq!(status, 422, "{query}: {body}");
            let msg = body["fields"]["q"].as_str().unwrap_or_else(|| panic!("{body}"));
            assert!(msg.contains(needle), "{query}: {body}");
            assert!(body["error"].as_str().unwrap().contains(needle), "{body}");
            let (status, html) = app.get_html(&format!("/workers?{}", q(query))).await;
            assert_eq!(status, 422, "{query}");
            assert!(html.contains("role=\"alert\""), "{html}");
            assert!(!html.contains("a@example.com"), "no job listed under a bad query");
        }
        let (status, html) = app.get_html(&format!("/workers?{}", q("after:yesterday"))).await;
        assert_eq!(status, 422);
        assert!(html.contains("after:&quot;yesterday&quot; is not a date"), "{html}");
        // The live stream refuses it too.
        let res = app.client.get(app.url(&format!("/workers/events?{}", q("after:yesterday")))).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 422);
    }

    /// Search with a tab, with `state:`, and across pages: the keyset pages hold every match
    /// once, and nothing else.
    async fn with_tabs_and_paging(db: TestDb) {
        let app = app_with_customers(&db).await;
        let later = Utc::now() + chrono::Duration::hours(1);
        let mut pro = vec![];
        let mut scheduled = vec![];
        for i in 0..56u64 {
            let args = json!({"customer_id": i, "email": format!("c{i}@example.com"), "plan": "pro"});
            if i % 8 == 0 {
                let id = app.worker.schedule_dynamic(KIND, &args, later).await.unwrap();
                scheduled.push(id);
                pro.push(id);
            } else {
                pro.push(customer(&app, args).await);
            }
            customer(&app, json!({"customer_id": i, "email": format!("d{i}@example.com"), "plan": "basic"})).await;
        }
        pro.reverse();
        scheduled.reverse();
        let (status, first) = app.get_json(&format!("/workers?{}", q("plan:pro"))).await;
        assert_eq!(status, 200);
        let page1: Vec<i64> = first["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
        assert_eq!(page1, pro[..50].to_vec());
        let next = first["next"].as_i64().expect("a second page");
        let (_, second) = app.get_json(&format!("/workers?{}&after={next}", q("plan:pro"))).await;
        let page2: Vec<i64> = second["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
        assert_eq!(page2, pro[50..].to_vec());
        assert!(second["next"].is_null());
        let (status, _) = app.get_html(&format!("/workers?{}&after={next}", q("plan:pro"))).await;
        assert_eq!(status, 200, "the older page with its way back");

        assert_eq!(ids(&app, &format!("status=scheduled&{}", q("plan:pro"))).await, scheduled);
        assert_eq!(ids(&app, &q("plan:pro state:scheduled")).await, scheduled);
        assert_eq!(ids(&app, &format!("status=done&{}", q("plan:pro"))).await, Vec::<i64>::new());
        assert_eq!(ids(&app, &format!("job=Work&{}", q("plan:pro"))).await, Vec::<i64>::new());
        assert_eq!(ids(&app, &q("plan:pro customer_id:9")).await, vec![pro[pro.len() - 10]]);
        let since = (Utc::now() - chrono::Duration::minutes(5)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
        assert_eq!(ids(&app, &format!("{}&after={next}", q(&format!("plan:pro after:{since}")))).await.len(), 6);
        assert_eq!(ids(&app, &q(&format!("plan:pro before:{since}"))).await, Vec::<i64>::new());
    }

    /// The index migration turns the masked JSON rows held before it into index text: rows
    /// written before it are found after it.
    async fn backfill_of_existing_rows(db: TestDb) {
        use migration::{Migrator, MigratorTrait};
        use sea_orm::{ConnectionTrait, Database};

        let app = app_with_customers(&db).await;
        let a = customer(&app, json!({"customer_id": 42, "email": "alice@example.com", "password": "hunter2"})).await;
        app.worker.shutdown().await;
        let conn = Database::connect(&db.url).await.unwrap();
        let from_here = Migrator::migrations()
            .iter()
            .filter(|m| m.name() >= "m20261230_000002_search_index")
            .count() as u32;
        Migrator::down(&conn, Some(from_here)).await.unwrap();
        // As the column was filled before: the masked arguments as JSON.
        conn.execute_unprepared(
            r#"UPDATE nightshift_jobs SET search = '{"customer_id":42,"email":"alice@example.com","password":"••••••"}'"#,
        )
        .await
        .unwrap();
        Migrator::up(&conn, None).await.unwrap();
        let worker = crate::helpers::builder(&db).build().await.unwrap();
        let found = |text: &str| {
            let filter = nightshift::store::JobFilter {
                search: Some(
                    SearchQuery::parse(text, &SearchContext::default(), Utc::now()).unwrap(),
                ),
                ..Default::default()
            };
            let store = worker.store().clone();
            async move {
                store
                    .list_jobs(&filter, None, 10)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|m| m.id)
                    .collect::<Vec<i64>>()
            }
        };
        assert_eq!(found("customer_id:42").await, vec![a]);
        assert_eq!(found("alice").await, vec![a]);
        assert_eq!(found("customer").await, Vec::<i64>::new());
        assert_eq!(found("hunter2").await, Vec::<i64>::new());
    }
}

/// A live list with a search takes in new jobs that match it, and only those (the stream judges
/// each job by the same rules as the index).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_list_with_a_search_takes_matching_jobs_only() {
    use crate::polish::{read_events, stream};

    let db = TestDb::sqlite();
    let app = app_with_customers(&db).await;
    let mut live = stream(
        &app,
        &format!("/workers/events?status=all&{}", q("customer_id:42")),
    )
    .await;
    let other = customer(
        &app,
        json!({"customer_id": 420, "email": "customer_id@example.com"}),
    )
    .await;
    let hit = customer(&app, json!({"customer_id": 42, "email": "x@example.com"})).await;
    let mut seen = Vec::new();
    read_events(&mut live, &mut seen, "the matching job's row", |s| {
        s.iter()
            .any(|e| e.event == "new-row" && e.data.contains(&format!("id=\"job-{hit}\"")))
    })
    .await;
    assert!(
        !seen
            .iter()
            .any(|e| e.event == "new-row" && e.data.contains(&format!("id=\"job-{other}\""))),
        "{seen:#?}"
    );
}
