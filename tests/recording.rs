//! Session recordings (`[recording]`): an asciicast v2 file per session with its output, its
//! resizes and (only with `audit.record_input`) its input, served to the owner and admins
//! (anyone else: 404); the size cap; deletion past `recording.retention`.

mod common;

use std::time::Duration;

use common::{eventually, Client, TestServer};
use kterm::config::{ByteSize, HumanDuration};
use serde_json::{json, Value};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789abc";
const ROOT: &str = "root-token-0123456789abc";

async fn start(adjust: impl FnOnce(&mut kterm::Config)) -> TestServer {
    TestServer::start_with(|c| {
        common::token_auth(c, &[("alice", ALICE), ("bob", BOB), ("root", ROOT)], &["root"]);
        c.recording.enabled = true;
        adjust(c);
    })
    .await
}

/// The recording as (status, header, events).
async fn recording(client: &Client, id: &str) -> (u16, Value, Vec<Value>) {
    let response = client
        .request(reqwest::Method::GET, &format!("/api/v1/sessions/{id}/recording"))
        .send()
        .await
        .expect("GET recording");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let mut lines = text.lines();
    let header = lines.next().and_then(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
    let events = lines.filter_map(|l| serde_json::from_str(l).ok()).collect();
    (status, header, events)
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e[1] == kind).collect()
}

fn joined(events: &[Value], kind: &str) -> String {
    of_kind(events, kind).iter().map(|e| e[2].as_str().unwrap_or("")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_recorded_as_asciicast_for_its_owner_and_admins() {
    let server = start(|c| c.audit.record_input = true).await;
    let (alice, bob, root) = (server.bearer(ALICE), server.bearer(BOB), server.bearer(ROOT));
    let session = alice.create(json!({"cols": 90, "rows": 20})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let mut term = alice.attach(&id).await;
    term.send("echo rec-$((3*4)) é\n").await;
    term.read_until("rec-12 é").await;
    term.resize(100, 30).await;
    term.send("stty size\n").await;
    term.read_until("30 100").await;

    let (_, header, events) = eventually("the output recorded", || async {
        let got = recording(&alice, &id).await;
        (got.0 == 200 && joined(&got.2, "o").contains("30 100")).then_some(got)
    })
    .await;
    assert_eq!(
        (header["version"].as_u64(), header["width"].as_u64(), header["height"].as_u64()),
        (Some(2), Some(90), Some(20)),
        "{header}"
    );
    assert!(joined(&events, "o").contains("rec-12 é"), "UTF-8 kept: {events:?}");
    assert!(joined(&events, "i").contains("echo rec-$((3*4))"), "input recorded: {events:?}");
    assert!(of_kind(&events, "r").iter().any(|e| e[2] == "100x30"), "{events:?}");
    let times: Vec<f64> = events.iter().map(|e| e[0].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "times only grow: {times:?}");

    assert_eq!(recording(&bob, &id).await.0, 404, "another user's is 404");
    assert_eq!(recording(&root, &id).await.0, 200, "admins may");
    assert_eq!(recording(&server.anonymous(), &id).await.0, 401);
    assert_eq!(recording(&alice, "..%2F..%2Fkterm.db").await.0, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_is_recorded_only_with_record_input_and_the_size_is_capped() {
    let server = start(|c| c.recording.max_size = ByteSize(4096)).await;
    let alice = server.bearer(ALICE);
    let id = alice.create_id().await;
    let mut term = alice.attach(&id).await;
    term.send("echo small-$((1+1))\n").await;
    term.read_until("small-2").await;
    term.send("head -c 20000 /dev/zero | tr '\\0' x; echo; echo big-done\n").await;
    term.read_until("big-done").await;
    let (_, _, events) = eventually("the cap's marker", || async {
        let got = recording(&alice, &id).await;
        (!of_kind(&got.2, "m").is_empty()).then_some(got)
    })
    .await;
    assert!(of_kind(&events, "i").is_empty(), "no input without audit.record_input");
    assert!(joined(&events, "o").contains("small-2"));
    let path = server.dir.path().join("recordings").join(format!("{id}.cast"));
    let size = std::fs::metadata(&path).expect("the file").len();
    assert!(size <= 4096 + 200, "capped: {size} bytes");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_past_their_retention_are_deleted() {
    let server = start(|c| c.recording.retention = HumanDuration(Duration::from_secs(1))).await;
    let alice = server.bearer(ALICE);
    let id = alice.create_id().await;
    let mut term = alice.attach(&id).await;
    term.send("echo kept-$((1+1))\n").await;
    term.read_until("kept-2").await;
    assert_eq!(alice.delete(&format!("/api/v1/sessions/{id}")).await, 204);
    assert_eq!(recording(&alice, &id).await.0, 200);
    let recordings = server.state().registry.recordings().expect("recording on").clone();
    eventually("the old recording deleted", || async {
        (recordings.prune().await == 1).then_some(())
    })
    .await;
    assert_eq!(recording(&alice, &id).await.0, 404);
    server.stop().await;
}

/// The session object says whether there is a recording to play (`recorded`) and when it
/// ended (`ended_at`): what the web UI's Sessions panel shows "Play" and "Ended" from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_say_whether_they_are_recorded_and_when_they_ended() {
    let server = start(|_| {}).await;
    let alice = server.bearer(ALICE);
    let session = alice.create(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();
    assert_eq!(session["recorded"], true, "{session}");
    assert!(session["ended_at"].is_null(), "{session}");
    assert_eq!(alice.delete(&format!("/api/v1/sessions/{id}")).await, 204);
    let (_, list) = alice.get("/api/v1/sessions?all=true").await;
    let ended = list["sessions"].as_array().unwrap().iter().find(|s| s["id"] == id.as_str());
    let ended = ended.unwrap_or_else(|| panic!("listed: {list}"));
    assert_eq!(ended["recorded"], true, "{ended}");
    let at = ended["ended_at"].as_str().unwrap_or_else(|| panic!("ended_at: {ended}"));
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{ended}");

    let unrecorded = TestServer::start_with(|c| {
        common::token_auth(c, &[("alice", ALICE)], &[]);
    })
    .await;
    let session = unrecorded.bearer(ALICE).create(json!({})).await;
    assert_eq!(session["recorded"], false, "recording off: {session}");
    unrecorded.stop().await;
    server.stop().await;
}
