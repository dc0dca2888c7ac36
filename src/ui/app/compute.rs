//! The app's side of computing: sending a cell's request to the worker, taking results back, and
//! roofline measurements.

use super::*;

impl KernelbookApp {
    /// The op cells of the current step, in order, once they exist (after the step was drawn).
    pub fn current_cells(&self) -> Vec<&CellState> {
        let Some(lesson) = self.lesson() else {
            return Vec::new();
        };
        (0..)
            .map_while(|cell| {
                self.cells.get(&CellKey {
                    lesson: lesson.id.clone(),
                    step: self.step,
                    cell,
                })
            })
            .collect()
    }

    /// Whether any cell of the current step still waits for results.
    pub fn is_computing(&self) -> bool {
        self.cells.values().any(|c| c.pending)
    }

    /// Whether a roofline measurement is queued or running.
    pub fn is_measuring(&self) -> bool {
        self.measurements
            .values()
            .any(|m| matches!(m, Measurement::Pending))
    }

    /// Measure the roofline of the current step's first cell that shows one, for its current
    /// parameters (again, if it was measured). Returns whether measurements were sent; a toast
    /// says why not.
    pub fn measure_roofline(&mut self) -> bool {
        let Some(lesson) = self.lesson() else {
            return false;
        };
        let id = lesson.id.clone();
        let step = self.step;
        let cell = self
            .current_cells()
            .into_iter()
            .position(|c| c.spec.show.contains(&crate::lesson::View::Roofline));
        let Some(cell) = cell else {
            self.classroom
                .toast("This step has no roofline to measure.", false);
            return false;
        };
        self.start_measure(&CellKey {
            lesson: id,
            step,
            cell,
        })
    }

    /// Send the roofline jobs of cell `key` to the worker (unless they are running already).
    pub(super) fn start_measure(&mut self, key: &CellKey) -> bool {
        let (Some(cell), Some(backends)) = (self.cells.get(key), self.backends.as_deref()) else {
            return false;
        };
        let plan = match roofline::plan(cell, backends) {
            Ok(p) => p,
            Err(e) => {
                self.classroom.toast(format!("Cannot measure: {e}"), true);
                return false;
            }
        };
        if roofline::is_measuring(&plan, &self.measurements) {
            return false;
        }
        for job in plan.jobs() {
            self.measurements
                .insert(job.key.clone(), Measurement::Pending);
        }
        for job in plan.jobs() {
            self.worker.measure(job.clone());
        }
        true
    }

    /// The roofline measurements made so far.
    pub fn measurements(&self) -> &Measurements {
        &self.measurements
    }

    pub(super) fn receive(&mut self) {
        for msg in self.worker.poll() {
            match msg {
                WorkerMsg::Ready(b) => self.backends = Some(b),
                WorkerMsg::Done {
                    key,
                    generation,
                    result,
                } => {
                    if let Some(cell) = self.cells.get_mut(&key)
                        && cell.generation == generation
                    {
                        cell.result = Some(result);
                        cell.pending = false;
                    }
                }
                WorkerMsg::Measured { key, measured } => {
                    self.measurements.insert(key, Measurement::Done(measured));
                }
            }
        }
    }

    /// Send a cell's current request (or record why it cannot run).
    pub(super) fn submit(worker: &mut Worker, key: &CellKey, cell: &mut CellState) {
        cell.generation += 1;
        match cell.request() {
            Ok(req) => {
                cell.request_error = None;
                cell.pending = true;
                worker.submit(key.clone(), cell.generation, req);
            }
            Err(e) => {
                cell.request_error = Some(e);
                cell.pending = false;
                cell.result = None;
            }
        }
    }
}
