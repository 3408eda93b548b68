//! `GET /nodes`: the nodes sharing the database, their leases and the jobs each runs.
use nightshift::{JobStatus, Role};
use serde_json::json;

use crate::app::spawn_app;
use crate::helpers::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_lists_this_node_with_the_job_it_runs() {
    let app = spawn_app().await;
    let id = app.create("Work", json!({"ms": 30_000})).await;
    wait_for(&app.worker, id, "running", |j| {
        j.status == JobStatus::Running
    })
    .await;

    let (status, body) = app.get_json("/nodes").await;
    assert_eq!(status, 200, "{body}");
    let nodes = body["nodes"].as_array().expect("a nodes array");
    let me = nodes
        .iter()
        .find(|n| n["id"] == app.worker.node_id())
        .unwrap_or_else(|| panic!("this node in {body}"));
    let keys: Vec<&str> = me.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "host",
            "pid",
            "version",
            "started_at",
            "heartbeat_at",
            "running"
        ]
    );
    assert_eq!(me["pid"], std::process::id());
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
    assert!(!me["host"].as_str().unwrap().is_empty());
    assert_eq!(me["running"], 1, "{me}");
    for field in ["started_at", "heartbeat_at"] {
        let text = me[field].as_str().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339");
        assert!(text.ends_with('Z'), "UTC: {text}");
        let age = chrono::Utc::now() - at.to_utc();
        assert!(
            age < chrono::Duration::minutes(1),
            "{field} is recent: {text}"
        );
    }

    // Finished work no longer counts.
    app.worker.abort(id, "tests").await.unwrap();
    wait_for(&app.worker, id, "killed", |j| j.status.is_finished()).await;
    let (_, body) = app.get_json("/nodes").await;
    let me = body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == app.worker.node_id())
        .cloned()
        .unwrap();
    assert_eq!(me["running"], 0, "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_the_node_its_lease_and_links_to_its_jobs() {
    let app = spawn_app().await;
    let id = app.create("Work", json!({"ms": 30_000})).await;
    wait_for(&app.worker, id, "running", |j| {
        j.status == JobStatus::Running
    })
    .await;

    let (status, html) = app.get_html("/nodes").await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>Nodes</h1>"), "{html}");
    assert!(
        html.contains(app.worker.node_id()),
        "the node's id in {html}"
    );
    assert!(html.contains("this node"));
    assert!(html.contains(" s ago"), "the lease age in {html}");
    assert!(
        html.contains(&format!("href=\"/workers/{id}\"")),
        "a link to the running job in {html}"
    );
    assert!(html.contains(&std::process::id().to_string()));

    // Every page links to it from the navigation.
    let (_, list) = app.get_html("/workers").await;
    assert!(list.contains("href=\"/nodes\""), "{list}");

    // htmx refreshes the table alone.
    let res = app
        .client
        .get(app.url("/nodes"))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let fragment = res.text().await.unwrap();
    assert!(fragment.starts_with("<div id=\"nodes\""), "{fragment}");
    assert!(!fragment.contains("<html"));
    assert!(fragment.contains(app.worker.node_id()));
    app.worker.abort(id, "tests").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_prefix_the_links_stay_inside_it() {
    let app = crate::app::spawn_app_at("/admin/jobs").await;
    let id = app.create("Work", json!({"ms": 30_000})).await;
    wait_for(&app.worker, id, "running", |j| {
        j.status == JobStatus::Running
    })
    .await;
    let (status, html) = app.get_html("/nodes").await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("href=\"/admin/jobs/workers/{id}\"")),
        "{html}"
    );
    assert!(html.contains("hx-get=\"/admin/jobs/nodes\""), "{html}");
    app.worker.abort(id, "tests").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_it_and_anonymous_visitors_are_turned_away() {
    let app = spawn_app().await;
    let accounts = nightshift::auth::Accounts::new(app.worker.store().connection().clone());
    accounts
        .add("vera", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let (token, _) = accounts.create_token("vera", "read").await.unwrap();
    let res = app
        .anonymous
        .get(app.url("/nodes"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["nodes"].is_array(), "{body}");
    let res = app
        .anonymous
        .get(app.url("/nodes"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.text().await.unwrap().contains("<h1>Nodes</h1>"));

    // Anonymous: a browser goes to the login page, a script gets 401.
    let res = app.anonymous.get(app.url("/nodes")).send().await.unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let to = res.headers()["location"].to_str().unwrap();
    assert!(to.starts_with("/login?next=%2Fnodes"), "{to}");
    let res = app
        .anonymous
        .get(app.url("/nodes"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
}

/// Two nodes on one database: each is listed, and each running job counts on the node that
/// runs it.
async fn two_nodes_each_with_their_own_jobs(db: crate::helpers::TestDb) {
    let app = crate::app::spawn_app_on(&db.url).await;
    let other = crate::helpers::builder(&db).build().await.unwrap();
    crate::helpers::register(&other);
    other.start().await.unwrap();
    let mut ids = vec![];
    for _ in 0..4 {
        ids.push(app.create("Work", json!({"ms": 30_000})).await);
    }
    let mut on = std::collections::HashMap::<String, u64>::new();
    for id in &ids {
        let job = wait_for(&app.worker, *id, "running", |j| {
            j.status == JobStatus::Running
        })
        .await;
        *on.entry(job.node.clone().expect("a running job has a node"))
            .or_default() += 1;
    }
    let (status, body) = app.get_json("/nodes").await;
    assert_eq!(status, 200, "{body}");
    let nodes = body["nodes"].as_array().unwrap();
    for id in [app.worker.node_id(), other.node_id()] {
        let n = nodes
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("node {id} in {body}"));
        assert_eq!(n["running"], on.get(id).copied().unwrap_or(0), "{body}");
    }
    let (_, html) = app.get_html("/nodes").await;
    for id in &ids {
        assert!(html.contains(&format!("href=\"/workers/{id}\"")), "{html}");
    }

    // A node that leaves is no longer listed.
    other.shutdown().await;
    let (_, body) = app.get_json("/nodes").await;
    let listed: Vec<&str> = body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert!(!listed.contains(&other.node_id()), "{body}");
    assert!(listed.contains(&app.worker.node_id()), "{body}");
    for id in ids {
        let _ = app.worker.abort(id, "tests").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_sqlite_each_with_their_own_jobs() {
    two_nodes_each_with_their_own_jobs(crate::helpers::TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_each_with_their_own_jobs() {
    if let Some(db) = crate::helpers::TestDb::postgres().await {
        two_nodes_each_with_their_own_jobs(db).await;
    }
}
