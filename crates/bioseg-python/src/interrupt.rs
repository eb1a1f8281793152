//! Running the engine from Python: the work runs on a thread of its own with the GIL released,
//! while the calling thread waits, reports progress and checks for Ctrl-C.
//!
//! Python runs signal handlers on its main thread only, and only while that thread holds the
//! GIL, so a prediction that ran on the calling thread inside `Python::detach` could not be
//! interrupted. Instead the caller wakes every [`POLL`] (or at once when the work ends),
//! takes the GIL, runs `check_signals` and the progress callback, and on Ctrl-C (or an
//! exception in the callback) sets the job's cancel flag: no tile starts after it, the work
//! returns `InferError::Cancelled` within one tile's time, and the exception is raised.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bioseg_infer::InferError;
use pyo3::prelude::*;

use crate::errors::{infer_error, input_error};

/// How often the waiting caller looks at signals and progress.
const POLL: Duration = Duration::from_millis(100);

/// A running job's shared state: the cancel flag the engine checks before each tile, and the
/// progress it reports.
#[derive(Default)]
pub(crate) struct Job {
    /// Set to stop the engine (given to `PredictOptions::cancel`).
    pub cancel: Arc<AtomicBool>,
    /// Units (tiles, or per-mille of a volume) done.
    pub done: AtomicUsize,
    /// Units in all.
    pub total: AtomicUsize,
}

/// Marks the work finished when dropped, also when it panics.
struct Finished<'a>(&'a (Mutex<bool>, Condvar));

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        let (flag, wake) = self.0;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
    }
}

/// Runs `work` on a thread of its own (in a pool of `threads` threads, else on rayon's global
/// pool of one thread per core) with the GIL released; calls `progress(done, total)` from
/// the calling thread when the job's progress moves. Ctrl-C raises `KeyboardInterrupt` once
/// the engine has stopped; an engine error raises the package's exception.
pub(crate) fn run<T: Send>(
    py: Python<'_>,
    job: &Job,
    threads: Option<usize>,
    progress: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce() -> Result<T, InferError> + Send,
) -> PyResult<T> {
    let pool = match threads {
        Some(0) => return Err(input_error("threads must be at least 1".into())),
        Some(n) => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| input_error(format!("cannot start {n} threads: {e}")))?,
        ),
        None => None,
    };
    let finished = (Mutex::new(false), Condvar::new());
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let _finished = Finished(&finished);
            match &pool {
                Some(pool) => pool.install(work),
                None => work(),
            }
        });
        let mut failure: Option<PyErr> = None;
        let mut reported = None;
        loop {
            let over = py.detach(|| {
                let (flag, wake) = &finished;
                let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) = wake.wait_timeout_while(guard, POLL, |over| !*over).unwrap_or_else(|e| e.into_inner());
                *guard
            });
            if failure.is_none() {
                let step = py.check_signals().and_then(|()| match progress {
                    Some(callback) => {
                        let now = (job.done.load(Ordering::Relaxed), job.total.load(Ordering::Relaxed));
                        // Nothing to report before the total is known, nor twice.
                        if now.1 == 0 || reported == Some(now) {
                            return Ok(());
                        }
                        reported = Some(now);
                        callback.call1(now).map(|_| ())
                    }
                    None => Ok(()),
                });
                if let Err(e) = step {
                    job.cancel.store(true, Ordering::Relaxed);
                    failure = Some(e);
                }
            }
            if over {
                break;
            }
        }
        let result = match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match (failure, result) {
            (Some(e), _) => Err(e),
            (None, result) => result.map_err(infer_error),
        }
    })
}
