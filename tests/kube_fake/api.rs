//! The REST side against the recordings: pod create (201 body), the watch from create to
//! deletion, error Statuses (404, 409, 422, PodSecurity 403, RBAC 403), label patch and
//! selectors, SubjectAccessReview, NetworkPolicy, 410 Gone, quota, and pause/resume.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{json, Value};

use super::common::kube_fake::{AccessRule, FakeUser, Subject};
use super::*;

#[tokio::test]
async fn pod_create_answers_as_the_recorded_201() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let recorded = sample("01-restricted-pod-create.json");
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/samples/pods",
        Some(&recorded["request"]["body"]),
        "application/json",
    )
    .await;
    assert_eq!(code, 201);
    assert_same_shape("the created pod", &body, &recorded["response"]["body"]);
    assert_eq!(body["metadata"]["resourceVersion"].as_str().map(|rv| !rv.is_empty()), Some(true));
}

#[tokio::test]
async fn watch_follows_a_pod_from_create_to_deleted_as_recorded() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    let list = pods.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.expect("a list resourceVersion");
    let params = WatchParams::default().fields("metadata.name=restricted-watch");
    let mut stream = pods.watch(&params, &rv).await.expect("watch").boxed();
    create_pod(&client, "samples", &restricted_pod("restricted-watch")).await;

    let mut seen: Vec<(String, Value)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline.into(), stream.try_next())
        .await
        .expect("watch events in time")
    {
        let (kind, pod) = match event {
            WatchEvent::Added(p) => ("ADDED", p),
            WatchEvent::Modified(p) => ("MODIFIED", p),
            WatchEvent::Deleted(p) => ("DELETED", p),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        };
        let object = serde_json::to_value(&pod).expect("json");
        let running = kind == "MODIFIED"
            && phase(&object) == "Running"
            && object["metadata"]["deletionTimestamp"].is_null();
        seen.push((kind.to_string(), object));
        if running {
            pods.delete("restricted-watch", &DeleteParams::default()).await.expect("delete");
        }
        if kind == "DELETED" {
            break;
        }
    }
    let recorded: Vec<Value> = std::fs::read_to_string(format!(
        "{}/tests/data/k8s-api-samples/01-restricted-pod-watch-events.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("the recorded watch")
    .lines()
    .map(|l| serde_json::from_str(l).expect("a watch event"))
    .collect();
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    let recorded_kinds: Vec<&str> =
        recorded.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, recorded_kinds, "the same events in the same order");
    for (i, ((_, ours), theirs)) in seen.iter().zip(&recorded).enumerate() {
        // kube's typed Pod drops nothing the recording has, so compare the whole object.
        assert_same_shape(&format!("watch event {i}"), ours, &theirs["object"]);
    }
    let rvs: Vec<u64> = seen
        .iter()
        .map(|(_, o)| o["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "every change bumps the resourceVersion: {rvs:?}");
    assert!(fake.pod("samples", "restricted-watch").is_none());
}

#[tokio::test]
async fn error_statuses_match_the_recorded_bodies() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let recorded = sample("06-error-statuses.json");
    let cases = [
        "404_missing_pod",
        "409_duplicate_name",
        "422_invalid_spec",
        "403_podsecurity_restricted_violation",
    ];
    for case in cases {
        let request = &recorded[case]["request"];
        let path = request["url"].as_str().unwrap().trim_start_matches("https://127.0.0.1:6443");
        if case == "409_duplicate_name" {
            let (code, _) =
                raw(&client, "POST", path, Some(&request["body"]), "application/json").await;
            assert_eq!(code, 201, "the first dup-name is created");
        }
        let body = request["body"].is_object().then_some(&request["body"]);
        let (code, answer) =
            raw(&client, request["method"].as_str().unwrap(), path, body, "application/json").await;
        let expected = &recorded[case]["response"];
        assert_eq!(code as u64, expected["status"].as_u64().unwrap(), "{case}: {answer}");
        assert_eq!(answer, expected["body"], "{case}");
    }
}

#[tokio::test]
async fn rbac_denial_is_a_403_like_the_recorded_one() {
    let Some(fake) = sample_cluster_with(|o| {
        o.users.push(FakeUser::new("nobody-token", "no-rbac-user", &["k8s-local-nobody"]))
    }) else {
        return;
    };
    let client = client_from(&fake.kubeconfig_for("no-rbac-user", "samples")).await;
    let recorded = &sample("06-error-statuses.json")["403_forbidden_no_rbac"]["response"];
    let (code, body) =
        raw(&client, "GET", "/api/v1/namespaces/samples/pods", None, "application/json").await;
    assert_eq!(code, 403);
    assert_eq!(body, recorded["body"]);

    // Exec over a WebSocket is a GET: v1.24 authorizes it as `get` on pods/exec.
    let (code, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/samples/pods/x/exec?command=sh",
        None,
        "application/json",
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "pods \"x\" is forbidden: User \"no-rbac-user\" cannot get resource \"pods/exec\" in API group \"\" in the namespace \"samples\""
    );
    fake.add_rule(AccessRule::allow(
        Subject::Group("k8s-local-nobody".into()),
        &["list"],
        &["pods"],
        &["samples"],
    ));
    let (code, _) =
        raw(&client, "GET", "/api/v1/namespaces/samples/pods", None, "application/json").await;
    assert_eq!(code, 200, "an allow rule lets the group list pods");
    let (code, body) =
        raw(&client, "GET", "/api/v1/namespaces/default/pods", None, "application/json").await;
    assert_eq!((code, body["reason"].as_str()), (403, Some("Forbidden")), "only in its namespace");

    let mut bad = fake.kubeconfig_path().to_path_buf();
    bad.set_file_name("kubeconfig-bad-token");
    std::fs::write(
        &bad,
        std::fs::read_to_string(fake.kubeconfig_path())
            .unwrap()
            .replace("kube-fake-admin-token", "wrong"),
    )
    .unwrap();
    let (code, body) =
        raw(&client_from(&bad).await, "GET", "/api/v1/namespaces", None, "application/json").await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")));
}

#[tokio::test]
async fn labels_patch_then_select() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    for name in ["warm-a", "warm-b"] {
        create_pod(&client, "samples", &restricted_pod(name)).await;
    }
    let merge = Patch::Merge(json!({"metadata": {"labels": {"kterm.io/user": "alice"}}}));
    let patched = pods.patch("warm-a", &PatchParams::default(), &merge).await.expect("merge patch");
    assert_eq!(patched.metadata.labels.unwrap()["kterm.io/user"], "alice");
    let strategic = Patch::Strategic(
        json!({"metadata": {"labels": {"kterm.io/role": "claimed", "app": null}}}),
    );
    pods.patch("warm-a", &PatchParams::default(), &strategic).await.expect("strategic patch");
    let list = pods
        .list(&ListParams::default().labels("kterm.io/user=alice,kterm.io/role in (claimed)"))
        .await
        .expect("list");
    let names: Vec<String> = list.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, vec!["warm-a".to_string()]);
    let list =
        pods.list(&ListParams::default().labels("app=k8s-local-sample")).await.expect("list");
    assert_eq!(list.items.len(), 1, "the strategic patch removed warm-a's app label");
    assert!(fake.pods().iter().any(|p| p.name == "warm-a"
        && p.labels.get("kterm.io/role").map(String::as_str) == Some("claimed")));

    // A claim conditioned on the resourceVersion it read: the second writer loses. (Status
    // updates bump the resourceVersion too: wait until the kubelet is done with the pod.)
    fake.wait_pod("samples", "warm-b", WAIT, |p| phase(p) == "Running").await.expect("warm-b runs");
    let current = pods.get("warm-b").await.expect("get");
    let rv = current.metadata.resource_version.clone().unwrap();
    let claim = |user: &str| {
        Patch::Merge(
            json!({"metadata": {"resourceVersion": rv, "labels": {"kterm.io/user": user}}}),
        )
    };
    pods.patch("warm-b", &PatchParams::default(), &claim("bob"))
        .await
        .expect("the first claim wins");
    let lost = pods
        .patch("warm-b", &PatchParams::default(), &claim("carol"))
        .await
        .expect_err("the second claim conflicts");
    assert!(
        matches!(lost, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{lost:?}"
    );

    let bad = Patch::Merge(json!({"metadata": {"labels": {"kterm.io/user": "alice@example.com"}}}));
    let invalid = pods
        .patch("warm-a", &PatchParams::default(), &bad)
        .await
        .expect_err("an invalid label value");
    assert!(
        matches!(invalid, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("a valid label must be")),
        "{invalid:?}"
    );
    let spec = Patch::Merge(
        json!({"spec": {"containers": [{"name": "main", "image": "x", "command": ["true"]}]}}),
    );
    let forbidden =
        pods.patch("warm-a", &PatchParams::default(), &spec).await.expect_err("spec is immutable");
    assert!(matches!(forbidden, kube::Error::Api(ref s) if s.code == 422), "{forbidden:?}");
    assert!(fake.request_count("patch", "pods") >= 5);
}

#[tokio::test]
async fn subject_access_reviews_decide_by_the_rules() {
    let Some(fake) = sample_cluster_with(|o| {
        o.rules.push(AccessRule::allow(
            Subject::User("system:kube-scheduler".into()),
            &["get", "list", "watch"],
            &["pods"],
            &[],
        ));
        o.rules[0].reason = Some(
            "RBAC: allowed by ClusterRoleBinding \"system:kube-scheduler\" of ClusterRole \"system:kube-scheduler\" to User \"system:kube-scheduler\""
                .into(),
        );
    }) else {
        return;
    };
    let client = client(&fake).await;
    let recorded = sample("03-subjectaccessreview.json");
    for case in ["allowed", "denied"] {
        let request = &recorded[case]["request"]["body"];
        let (code, body) = raw(
            &client,
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(request),
            "application/json",
        )
        .await;
        assert_eq!(code, 201);
        assert_same_shape(case, &body, &recorded[case]["response"]["body"]);
    }
    // Through kube's typed API, with a subresource and an explicit denial.
    fake.add_rule(AccessRule::allow(
        Subject::User("alice".into()),
        &["create"],
        &["pods/exec"],
        &["kterm"],
    ));
    fake.add_rule(AccessRule::deny(
        Subject::Group("contractors".into()),
        &["*"],
        &["*"],
        &[],
        "no access for contractors",
    ));
    let reviews: Api<SubjectAccessReview> = Api::all(client);
    let review = |user: &str, groups: &[&str], ns: &str| -> SubjectAccessReview {
        serde_json::from_value(json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": {"namespace": ns, "verb": "create", "resource": "pods", "subresource": "exec"}}
        }))
        .unwrap()
    };
    let decide = |sar: SubjectAccessReview| {
        let reviews = reviews.clone();
        async move {
            reviews
                .create(&PostParams::default(), &sar)
                .await
                .expect("a review")
                .status
                .expect("a status")
        }
    };
    let ok = decide(review("alice", &[], "kterm")).await;
    assert!(ok.allowed && ok.reason.unwrap_or_default().contains("alice"));
    assert!(!decide(review("alice", &[], "other")).await.allowed);
    let denied = decide(review("bob", &["contractors"], "kterm")).await;
    assert_eq!(
        (denied.allowed, denied.denied, denied.reason.as_deref()),
        (false, Some(true), Some("no access for contractors"))
    );
}

#[tokio::test]
async fn network_policy_create_answers_as_recorded_and_round_trips() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let recorded = sample("04-networkpolicy-create.json");
    let (code, body) = raw(
        &client,
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/samples/networkpolicies",
        Some(&recorded["request"]["body"]),
        "application/json",
    )
    .await;
    assert_eq!(code, 201);
    assert_same_shape("the created NetworkPolicy", &body, &recorded["response"]["body"]);

    let policies: Api<NetworkPolicy> = Api::namespaced(client, "samples");
    let mut policy = policies.get("deny-all-ingress").await.expect("get");
    policy.spec.as_mut().unwrap().egress = None;
    let replaced = policies
        .replace("deny-all-ingress", &PostParams::default(), &policy)
        .await
        .expect("replace");
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(policies.list(&ListParams::default()).await.expect("list").items.len(), 1);
    let again = policies.create(&PostParams::default(), &policy).await.expect_err("already exists");
    assert!(
        matches!(again, kube::Error::Api(ref s) if s.code == 409 && s.message == "networkpolicies.networking.k8s.io \"deny-all-ingress\" already exists")
    );
    policies.delete("deny-all-ingress", &DeleteParams::default()).await.expect("delete");
    let gone = policies.get("deny-all-ingress").await.expect_err("gone");
    assert!(matches!(gone, kube::Error::Api(ref s) if s.code == 404), "{gone:?}");
}

#[tokio::test]
async fn old_resource_versions_get_410_and_watches_see_selector_transitions() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    create_pod(&client, "samples", &restricted_pod("w1")).await;
    let rv =
        pods.list(&ListParams::default()).await.expect("list").metadata.resource_version.unwrap();
    let touch = Patch::Merge(json!({"metadata": {"annotations": {"touched": "1"}}}));
    pods.patch("w1", &PatchParams::default(), &touch).await.expect("a change after the list");
    fake.compact_history();
    let mut stream = pods.watch(&WatchParams::default(), &rv).await.expect("watch").boxed();
    match tokio::time::timeout(WAIT, stream.try_next()).await.expect("an event") {
        Ok(Some(WatchEvent::Error(status))) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410 Expired, got {other:?}"),
    }

    // A label watch sees a pod arrive when it starts to match and leave when it stops.
    let rv =
        pods.list(&ListParams::default()).await.expect("list").metadata.resource_version.unwrap();
    let mut watch = pods
        .watch(&WatchParams::default().labels("kterm.io/pool=warm"), &rv)
        .await
        .expect("watch")
        .boxed();
    let label = |v: Value| Patch::Merge(json!({"metadata": {"labels": {"kterm.io/pool": v}}}));
    pods.patch("w1", &PatchParams::default(), &label(json!("warm"))).await.expect("label");
    pods.patch("w1", &PatchParams::default(), &label(Value::Null)).await.expect("unlabel");
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match tokio::time::timeout(WAIT, watch.try_next())
            .await
            .expect("events in time")
            .expect("no error")
        {
            Some(WatchEvent::Added(_)) => kinds.push("ADDED"),
            Some(WatchEvent::Modified(_)) => {}
            Some(WatchEvent::Deleted(_)) => kinds.push("DELETED"),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED", "DELETED"]);
}

#[tokio::test]
async fn namespace_quota_rejects_like_resource_quota() {
    let Some(fake) = sample_cluster() else { return };
    fake.set_pod_quota("samples", Some(1));
    let client = client(&fake).await;
    create_pod(&client, "samples", &restricted_pod("q1")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    let pod: Pod = serde_json::from_value(restricted_pod("q2")).unwrap();
    let err = pods.create(&PostParams::default(), &pod).await.expect_err("over quota");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert_eq!(s.message, "pods \"q2\" is forbidden: exceeded quota: pod-quota, requested: pods=1, used: pods=1, limited: pods=1");
        }
        other => panic!("{other:?}"),
    }
    let missing: Pod = serde_json::from_value(restricted_pod("x")).unwrap();
    let err = Api::<Pod>::namespaced(client, "nowhere")
        .create(&PostParams::default(), &missing)
        .await
        .expect_err("no namespace");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.message == "namespaces \"nowhere\" not found"),
        "{err:?}"
    );
}

#[tokio::test]
async fn pause_refuses_connections_and_resume_serves_the_same_state_on_the_same_port() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    running_pod(&fake, &client, "survivor").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    let rv =
        pods.list(&ListParams::default()).await.expect("list").metadata.resource_version.unwrap();
    let mut watch = pods.watch(&WatchParams::default(), &rv).await.expect("watch").boxed();
    create_pod(&client, "samples", &restricted_pod("pending-at-pause")).await;
    let addr = fake.addr();

    fake.pause();
    assert!(fake.is_paused());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port refuses connections while paused"
    );
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                other => return other.map(|r| r.map(|_| ())),
            }
        }
    })
    .await
    .expect("the open watch ends");
    assert!(!matches!(ended, Some(Ok(()))), "{ended:?}");
    assert!(pods.get("survivor").await.is_err(), "requests fail while paused");
    // The node goes on without the API server.
    fake.wait_pod("samples", "pending-at-pause", WAIT, |p| phase(p) == "Running")
        .await
        .expect("it ran meanwhile");

    // A client that retries gets through once the server is back.
    let retrying = tokio::spawn({
        let pods = pods.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                match pods.get("survivor").await {
                    Ok(pod) => return Ok(pod),
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.resume();
    assert_eq!(fake.addr(), addr);
    let pod = retrying.await.expect("the retrying task").expect("the fake came back");
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    let list = pods.list(&ListParams::default()).await.expect("list after resume");
    assert_eq!(list.items.len(), 2, "the same state");
}

#[tokio::test]
async fn generate_name_json_patch_immediate_delete_and_delete_collection() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    let mut pod = restricted_pod("");
    pod["metadata"] = json!({"generateName": "kterm-", "labels": {"kterm.io/pool": "warm"}});
    let created = create_pod(&client, "samples", &pod).await;
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("kterm-") && name.len() == "kterm-".len() + 5, "{name}");
    assert_eq!(created.metadata.generate_name.as_deref(), Some("kterm-"));

    let ops = json!([{"op": "add", "path": "/metadata/labels/kterm.io~1user", "value": "alice"}]);
    let (code, patched) = raw(
        &client,
        "PATCH",
        &format!("/api/v1/namespaces/samples/pods/{name}"),
        Some(&ops),
        "application/json-patch+json",
    )
    .await;
    assert_eq!((code, &patched["metadata"]["labels"]["kterm.io/user"]), (200, &json!("alice")));
    let (code, _) = raw(
        &client,
        "PATCH",
        &format!("/api/v1/namespaces/samples/pods/{name}"),
        Some(&ops),
        "text/plain",
    )
    .await;
    assert_eq!(code, 415);

    // Grace 0 deletes at once: the watch sees DELETED without a MODIFIED first.
    let rv =
        pods.list(&ListParams::default()).await.expect("list").metadata.resource_version.unwrap();
    let mut watch = pods
        .watch(&WatchParams::default().fields(&format!("metadata.name={name}")), &rv)
        .await
        .expect("watch")
        .boxed();
    pods.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() })
        .await
        .expect("delete");
    loop {
        match tokio::time::timeout(WAIT, watch.try_next())
            .await
            .expect("an event")
            .expect("no error")
        {
            Some(WatchEvent::Deleted(p)) => {
                assert!(p.metadata.deletion_timestamp.is_none(), "no graceful marking first");
                break;
            }
            // Status updates racing with the delete are fine; a deletion mark is not.
            Some(WatchEvent::Modified(p)) => assert!(p.metadata.deletion_timestamp.is_none()),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(fake.pod("samples", &name).is_none());

    for n in ["c1", "c2", "keep"] {
        let mut pod = restricted_pod(n);
        if n != "keep" {
            pod["metadata"]["labels"]["kterm.io/instance"] = json!("test");
        }
        create_pod(&client, "samples", &pod).await;
    }
    let deleted = pods
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("kterm.io/instance=test"),
        )
        .await
        .expect("deletecollection");
    let count = deleted.left().map(|l| l.items.len()).unwrap_or_default();
    assert_eq!(count, 2);
    fake.wait_gone("samples", "c1", WAIT).await.expect("c1 goes");
    fake.wait_gone("samples", "c2", WAIT).await.expect("c2 goes");
    assert!(fake.pod("samples", "keep").is_some());
    assert_eq!(fake.request_count("deletecollection", "pods"), 1);
}

#[tokio::test]
async fn watches_time_out_and_events_can_be_watched() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    let started = Instant::now();
    let mut short =
        pods.watch(&WatchParams::default().timeout(1), "0").await.expect("watch").boxed();
    while let Some(event) =
        tokio::time::timeout(WAIT, short.next()).await.expect("the watch ends by itself")
    {
        event.expect("no error");
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "it lasted its timeoutSeconds");

    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "samples");
    let mut watch = events
        .watch(&WatchParams::default().fields("involvedObject.name=watched"), "0")
        .await
        .expect("events watch")
        .boxed();
    create_pod(&client, "samples", &restricted_pod("watched")).await;
    let mut reasons = Vec::new();
    while !reasons.contains(&"Started".to_string()) {
        match tokio::time::timeout(WAIT, watch.try_next())
            .await
            .expect("events in time")
            .expect("no error")
        {
            Some(WatchEvent::Added(e)) | Some(WatchEvent::Modified(e)) => {
                reasons.push(e.reason.unwrap_or_default())
            }
            Some(_) => {}
            None => panic!("the events watch ended"),
        }
    }
    assert_eq!(reasons, ["Scheduled", "Pulled", "Created", "Started"]);
}

#[tokio::test]
async fn kube_runtime_watcher_recovers_from_an_outage_and_a_compacted_history() {
    use kube::runtime::{watcher, WatchStreamExt};
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    let config = watcher::Config::default().labels("kterm.io/managed=true");
    let mut stream = watcher(pods.clone(), config).default_backoff().applied_objects().boxed();
    let managed = |name: &str| {
        let mut pod = restricted_pod(name);
        pod["metadata"]["labels"]["kterm.io/managed"] = json!("true");
        pod
    };
    create_pod(&client, "samples", &managed("before")).await;
    seen(&mut stream, "before").await.expect("the watcher sees the first pod");
    fake.pause();
    fake.compact_history();
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.resume();
    create_pod(&client, "samples", &managed("after")).await;
    seen(&mut stream, "after")
        .await
        .expect("the watcher relists and sees the pod made after the outage");
}

/// Waits until the watcher stream yields the pod `name`.
async fn seen(
    stream: &mut futures_util::stream::BoxStream<
        'static,
        Result<Pod, kube::runtime::watcher::Error>,
    >,
    name: &str,
) -> Result<(), String> {
    let found = async {
        loop {
            if let Ok(Some(pod)) = stream.try_next().await {
                if pod.metadata.name.as_deref() == Some(name) {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, found).await.map_err(|_| format!("the watcher never showed {name}"))
}

#[tokio::test]
async fn server_side_apply_creates_then_updates_and_admission_checks_references() {
    let Some(fake) = sample_cluster_with(|o| {
        o.namespaces[0] = NamespaceSpec::restricted("samples").service_account("kterm-user");
        o.runtime_classes = Some(vec!["gvisor".into()]);
    }) else {
        return;
    };
    let client = client(&fake).await;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "samples");
    let mut policy = sample("04-networkpolicy-create.json")["request"]["body"].clone();
    let apply = PatchParams::apply("kterm").force();
    let created = policies
        .patch("deny-all-ingress", &apply, &Patch::Apply(&policy))
        .await
        .expect("apply creates");
    assert_eq!(created.metadata.generation, Some(1));
    policy["spec"]["policyTypes"] = json!(["Ingress"]);
    let updated = policies
        .patch("deny-all-ingress", &apply, &Patch::Apply(&policy))
        .await
        .expect("apply updates");
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(fake.request_count("patch", "networkpolicies"), 2);

    let pods: Api<Pod> = Api::namespaced(client, "samples");
    let with = |sa: &str, class: Option<&str>| -> Pod {
        let mut pod = restricted_pod("refs");
        pod["spec"]["serviceAccountName"] = json!(sa);
        if let Some(class) = class {
            pod["spec"]["runtimeClassName"] = json!(class);
        }
        serde_json::from_value(pod).unwrap()
    };
    let err = pods
        .create(&PostParams::default(), &with("nobody", None))
        .await
        .expect_err("no such account");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403 && s.message.ends_with("serviceaccount \"nobody\" not found")),
        "{err:?}"
    );
    let err = pods
        .create(&PostParams::default(), &with("kterm-user", Some("kata")))
        .await
        .expect_err("no such class");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403 && s.message.ends_with("RuntimeClass \"kata\" not found")),
        "{err:?}"
    );
    pods.create(&PostParams::default(), &with("kterm-user", Some("gvisor")))
        .await
        .expect("both exist");
}
