//! The control plane's child processes, owned by one long-lived thread.
//!
//! Every child is started through `setpriv --pdeathsig KILL`, so the kernel kills it when
//! the thread that started it ends, which includes the test process dying on a signal or a
//! panic. Linux ties that signal to the *thread*, not the process, hence one thread that
//! lives exactly as long as the control plane and does all the spawning.

use std::collections::HashMap;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};

/// What the supervisor thread is asked to do.
enum Request {
    Spawn {
        name: String,
        program: PathBuf,
        args: Vec<String>,
        log: PathBuf,
        reply: mpsc::Sender<Result<()>>,
    },
    Kill {
        name: String,
        reply: mpsc::Sender<()>,
    },
    IsRunning {
        name: String,
        reply: mpsc::Sender<bool>,
    },
    Pid {
        name: String,
        reply: mpsc::Sender<Option<u32>>,
    },
    Shutdown,
}

/// Handle to the thread that owns the child processes.
pub(crate) struct Supervisor {
    requests: mpsc::Sender<Request>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    pub(crate) fn start() -> Result<Self> {
        let (requests, inbox) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("testenv-supervisor".into())
            .spawn(move || supervise(inbox))
            .context("starting the supervisor thread")?;
        Ok(Self {
            requests,
            thread: Some(thread),
        })
    }

    /// Starts `program` under `name`, its stdout and stderr appended to `log`.
    pub(crate) fn spawn(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<()> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::Spawn {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.to_vec(),
            log: log.to_owned(),
            reply,
        })?;
        answer.recv().context("the supervisor thread ended")?
    }

    /// Kills the process `name` (SIGKILL) and waits for it; nothing if it is not running.
    pub(crate) fn kill(&self, name: &str) -> Result<()> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::Kill {
            name: name.to_owned(),
            reply,
        })?;
        answer.recv().context("the supervisor thread ended")
    }

    /// Whether the process `name` was started and has not exited.
    pub(crate) fn is_running(&self, name: &str) -> bool {
        let (reply, answer) = mpsc::channel();
        self.send(Request::IsRunning {
            name: name.to_owned(),
            reply,
        })
        .is_ok()
            && answer.recv().unwrap_or(false)
    }

    /// The process id of `name`, while it runs.
    pub(crate) fn pid(&self, name: &str) -> Option<u32> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::Pid {
            name: name.to_owned(),
            reply,
        })
        .ok()?;
        answer.recv().ok().flatten()
    }

    fn send(&self, request: Request) -> Result<()> {
        self.requests
            .send(request)
            .map_err(|_| anyhow!("the supervisor thread ended"))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn supervise(inbox: mpsc::Receiver<Request>) {
    let mut children: HashMap<String, Child> = HashMap::new();
    // A closed channel (the handle was leaked or dropped) ends the loop like Shutdown.
    while let Ok(request) = inbox.recv() {
        match request {
            Request::Spawn {
                name,
                program,
                args,
                log,
                reply,
            } => {
                if let Some(mut old) = children.remove(&name) {
                    stop(&mut old);
                }
                let result = spawn(&program, &args, &log).map(|child| {
                    children.insert(name, child);
                });
                let _ = reply.send(result);
            }
            Request::Kill { name, reply } => {
                if let Some(mut child) = children.remove(&name) {
                    stop(&mut child);
                }
                let _ = reply.send(());
            }
            Request::IsRunning { name, reply } => {
                let running = children
                    .get_mut(&name)
                    .is_some_and(|child| matches!(child.try_wait(), Ok(None)));
                let _ = reply.send(running);
            }
            Request::Pid { name, reply } => {
                let pid = children
                    .get_mut(&name)
                    .and_then(|child| matches!(child.try_wait(), Ok(None)).then(|| child.id()));
                let _ = reply.send(pid);
            }
            Request::Shutdown => break,
        }
    }
    for child in children.values_mut() {
        stop(child);
    }
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Child> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let start = |mut command: Command| -> std::io::Result<Child> {
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out.try_clone()?)
            .spawn()
    };
    let mut guarded = Command::new("setpriv");
    guarded.args(["--pdeathsig", "KILL", "--"]).arg(program);
    match start(guarded) {
        // Without setpriv (not Linux util-linux) the child is still killed on drop.
        Err(error) if error.kind() == ErrorKind::NotFound => start(Command::new(program)),
        result => result,
    }
    .with_context(|| format!("starting {}", program.display()))
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
