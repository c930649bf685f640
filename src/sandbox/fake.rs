//! A fake exec-based engine for tests that must run everywhere: sandboxes are directories
//! under a root, kept in memory; every exec is a real process on this host (a real PTY for TTY
//! execs), so the shared container layer — sessions, stubs, activation, kill by recorded PID —
//! runs for real. Each operation can be slowed down, made to fail, or made to hang, and a
//! sandbox can be removed "from outside", so the pool and the session registry can be tested
//! against claim races, failures half-way, hung engines and vanished sandboxes.
//!
//! Used through [`ContainerBackend`](super::container::ContainerBackend) like any platform:
//! `ContainerBackend::new(fake.clone())`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::container::{ContainerPlatform, ExecControl, Layout, PipedRequest, TtyExec, TtyRequest};
use super::pty::{self, PtyMaster};
use super::{host, RunningCommand, Sandbox, SandboxSpec};
use crate::error::{Error, Result};

/// An operation of the engine, for injecting faults and counting calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Destroy,
    List,
    Health,
    ShowOwner,
    ExecTty,
    Exec,
}

/// What happens to the next calls of an operation.
#[derive(Debug, Default)]
struct Plan {
    delay: Duration,
    /// This many calls fail, then calls succeed again.
    failures: u32,
    /// While set, calls wait (until cleared).
    hang: Option<watch::Receiver<bool>>,
    calls: u64,
}

struct FakeSandbox {
    sandbox: Sandbox,
    dir: PathBuf,
    /// Process groups of the TTY execs started in it.
    groups: Vec<i32>,
}

pub struct FakePlatform {
    root: PathBuf,
    prewarm: AtomicBool,
    sandboxes: Mutex<HashMap<String, FakeSandbox>>,
    plans: Mutex<HashMap<Op, Plan>>,
    hangs: Mutex<HashMap<Op, watch::Sender<bool>>>,
}

impl FakePlatform {
    /// A fake whose sandboxes live under `root` (which must exist and outlive it).
    pub fn new(root: &Path) -> Arc<FakePlatform> {
        Arc::new(FakePlatform {
            root: root.to_path_buf(),
            prewarm: AtomicBool::new(true),
            sandboxes: Mutex::default(),
            plans: Mutex::default(),
            hangs: Mutex::default(),
        })
    }

    /// Whether warm sandboxes can be made (as Docker cannot with per-user volumes).
    pub fn set_prewarm(&self, prewarm: bool) {
        self.prewarm.store(prewarm, Ordering::Release);
    }

    /// Every call of `op` takes `delay` longer.
    pub fn delay(&self, op: Op, delay: Duration) {
        self.plans().entry(op).or_default().delay = delay;
    }

    /// The next `times` calls of `op` fail.
    pub fn fail(&self, op: Op, times: u32) {
        self.plans().entry(op).or_default().failures = times;
    }

    /// Calls of `op` wait until [`FakePlatform::release`]; the calls under way too.
    pub fn hang(&self, op: Op) {
        let (tx, rx) = watch::channel(true);
        self.plans().entry(op).or_default().hang = Some(rx);
        if let Some(old) = self.lock_hangs().insert(op, tx) {
            old.send_replace(false);
        }
    }

    pub fn release(&self, op: Op) {
        self.plans().entry(op).or_default().hang = None;
        if let Some(tx) = self.lock_hangs().remove(&op) {
            tx.send_replace(false);
        }
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: Op) -> u64 {
        self.plans().get(&op).map_or(0, |p| p.calls)
    }

    /// The sandboxes that exist now.
    pub fn ids(&self) -> Vec<String> {
        self.lock_sandboxes().keys().cloned().collect()
    }

    /// Removes a sandbox behind kterm's back: its processes are killed, it is gone.
    pub fn remove_from_outside(&self, id: &str) {
        if let Some(gone) = self.lock_sandboxes().remove(id) {
            kill_groups(&gone.groups);
            let _ = std::fs::remove_dir_all(&gone.dir);
        }
    }

    /// Kills the processes of a sandbox (its stubs and shells die) but keeps it.
    pub fn kill_processes(&self, id: &str) {
        if let Some(sandbox) = self.lock_sandboxes().get_mut(id) {
            kill_groups(&std::mem::take(&mut sandbox.groups));
        }
    }

    fn plans(&self) -> MutexGuard<'_, HashMap<Op, Plan>> {
        self.plans.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_hangs(&self) -> MutexGuard<'_, HashMap<Op, watch::Sender<bool>>> {
        self.hangs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_sandboxes(&self) -> MutexGuard<'_, HashMap<String, FakeSandbox>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `op`'s plan: counts the call, waits out a hang and the delay, then fails if due.
    async fn enter(&self, op: Op) -> Result<()> {
        let (delay, hang, fail) = {
            let mut plans = self.plans();
            let plan = plans.entry(op).or_default();
            plan.calls += 1;
            let fail = plan.failures > 0;
            plan.failures = plan.failures.saturating_sub(1);
            (plan.delay, plan.hang.clone(), fail)
        };
        if let Some(mut hang) = hang {
            let _ = hang.wait_for(|hung| !*hung).await;
        }
        tokio::time::sleep(delay).await;
        if fail {
            return Err(Error::BackendUnavailable(format!("the fake engine fails {op:?}")));
        }
        Ok(())
    }

    fn dir_of(&self, sandbox: &Sandbox) -> Result<PathBuf> {
        self.lock_sandboxes()
            .get(&sandbox.id)
            .map(|s| s.dir.clone())
            .ok_or_else(|| Error::SandboxGone(format!("sandbox {} is gone", sandbox.id)))
    }
}

/// The host variables every fake exec gets besides its own.
fn host_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut all = vec![
        ("PATH".to_string(), "/usr/local/bin:/usr/bin:/bin".to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ];
    all.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
    all.extend(env.iter().cloned());
    all
}

fn kill_groups(groups: &[i32]) {
    for &group in groups {
        // SAFETY: kill(2) of a process group this fake started (it leads its own session).
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}

#[async_trait]
impl ContainerPlatform for FakePlatform {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn layout(&self, sandbox: &Sandbox) -> Layout {
        let dir = sandbox.workspace.parent().unwrap_or(&self.root);
        Layout {
            home: dir.join("home").to_string_lossy().into_owned(),
            run_dir: dir.join("run").to_string_lossy().into_owned(),
        }
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        self.enter(Op::Create).await?;
        let id = format!("fake-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let dir = self.root.join(&id);
        for sub in ["workspace", "home", "run"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let sandbox = Sandbox {
            id: id.clone(),
            name: id.clone(),
            user: spec.user.clone(),
            namespace: spec.namespace.clone(),
            profile: spec.profile.name.clone(),
            workspace: dir.join("workspace"),
            running: true,
        };
        let record = FakeSandbox { sandbox: sandbox.clone(), dir, groups: Vec::new() };
        self.lock_sandboxes().insert(id, record);
        Ok(sandbox)
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        self.enter(Op::Destroy).await?;
        self.remove_from_outside(id);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Sandbox>> {
        self.enter(Op::List).await?;
        Ok(self.lock_sandboxes().values().map(|s| s.sandbox.clone()).collect())
    }

    async fn health(&self) -> Result<()> {
        self.enter(Op::Health).await
    }

    async fn version(&self) -> Result<String> {
        self.health().await.map(|()| "fake".to_string())
    }

    fn can_prewarm(&self) -> bool {
        self.prewarm.load(Ordering::Acquire)
    }

    async fn show_owner(&self, sandbox: &Sandbox, user: &str) -> Result<()> {
        self.enter(Op::ShowOwner).await?;
        if let Some(fake) = self.lock_sandboxes().get_mut(&sandbox.id) {
            fake.sandbox.user = Some(user.to_string());
            fake.sandbox.name = format!("{}-{user}", sandbox.id);
        }
        Ok(())
    }

    async fn exec_tty(&self, sandbox: &Sandbox, request: TtyRequest<'_>) -> Result<TtyExec> {
        self.enter(Op::ExecTty).await?;
        let TtyRequest { command, cols, rows } = request;
        let dir = self.dir_of(sandbox)?;
        let env = host_env(&command.env);
        let child = pty::spawn(&command.argv, &env, &dir.join("workspace"), cols, rows)
            .map_err(|e| Error::io("starting a fake exec", e))?;
        match self.lock_sandboxes().get_mut(&sandbox.id) {
            Some(fake) => fake.groups.push(child.pid),
            None => {
                kill_groups(&[child.pid]);
                return Err(Error::SandboxGone(format!("sandbox {} is gone", sandbox.id)));
            }
        }
        let output = tokio_util::io::ReaderStream::new(child.master.clone());
        let control = FakeExec { master: child.master.clone(), exited: child.exited };
        Ok(TtyExec {
            output: Box::pin(output),
            input: Box::pin(child.master),
            control: Arc::new(control),
        })
    }

    async fn exec(&self, sandbox: &Sandbox, request: PipedRequest<'_>) -> Result<RunningCommand> {
        self.enter(Op::Exec).await?;
        let dir = self.dir_of(sandbox)?;
        let home = dir.join("home").to_string_lossy().into_owned();
        let env = host_env(&[("HOME".to_string(), home)]);
        host::run_command(&env, &dir.join("workspace"), request.argv, request.stdin)
    }

    fn access_review(&self) -> Option<&dyn crate::sandbox::AccessReview> {
        None
    }
}

struct FakeExec {
    master: PtyMaster,
    exited: watch::Receiver<Option<i32>>,
}

#[async_trait]
impl ExecControl for FakeExec {
    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.master.resize(cols, rows).map_err(|e| Error::io("resizing the terminal", e))
    }

    async fn exit_code(&self) -> Option<i32> {
        let mut exited = self.exited.clone();
        exited.wait_for(Option::is_some).await.ok().and_then(|code| *code)
    }
}
