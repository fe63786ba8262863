//! The fronts' own tokio runtime: client connections run on dedicated threads, apart from the
//! agent's control work (coordinator session, INFO polls, engine starts).
//!
//! Why: the front is CPU-bound, mostly in the kernel (socket hops and wake-ups). Fewer threads
//! polling the same sockets means fewer sleeps and wake-ups per request: on a 2-core host, one
//! front thread cost 11 µs of agent CPU per request against 13 µs with the agent's two shared
//! worker threads (redis-benchmark, 50 clients, pipeline 1). Half the cores (at least one) are
//! used, the rest being left to the engines.

use tokio::runtime::{Builder, Handle, Runtime};

/// The runtime every TLS front of this agent runs on. Dropping it stops its connections.
#[derive(Debug)]
pub struct FrontThreads {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl FrontThreads {
    /// Threads for the fronts on a host with `cores` cores.
    pub fn threads_for(cores: usize) -> usize {
        cores.div_ceil(2).max(1)
    }

    /// A runtime of `threads` threads named `kvs-front`; if it cannot be built, the caller's
    /// runtime (the fronts then share the agent's threads).
    pub fn start(threads: usize) -> FrontThreads {
        match Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("kvs-front")
            .enable_all()
            .build()
        {
            Ok(runtime) => FrontThreads {
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
            },
            Err(error) => {
                tracing::warn!(%error, "cannot start the front threads; fronts share the agent's");
                FrontThreads {
                    runtime: None,
                    handle: Handle::current(),
                }
            }
        }
    }

    /// For the host's core count.
    pub fn for_host() -> FrontThreads {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::start(Self::threads_for(cores))
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for FrontThreads {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context forbids: shut it down in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_cores_at_least_one() {
        assert_eq!(FrontThreads::threads_for(0), 1);
        assert_eq!(FrontThreads::threads_for(1), 1);
        assert_eq!(FrontThreads::threads_for(2), 1);
        assert_eq!(FrontThreads::threads_for(8), 4);
    }

    #[tokio::test]
    async fn runs_tasks_and_stops_inside_an_async_context() {
        let threads = FrontThreads::start(1);
        let answer = threads.handle().spawn(async { 42 }).await.expect("task");
        assert_eq!(answer, 42);
        drop(threads);
    }
}
