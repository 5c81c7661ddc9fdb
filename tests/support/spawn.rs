//! Spawning `parley` processes for tests so that they never outlive the test process.
//!
//! Children are forked by one long-lived thread with `PR_SET_PDEATHSIG = SIGKILL`: the kernel
//! kills them when that thread dies, i.e. when the test process exits, however it exits. (The
//! signal fires when the forking *thread* exits, so it must not be a short-lived test thread.)
//! Used by the single-node harness (`node.rs`) and the cluster harness (`cluster.rs`).

use std::process::{Child, Command};
use std::sync::{mpsc, Mutex, OnceLock};

struct SpawnRequest {
    cmd: Command,
    reply: mpsc::Sender<std::io::Result<Child>>,
}

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("parley-spawner".into())
            .spawn(move || {
                for mut req in rx {
                    let _ = req.reply.send(req.cmd.spawn());
                }
                // The channel lives in a static and is never closed: park forever so that the
                // children's parent-death signal only fires at process exit.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `cmd` as a child that is killed when the test process exits.
pub fn spawn_child(mut cmd: Command) -> std::io::Result<Child> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe libc calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the test process is gone"));
                }
                Ok(())
            });
        }
    }
    let (reply, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(SpawnRequest { cmd, reply })
        .expect("spawner thread alive");
    rx.recv().expect("spawner replied")
}
