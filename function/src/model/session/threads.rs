//! ONNX Runtime's intra-op pool threads, started under a name of their own.

/// What ONNX Runtime's intra-op pool threads are called: `top -H`, `perf`
/// and the tests (tests/it/cpus.rs) tell them from tokio's by it.
pub const INTRA_OP_THREAD_NAME: &str = "ort-intra-op";

/// Starts ONNX Runtime's pool threads under [`INTRA_OP_THREAD_NAME`]
/// (otherwise they inherit whichever thread built the session's name).
pub(super) struct NamedThreads;

impl ort::environment::ThreadManager for NamedThreads {
    type Thread = std::thread::JoinHandle<()>;

    fn create(&self, work: impl FnOnce() + Send + 'static) -> ort::Result<Self::Thread> {
        let started = match SPAWNER.get() {
            Some(spawner) => spawner.spawn(Box::new(work)),
            None => spawn_pool_thread(Box::new(work)),
        };
        started.map_err(|e| ort::Error::new(format!("cannot start an ONNX Runtime thread: {e}")))
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        thread
            .join()
            .map_err(|_| ort::Error::new("an ONNX Runtime thread panicked"))
    }
}

type Work = Box<dyn FnOnce() + Send + 'static>;

fn spawn_pool_thread(work: Work) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(INTRA_OP_THREAD_NAME.into())
        // glibc's default for a new thread, which ONNX Runtime's own
        // threads would have had (Rust's default is 2 MiB).
        .stack_size(8 << 20)
        .spawn(work)
}

/// A thread of normal priority that starts pool threads for sessions built
/// on a thread of low priority (the background pack): Linux threads take
/// their creator's priority, and an unprivileged process cannot raise it
/// again, so the packed session's pool would otherwise answer every
/// request at low priority for the rest of its life.
struct Spawner(std::sync::Mutex<std::sync::mpsc::Sender<SpawnRequest>>);

type SpawnRequest = (
    Work,
    std::sync::mpsc::Sender<std::io::Result<std::thread::JoinHandle<()>>>,
);

static SPAWNER: std::sync::OnceLock<Spawner> = std::sync::OnceLock::new();

impl Spawner {
    fn start() -> Self {
        let (requests, incoming) = std::sync::mpsc::channel::<SpawnRequest>();
        let started = std::thread::Builder::new()
            .name("ort-spawner".into())
            .spawn(move || {
                for (work, reply) in incoming {
                    let _ = reply.send(spawn_pool_thread(work));
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "no spawner thread: pool threads start where sessions are built");
        }
        Self(std::sync::Mutex::new(requests))
    }

    fn spawn(&self, work: Work) -> std::io::Result<std::thread::JoinHandle<()>> {
        let (reply, answer) = std::sync::mpsc::channel();
        let sent = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((work, reply));
        match sent {
            Ok(()) => answer
                .recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("the spawner thread stopped"))),
            // No spawner thread: start it here (at this thread's priority).
            Err(std::sync::mpsc::SendError((work, _))) => spawn_pool_thread(work),
        }
    }
}

/// How far below the requests background work runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Background {
    /// Only on an otherwise idle core (SCHED_IDLE, else nice 19): work that
    /// may wait for ever (the model's digest).
    Idle,
    /// Nice 10: about a tenth of a busy core, so it ends under full load
    /// too (the packed session).
    Low,
}

/// Lowers the calling thread's CPU priority, best effort. ONNX Runtime pool
/// threads the thread's sessions start afterwards keep normal priority.
pub(crate) fn lower_this_threads_priority(to: Background) {
    // Made now, from this thread at its normal priority.
    SPAWNER.get_or_init(Spawner::start);
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        match to {
            Background::Idle => {
                let param = libc::sched_param { sched_priority: 0 };
                if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
                    libc::setpriority(libc::PRIO_PROCESS, tid, 19);
                }
            }
            Background::Low => {
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = to;
}
