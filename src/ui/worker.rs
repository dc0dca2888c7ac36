//! The compute worker: probes the engines once and runs op cells' requests off the UI thread, so
//! dragging a slider never waits for a kernel. Only the newest request per cell is computed; older
//! ones are dropped. Roofline measurements (`roofline::MeasureJob`, one kernel on one engine
//! each) run on the same thread, in the order asked, one at a time, and cell requests that arrive
//! meanwhile go first: a slider stays live while a measurement is queued, and a measurement never
//! shares the device with a cell's run. Tests use the inline mode, which computes on the calling
//! thread.

use super::roofline::{self, BuildCache, MeasureJob, MeasureKey, Measured};
use crate::compare::{Comparison, compare_all};
use crate::engine::{BackendInfo, EngineKind, Registry};
use crate::ops::OpRequest;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};

/// Identifies an op cell: lesson id, step index, cell index within the step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CellKey {
    pub lesson: String,
    pub step: usize,
    pub cell: usize,
}

/// What the worker reports back.
pub enum WorkerMsg {
    /// The engines were probed.
    Ready(Vec<BackendInfo>),
    /// A cell's result; `generation` says which request it answers.
    Done {
        key: CellKey,
        generation: u64,
        result: Arc<Comparison>,
    },
    /// One roofline measurement finished.
    Measured { key: MeasureKey, measured: Measured },
}

struct Job {
    key: CellKey,
    generation: u64,
    request: OpRequest,
}

enum Task {
    Compute(Job),
    Measure(MeasureJob),
}

enum Mode {
    Thread {
        jobs: Option<Sender<Task>>,
        results: Receiver<WorkerMsg>,
        handle: Option<std::thread::JoinHandle<()>>,
    },
    Inline {
        registry: Registry,
        done: Vec<WorkerMsg>,
    },
}

pub struct Worker {
    mode: Mode,
}

impl Worker {
    /// Start the worker thread; it probes `engines` first. `repaint` is called whenever a message
    /// is ready (the UI passes `ctx.request_repaint`).
    pub fn spawn(engines: Vec<EngineKind>, repaint: impl Fn() + Send + 'static) -> Worker {
        let (jobs_tx, jobs_rx) = channel::<Task>();
        let (results_tx, results_rx) = channel::<WorkerMsg>();
        let spawned = std::thread::Builder::new()
            .name("kernelbook-compute".into())
            .spawn(move || {
                let registry = Registry::probe_only(&engines);
                if results_tx
                    .send(WorkerMsg::Ready(registry.backends()))
                    .is_err()
                {
                    return;
                }
                repaint();
                let mut measures: VecDeque<MeasureJob> = VecDeque::new();
                let mut built = BuildCache::default();
                loop {
                    // Wait only when nothing is queued.
                    let first = if measures.is_empty() {
                        match jobs_rx.recv() {
                            Ok(task) => Some(task),
                            Err(_) => return,
                        }
                    } else {
                        None
                    };
                    // Keep only the newest request per cell.
                    let mut latest: HashMap<CellKey, Job> = HashMap::new();
                    let mut order: Vec<CellKey> = Vec::new();
                    let mut push = |task: Task| match task {
                        Task::Compute(job) => {
                            if !latest.contains_key(&job.key) {
                                order.push(job.key.clone());
                            }
                            latest.insert(job.key.clone(), job);
                        }
                        Task::Measure(m) => measures.push_back(m),
                    };
                    if let Some(task) = first {
                        push(task);
                    }
                    loop {
                        match jobs_rx.try_recv() {
                            Ok(task) => push(task),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => return,
                        }
                    }
                    for key in order {
                        if let Some(job) = latest.remove(&key) {
                            let result = Arc::new(compare_all(&registry, job.request));
                            let msg = WorkerMsg::Done {
                                key: job.key,
                                generation: job.generation,
                                result,
                            };
                            if results_tx.send(msg).is_err() {
                                return;
                            }
                            repaint();
                        }
                    }
                    // Then one measurement, and look for cell requests again.
                    if let Some(job) = measures.pop_front() {
                        let measured = roofline::run_job(&registry, &job, &mut built);
                        if measures.is_empty() {
                            built = BuildCache::default(); // free a large input
                        }
                        let msg = WorkerMsg::Measured {
                            key: job.key,
                            measured,
                        };
                        if results_tx.send(msg).is_err() {
                            return;
                        }
                        repaint();
                    }
                }
            });
        match spawned {
            Ok(handle) => Worker {
                mode: Mode::Thread {
                    jobs: Some(jobs_tx),
                    results: results_rx,
                    handle: Some(handle),
                },
            },
            // No thread could be started: compute inline rather than not at all.
            Err(_) => Worker::inline(&EngineKind::ALL),
        }
    }

    /// Probe now and compute every request immediately on the calling thread (tests, export).
    pub fn inline(engines: &[EngineKind]) -> Worker {
        let registry = Registry::probe_only(engines);
        let done = vec![WorkerMsg::Ready(registry.backends())];
        Worker {
            mode: Mode::Inline { registry, done },
        }
    }

    /// Ask for `request` to be computed for `key`.
    pub fn submit(&mut self, key: CellKey, generation: u64, request: OpRequest) {
        match &mut self.mode {
            Mode::Thread {
                jobs: Some(jobs), ..
            } => {
                // A closed channel means the worker thread ended; the cell then stays pending and
                // `poll` reports nothing, which the UI shows as "computing".
                let _ = jobs.send(Task::Compute(Job {
                    key,
                    generation,
                    request,
                }));
            }
            Mode::Thread { jobs: None, .. } => {}
            Mode::Inline { registry, done } => {
                let result = Arc::new(compare_all(registry, request));
                done.push(WorkerMsg::Done {
                    key,
                    generation,
                    result,
                });
            }
        }
    }

    /// Ask for one roofline measurement; its `WorkerMsg::Measured` comes back when done (at once
    /// in the inline mode).
    pub fn measure(&mut self, job: MeasureJob) {
        match &mut self.mode {
            Mode::Thread {
                jobs: Some(jobs), ..
            } => {
                let _ = jobs.send(Task::Measure(job));
            }
            Mode::Thread { jobs: None, .. } => {}
            Mode::Inline { registry, done } => {
                let measured = roofline::run_job(registry, &job, &mut BuildCache::default());
                done.push(WorkerMsg::Measured {
                    key: job.key,
                    measured,
                });
            }
        }
    }

    /// Messages ready since the last call.
    pub fn poll(&mut self) -> Vec<WorkerMsg> {
        match &mut self.mode {
            Mode::Thread { results, .. } => results.try_iter().collect(),
            Mode::Inline { done, .. } => std::mem::take(done),
        }
    }
}

impl Drop for Worker {
    /// Close the job channel and wait for the thread, so the engines (and their devices) are
    /// released before the process exits rather than torn down under a running thread.
    fn drop(&mut self) {
        if let Mode::Thread { jobs, handle, .. } = &mut self.mode {
            jobs.take();
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
