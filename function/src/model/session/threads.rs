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
        std::thread::Builder::new()
            .name(INTRA_OP_THREAD_NAME.into())
            // glibc's default for a new thread, which ONNX Runtime's own
            // threads would have had (Rust's default is 2 MiB).
            .stack_size(8 << 20)
            .spawn(work)
            .map_err(|e| ort::Error::new(format!("cannot start an ONNX Runtime thread: {e}")))
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        thread
            .join()
            .map_err(|_| ort::Error::new("an ONNX Runtime thread panicked"))
    }
}
