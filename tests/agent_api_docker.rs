//! The agent API on real Docker sandboxes (read-only root, tmpfs workspace, non-root user):
//! the shared scenarios of tests/common/agent.rs. Runs with `KTERM_REQUIRE_DOCKER=1` (else it
//! is skipped where Docker does not answer, see `common::docker::available`).

mod common;

use common::agent::{self, Agent};
use common::docker::{self, Cleanup};
use common::TestServer;
use kterm::config::ByteSize;

async fn docker_server(cleanup: &Cleanup, adjust: impl FnOnce(&mut kterm::Config)) -> TestServer {
    TestServer::start_with(|c| {
        docker::configure(c, cleanup);
        agent::two_users(c);
        adjust(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_on_docker_io_caps_timeouts_and_streaming() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |c| c.exec.max_output = ByteSize(4096)).await;
    let agent = Agent::new(&server).await;
    let whoami = agent.sh("id -u; pwd").await;
    assert_eq!(whoami, "1000\n/home/user/workspace\n", "as the sandbox user, in the workspace");
    agent::exec_basics(&agent).await;
    agent::malformed_bodies(&agent).await;
    agent::caps_and_timeouts(&agent, 4096).await;
    agent::streaming(&agent).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_drives_a_shell_in_a_container() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |_| {}).await;
    let agent = Agent::new(&server).await;
    agent::drives_an_interactive_shell(&agent).await;
    agent::screen_details(&agent).await;
    agent::other_users_session(&server, &agent).await;
    agent::ended_session(&agent).await;
    server.stop().await;
}
