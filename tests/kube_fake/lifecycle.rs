//! The pod lifecycle against the recordings: image-pull failures (events and waiting states of
//! `02-image-pull-*`), unschedulable pods, eviction, `activeDeadlineSeconds`, and deletion that
//! kills the pod's processes.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, AttachParams, DeleteParams, ListParams};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::*;

/// `(reason, type, source component, fieldPath)` of each event, in order, without repeats.
fn event_keys(events: &[Value]) -> Vec<(String, String, String, String)> {
    let mut seen = BTreeSet::new();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    events
        .iter()
        .filter(|e| e["reason"] != "MissingClusterDNS")
        .map(|e| {
            let source = if e["source"]["component"].is_string() {
                text(&e["source"]["component"])
            } else {
                text(&e["reportingComponent"])
            };
            (text(&e["reason"]), text(&e["type"]), source, text(&e["involvedObject"]["fieldPath"]))
        })
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

async fn pull_failure_matches(
    policy: &str,
    recorded_events: &str,
    recorded_pod: &str,
    last_reason: &str,
) {
    let Some(fake) = sample_cluster() else { return };
    fake.fail_image_pull("k8s.local/nonexistent:1");
    let client = client(&fake).await;
    let recorded = sample(recorded_pod);
    let mut body = recorded["create_request_body"].clone();
    body["spec"]["containers"][0]["imagePullPolicy"] = json!(policy);
    let name = body["metadata"]["name"].as_str().unwrap().to_string();
    create_pod(&client, "samples", &body).await;
    let pod = fake
        .wait_pod("samples", &name, WAIT, |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == last_reason
        })
        .await
        .expect("the pull fails");
    let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    let states = recorded["waiting_states_seen_polling_every_0.3s"].as_array().unwrap();
    let recorded_last = &states.last().unwrap()["waiting"];
    assert_eq!(waiting["reason"], recorded_last["reason"]);
    if policy == "Never" {
        assert_eq!(
            waiting["message"], recorded_last["message"],
            "ErrImageNeverPull names the image and policy"
        );
    } else {
        assert_eq!(waiting["message"], "Back-off pulling image \"k8s.local/nonexistent:1\"");
    }
    // The whole pod, as the recorded GET after 25 s shows it (a still-Pending pod).
    assert_same_shape("the failing pod", &pod, &recorded["pod_after_25s"]["response"]["body"]);

    // Events through kube, selected by involvedObject.name as in the recording.
    let events: Api<Event> = Api::namespaced(client, "samples");
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("events");
    // List items carry no kind/apiVersion on the wire; kube's typed objects add them back.
    let ours: Vec<Value> = list
        .items
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap();
            v.as_object_mut().map(|m| (m.remove("kind"), m.remove("apiVersion")));
            v
        })
        .collect();
    let theirs = sample(recorded_events)["response"]["body"]["items"].as_array().unwrap().clone();
    // The recording holds two pods' events (the name was used twice); compare the last one's.
    let last_uid = theirs.last().unwrap()["involvedObject"]["uid"].clone();
    let theirs: Vec<Value> =
        theirs.into_iter().filter(|e| e["involvedObject"]["uid"] == last_uid).collect();
    let mut ours_keys = event_keys(&ours);
    let mut their_keys = event_keys(&theirs);
    ours_keys.sort();
    their_keys.sort();
    assert_eq!(ours_keys, their_keys, "the same events from the same sources");
    let scheduled = ours.iter().find(|e| e["reason"] == "Scheduled").expect("a Scheduled event");
    let recorded_scheduled = theirs.iter().find(|e| e["reason"] == "Scheduled").unwrap();
    let mut scheduled = scheduled.clone();
    scheduled["metadata"]["name"] = recorded_scheduled["metadata"]["name"].clone();
    assert_same_shape("the Scheduled event", &scheduled, recorded_scheduled);
    let messages: Vec<&str> = ours.iter().filter_map(|e| e["message"].as_str()).collect();
    for expected in theirs
        .iter()
        .filter(|e| e["reason"] != "MissingClusterDNS")
        .filter_map(|e| e["message"].as_str())
    {
        if expected.starts_with("Failed to pull image") {
            assert!(
                messages.iter().any(|m| m
                    .starts_with("Failed to pull image \"k8s.local/nonexistent:1\": rpc error")),
                "{messages:?}"
            );
        } else {
            assert!(
                messages.contains(&expected),
                "missing event message {expected:?} in {messages:?}"
            );
        }
    }
}

#[tokio::test]
async fn image_pull_failure_if_not_present_matches_the_recording() {
    pull_failure_matches(
        "IfNotPresent",
        "02-image-pull-IfNotPresent-events.json",
        "02-image-pull-IfNotPresent-pod.json",
        "ImagePullBackOff",
    )
    .await;
}

#[tokio::test]
async fn image_pull_never_matches_the_recording() {
    pull_failure_matches(
        "Never",
        "02-image-pull-Never-events.json",
        "02-image-pull-Never-pod.json",
        "ErrImageNeverPull",
    )
    .await;
}

#[tokio::test]
async fn unschedulable_pods_wait_with_the_scheduler_reason_then_run() {
    let Some(fake) = sample_cluster() else { return };
    fake.set_unschedulable("samples", None);
    let client = client(&fake).await;
    create_pod(&client, "samples", &restricted_pod("waits")).await;
    let pod = fake
        .wait_pod("samples", "waits", WAIT, |p| {
            p["status"]["conditions"][0]["reason"] == "Unschedulable"
        })
        .await
        .expect("unschedulable");
    assert_eq!(pod["status"]["conditions"][0]["status"], "False");
    assert_eq!(phase(&pod), "Pending");
    let failed = fake.events_for("samples", "waits");
    assert!(
        failed.iter().any(|e| e["reason"] == "FailedScheduling" && e["type"] == "Warning"),
        "{failed:?}"
    );

    let mut selective = restricted_pod("selective");
    selective["spec"]["nodeSelector"] = json!({"disktype": "ssd"});
    create_pod(&client, "samples", &selective).await;
    fake.set_schedulable("samples");
    fake.wait_pod("samples", "waits", WAIT, |p| phase(p) == "Running")
        .await
        .expect("it runs once schedulable");
    let pod = fake
        .wait_pod("samples", "selective", WAIT, |p| {
            p["status"]["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("node affinity/selector"))
        })
        .await
        .expect("a node selector that fits no node");
    assert_eq!(phase(&pod), "Pending");
}

#[tokio::test]
async fn eviction_and_deadline_end_pods_and_kill_their_processes() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    running_pod(&fake, &client, "evicted").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    let sleeper = background_sleep(&pods, "evicted").await;
    assert!(fake.pod_processes("samples", "evicted").contains(&sleeper));
    let message = "The node was low on resource: memory. Container main was using 2Gi, which exceeds its request of 0. ";
    assert!(fake.evict_pod("samples", "evicted", message));
    let pod = fake.pod("samples", "evicted").expect("an evicted pod stays");
    assert_eq!(
        (phase(&pod), pod["status"]["reason"].as_str(), pod["status"]["message"].as_str()),
        ("Failed", Some("Evicted"), Some(message))
    );
    assert!(gone(sleeper), "eviction killed the pod's processes");
    assert_eq!(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 137);

    let mut short = restricted_pod("deadline");
    short["spec"]["activeDeadlineSeconds"] = json!(1);
    create_pod(&client, "samples", &short).await;
    let pod = fake
        .wait_pod("samples", "deadline", WAIT, |p| phase(p) == "Failed")
        .await
        .expect("the deadline passes");
    assert_eq!(pod["status"]["reason"], "DeadlineExceeded");
    assert_eq!(
        pod["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    // Deleting a finished pod is immediate.
    pods.delete("evicted", &DeleteParams::default()).await.expect("delete");
    assert!(fake.pod("samples", "evicted").is_none());
}

#[tokio::test]
async fn delete_from_outside_ends_the_pod_and_its_processes() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    running_pod(&fake, &client, "doomed").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    let sleeper = background_sleep(&pods, "doomed").await;
    let mut shell =
        pods.exec("doomed", vec!["sh"], &AttachParams::interactive_tty()).await.expect("a shell");
    let status = shell.take_status().expect("a status future");
    let mut stdout = shell.stdout().expect("stdout");
    assert!(fake.delete_pod("samples", "doomed", None));
    let mut rest = String::new();
    let _ = tokio::time::timeout(WAIT, stdout.read_to_string(&mut rest))
        .await
        .expect("the shell's stream ends");
    let status =
        tokio::time::timeout(WAIT, status).await.expect("a status in time").expect("a status");
    assert_eq!(
        status.reason.as_deref(),
        Some("NonZeroExitCode"),
        "the shell was killed: {status:?}"
    );
    fake.wait_gone("samples", "doomed", WAIT).await.expect("the pod is deleted");
    assert!(gone(sleeper), "its processes are gone");
    assert!(fake.pod_processes("samples", "doomed").is_empty());
}

/// Starts `sleep` in the background of the pod (detached from the exec) and returns its PID.
async fn background_sleep(pods: &Api<Pod>, pod: &str) -> i32 {
    let params = AttachParams::default().stdout(true).stderr(false);
    let mut process = pods
        .exec(pod, vec!["sh", "-c", "sleep 1000 >/dev/null 2>&1 </dev/null & echo $!"], &params)
        .await
        .expect("exec");
    let mut out = String::new();
    let mut stdout = process.stdout().expect("stdout");
    tokio::time::timeout(WAIT, stdout.read_to_string(&mut out))
        .await
        .expect("the exec ends")
        .expect("read");
    out.trim().parse().unwrap_or_else(|_| panic!("a PID, got {out:?}"))
}

/// Whether `pid` is gone (or a zombie waiting for its parent) within the deadline.
fn gone(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let live = state
            .as_deref()
            .and_then(|s| s.rsplit(')').next())
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'));
        if !live {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[tokio::test]
async fn pod_security_lists_every_violation_in_check_order() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let mut pod = restricted_pod("loose");
    pod["spec"]["hostNetwork"] = json!(true);
    pod["spec"]["securityContext"]["runAsUser"] = json!(0);
    pod["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "host", "hostPath": {"path": "/etc"}}));
    let main = &mut pod["spec"]["containers"][0];
    main["securityContext"]["privileged"] = json!(true);
    main["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN", "NET_BIND_SERVICE"]);
    main["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
    let (code, body) =
        raw(&client, "POST", "/api/v1/namespaces/samples/pods", Some(&pod), "application/json")
            .await;
    assert_eq!(code, 403);
    let expected = concat!(
        "pods \"loose\" is forbidden: violates PodSecurity \"restricted:v1.24\": ",
        "unrestricted capabilities (container \"main\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add), ",
        "host namespaces (hostNetwork=true), ",
        "hostPath volumes (volume \"host\"), ",
        "hostPort (container \"main\" uses hostPort 8080), ",
        "privileged (container \"main\" must not set securityContext.privileged=true), ",
        "restricted volume types (volume \"host\" uses restricted volume type \"hostPath\"), ",
        "runAsUser=0 (pod must not set runAsUser=0)"
    );
    assert_eq!(body["message"], expected);

    // The same pod in a namespace without the label is admitted (and runs as root).
    let (code, _) =
        raw(&client, "POST", "/api/v1/namespaces/default/pods", Some(&pod), "application/json")
            .await;
    assert_eq!(code, 201);
}

#[test]
fn a_panicking_test_leaves_no_process_or_directory_behind() {
    if !common::kube_fake::available() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let failing = std::thread::spawn(move || {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            let fake = sample_cluster().expect("the fake runs here");
            let client = client(&fake).await;
            running_pod(&fake, &client, "left").await;
            let pods: Api<Pod> = Api::namespaced(client, "samples");
            let pid = background_sleep(&pods, "left").await;
            let tmp = fake.host_path("samples", "left", "/tmp").expect("the pod's /tmp");
            let base = fake.kubeconfig_path().parent().expect("the fake's directory").to_path_buf();
            tx.send((pid, tmp, base)).expect("send");
            panic!("a test fails while its pod runs");
        })
    });
    assert!(failing.join().is_err(), "the test thread panicked");
    let (pid, tmp, base) = rx.recv().expect("what the test made");
    assert!(gone(pid), "the pod's process was killed");
    assert!(!tmp.exists() && !base.exists(), "the pod's and the fake's directories were removed");
}
