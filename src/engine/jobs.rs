//! A queue of jobs (generation on a model, or a clip's analysis) run one
//! at a time on a worker thread, for front ends that take several requests
//! (the server): models loaded once and kept, a bounded queue, progress
//! and outputs by job, cancellation.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::analyze::{analyze_into, AnalyzeRequest};
use super::request::GenerateRequest;
use super::score_video::{plan, score_video, ScoreVideoRequest};
use super::{Engine, ModelSpec};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// A job's number, unique within its queue.
pub type JobId = u64;

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for the worker.
    Queued,
    /// Being run.
    Running,
    /// Finished; its outputs are written.
    Done,
    /// Stopped by an error (its message, with every source).
    Failed(String),
    /// Cancelled before or while running.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_final(&self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// What a job is doing, as last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// The job.
    pub id: JobId,
    /// Where it is.
    pub state: JobState,
    /// Units of work done in its current stage.
    pub done: u64,
    /// Units of work in its current stage.
    pub total: u64,
    /// The current stage (`denoising`, `Griffin-Lim`, ...).
    pub stage: String,
    /// The WAV of every output written so far.
    pub outputs: Vec<PathBuf>,
    /// Every message the job reported (warnings, where it resumed).
    pub messages: Vec<String>,
}

/// A change in a job, sent to every listener.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The job's state changed.
    State(JobId, JobState),
    /// The job made progress: done of total in a stage.
    Progress(JobId, u64, u64, String),
    /// The job wrote an output (a generation's WAV, an analysis's files).
    Output(JobId, PathBuf),
    /// The job reported a message.
    Message(JobId, String),
}

/// What a job does.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Generation on a model.
    Generate {
        /// The model to run it on.
        model: ModelSpec,
        /// What to make.
        request: Box<GenerateRequest>,
    },
    /// A clip's analysis with a raga classifier.
    Analyze(AnalyzeRequest),
    /// A video scored with music from a model, written into the job's
    /// folder as `out_name` (whose extension picks the container).
    ScoreVideo {
        /// The model to make the music with.
        model: ModelSpec,
        /// What to make and how to mix it.
        request: Box<ScoreVideoRequest>,
        /// File name of the scored video.
        out_name: String,
    },
}

/// A job: what to do, and where to write it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// What to do.
    pub work: Work,
    /// Output folder.
    pub out_dir: PathBuf,
}

impl Job {
    /// A generation job.
    pub fn generate(model: ModelSpec, request: GenerateRequest, out_dir: PathBuf) -> Self {
        Self {
            work: Work::Generate {
                model,
                request: Box::new(request),
            },
            out_dir,
        }
    }
}

/// Loads the engine for a model (tests may stand in their own).
pub type Loader = dyn Fn(&ModelSpec) -> Result<Engine> + Send + Sync;

struct Entry {
    job: Job,
    status: JobStatus,
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    next_id: JobId,
    pending: VecDeque<JobId>,
    jobs: HashMap<JobId, Entry>,
    listeners: Vec<Sender<JobEvent>>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates a job's status and tells the listeners.
    fn update(&self, id: JobId, event: JobEvent) {
        let mut st = self.lock();
        if let Some(e) = st.jobs.get_mut(&id) {
            match &event {
                JobEvent::State(_, s) => e.status.state = s.clone(),
                JobEvent::Progress(_, done, total, stage) => {
                    e.status.done = *done;
                    e.status.total = *total;
                    e.status.stage.clone_from(stage);
                }
                JobEvent::Output(_, wav) => e.status.outputs.push(wav.clone()),
                JobEvent::Message(_, text) => e.status.messages.push(text.clone()),
            }
        }
        st.listeners.retain(|l| l.send(event.clone()).is_ok());
        drop(st);
        if matches!(event, JobEvent::State(..)) {
            self.wake.notify_all();
        }
    }
}

/// A bounded queue of jobs with one worker thread.
pub struct JobQueue {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl JobQueue {
    /// A queue holding at most `capacity` waiting jobs, loading models
    /// with [`Engine::load`].
    pub fn new(capacity: usize) -> Self {
        Self::with_loader(capacity, Box::new(Engine::load))
    }

    /// A queue whose models come from `loader`.
    pub fn with_loader(capacity: usize, loader: Box<Loader>) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            capacity,
        });
        let worker_shared = Arc::clone(&shared);
        let worker = std::thread::spawn(move || work(&worker_shared, &*loader));
        Self {
            shared,
            worker: Some(worker),
        }
    }

    /// Numbers later jobs after `id` (a front end whose history holds
    /// jobs up to `id`).
    pub fn number_after(&self, id: JobId) {
        let mut st = self.shared.lock();
        st.next_id = st.next_id.max(id);
    }

    /// Queues a job; refused with [`Error::QueueFull`] when `capacity` jobs
    /// are already waiting.
    pub fn submit(&self, job: Job) -> Result<JobId> {
        self.submit_numbered(|_| Ok(job))
    }

    /// Queues the job `make` builds for its id (a front end that keeps
    /// each job's files under its id); `make` runs only when there is
    /// room, and before the worker can see the job.
    pub fn submit_numbered(&self, make: impl FnOnce(JobId) -> Result<Job>) -> Result<JobId> {
        let mut st = self.shared.lock();
        if st.pending.len() >= self.shared.capacity {
            return Err(Error::QueueFull {
                waiting: st.pending.len(),
            });
        }
        let job = make(st.next_id + 1)?;
        st.next_id += 1;
        let id = st.next_id;
        Self::enqueue(&mut st, id, job);
        drop(st);
        self.shared.wake.notify_all();
        Ok(id)
    }

    /// Queues the job `make` builds again under the id of an ended job (or
    /// of a job from before [`JobQueue::number_after`]), to run into the
    /// same folder: a diffusion job continues from the state it saved
    /// there. Refused when the queue is full, when the job is still
    /// waiting or running, or when the id is not yet given out.
    pub fn resubmit(&self, id: JobId, make: impl FnOnce() -> Result<Job>) -> Result<()> {
        let mut st = self.shared.lock();
        if id == 0 || id > st.next_id {
            return Err(Error::param("id", format!("no job {id} to resume")));
        }
        if st.jobs.get(&id).is_some_and(|e| !e.status.state.is_final()) {
            return Err(Error::param(
                "id",
                format!("job {id} is still waiting or running"),
            ));
        }
        if st.pending.len() >= self.shared.capacity {
            return Err(Error::QueueFull {
                waiting: st.pending.len(),
            });
        }
        let job = make()?;
        Self::enqueue(&mut st, id, job);
        drop(st);
        self.shared.wake.notify_all();
        Ok(())
    }

    fn enqueue(st: &mut State, id: JobId, job: Job) {
        let status = JobStatus {
            id,
            state: JobState::Queued,
            done: 0,
            total: 0,
            stage: String::new(),
            outputs: Vec::new(),
            messages: Vec::new(),
        };
        st.jobs.insert(
            id,
            Entry {
                job,
                status,
                cancel: Arc::new(AtomicBool::new(false)),
            },
        );
        st.pending.push_back(id);
    }

    /// A job's status.
    pub fn status(&self, id: JobId) -> Option<JobStatus> {
        self.shared.lock().jobs.get(&id).map(|e| e.status.clone())
    }

    /// Every job's status, oldest first.
    pub fn list(&self) -> Vec<JobStatus> {
        let st = self.shared.lock();
        let mut all: Vec<JobStatus> = st.jobs.values().map(|e| e.status.clone()).collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// The job as submitted.
    pub fn job(&self, id: JobId) -> Option<Job> {
        self.shared.lock().jobs.get(&id).map(|e| e.job.clone())
    }

    /// Asks a job to stop: a waiting job is dropped, a running one stops
    /// at its next progress report. Returns whether the job exists and
    /// was not already finished.
    pub fn cancel(&self, id: JobId) -> bool {
        let mut st = self.shared.lock();
        let Some(e) = st.jobs.get(&id) else {
            return false;
        };
        if e.status.state.is_final() {
            return false;
        }
        e.cancel.store(true, Ordering::Relaxed);
        let queued = e.status.state == JobState::Queued;
        if queued {
            st.pending.retain(|p| *p != id);
        }
        drop(st);
        if queued {
            self.shared
                .update(id, JobEvent::State(id, JobState::Cancelled));
        }
        true
    }

    /// Sends every later event to `listener`.
    pub fn subscribe(&self, listener: Sender<JobEvent>) {
        self.shared.lock().listeners.push(listener);
    }

    /// Blocks until the job has finished; returns its final status.
    pub fn wait(&self, id: JobId) -> Option<JobStatus> {
        let mut st = self.shared.lock();
        loop {
            let status = st.jobs.get(&id)?.status.clone();
            if status.state.is_final() {
                return Some(status);
            }
            st = self.shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for JobQueue {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.shutdown = true;
            for e in st.jobs.values() {
                e.cancel.store(true, Ordering::Relaxed);
            }
        }
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Reports a running job's progress to the queue; cancels when asked.
struct JobProgress<'a> {
    shared: &'a Shared,
    id: JobId,
    cancel: Arc<AtomicBool>,
    done: std::sync::atomic::AtomicU64,
    total: std::sync::atomic::AtomicU64,
    stage: Mutex<String>,
}

impl Progress for JobProgress<'_> {
    fn start(&self, total: u64, what: &str) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        if let Ok(mut s) = self.stage.lock() {
            *s = what.to_string();
        }
        self.shared
            .update(self.id, JobEvent::Progress(self.id, 0, total, what.into()));
    }

    fn advance(&self, done: u64) -> bool {
        let d = self.done.fetch_add(done, Ordering::Relaxed) + done;
        let stage = self.stage.lock().map(|s| s.clone()).unwrap_or_default();
        let total = self.total.load(Ordering::Relaxed);
        self.shared
            .update(self.id, JobEvent::Progress(self.id, d, total, stage));
        !self.cancel.load(Ordering::Relaxed)
    }

    fn message(&self, text: &str) {
        self.shared
            .update(self.id, JobEvent::Message(self.id, text.into()));
    }

    fn finish(&self) {}
}

/// The worker: takes jobs in order, loading each model once.
fn work(shared: &Shared, loader: &Loader) {
    let mut engines: Vec<(ModelSpec, Engine)> = Vec::new();
    loop {
        let (id, job, cancel) = {
            let mut st = shared.lock();
            loop {
                if st.shutdown {
                    return;
                }
                if let Some(id) = st.pending.pop_front() {
                    let e = &st.jobs[&id];
                    break (id, e.job.clone(), Arc::clone(&e.cancel));
                }
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        shared.update(id, JobEvent::State(id, JobState::Running));
        let progress = JobProgress {
            shared,
            id,
            cancel,
            done: Default::default(),
            total: Default::default(),
            stage: Mutex::new(String::new()),
        };
        let result = run_job(&job, &mut engines, loader, &progress, shared, id);
        let state = match result {
            Ok(()) => JobState::Done,
            Err(Error::Cancelled) => JobState::Cancelled,
            Err(e) => JobState::Failed(e.report()),
        };
        shared.update(id, JobEvent::State(id, state));
    }
}

/// The loaded engine for `model`, loading it the first time.
fn engine_for<'a>(
    model: &ModelSpec,
    engines: &'a mut Vec<(ModelSpec, Engine)>,
    loader: &Loader,
    progress: &JobProgress,
) -> Result<&'a Engine> {
    let index = match engines.iter().position(|(s, _)| s == model) {
        Some(i) => i,
        None => {
            progress.start(0, "loading the model");
            engines.push((model.clone(), loader(model)?));
            engines.len() - 1
        }
    };
    Ok(&engines[index].1)
}

fn run_job(
    job: &Job,
    engines: &mut Vec<(ModelSpec, Engine)>,
    loader: &Loader,
    progress: &JobProgress,
    shared: &Shared,
    id: JobId,
) -> Result<()> {
    let output = |file: PathBuf| shared.update(id, JobEvent::Output(id, file));
    match &job.work {
        Work::Analyze(request) => {
            analyze_into(request, &job.out_dir, progress)?
                .into_iter()
                .for_each(output);
        }
        Work::Generate { model, request } => {
            let engine = engine_for(model, engines, loader, progress)?;
            engine.generate_into(
                request,
                &job.out_dir,
                super::defaults::CHECKPOINT_EVERY_S,
                progress,
                &mut |wav| output(wav.to_path_buf()),
            )?;
        }
        Work::ScoreVideo {
            model,
            request,
            out_name,
        } => {
            // the checks that need no model fail before one is loaded
            let out = job.out_dir.join(out_name);
            let plan = plan(request, model.backend, &out, &job.out_dir)?;
            let engine = engine_for(model, engines, loader, progress)?;
            let scored = score_video(engine, &plan, progress)?;
            output(scored.music_wav);
            output(scored.out);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn job(prompt: &str) -> Job {
        Job::generate(
            ModelSpec::default(),
            GenerateRequest::new(prompt, 1),
            std::env::temp_dir(),
        )
    }

    #[test]
    fn a_failing_load_fails_the_job_and_the_queue_goes_on() {
        let q = JobQueue::with_loader(4, Box::new(|_| Err(Error::param("model", "no such model"))));
        let (tx, rx) = mpsc::channel();
        q.subscribe(tx);
        let a = q.submit(job("a")).unwrap();
        let b = q.submit(job("b")).unwrap();
        for id in [a, b] {
            match q.wait(id).unwrap().state {
                JobState::Failed(why) => assert!(why.contains("no such model"), "{why}"),
                other => panic!("job {id}: {other:?}"),
            }
        }
        let events: Vec<JobEvent> = rx.try_iter().collect();
        assert!(events.contains(&JobEvent::State(a, JobState::Running)));
        assert_eq!(q.list().len(), 2);
        assert!(
            matches!(q.job(b).unwrap().work, Work::Generate { request, .. } if request.prompt == "b")
        );
    }

    #[test]
    fn the_queue_is_bounded_and_waiting_jobs_can_be_cancelled() {
        // the loader holds the first job until told to go on
        let (go, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let q = JobQueue::with_loader(
            1,
            Box::new(move |_| {
                let _ = gate.lock().unwrap().recv();
                Err(Error::param("model", "released"))
            }),
        );
        // dropped before the queue, so a failing assertion cannot leave the
        // worker waiting at the gate while the queue waits for the worker
        let go = go;
        let first = q.submit(job("first")).unwrap();
        while q.status(first).unwrap().state != JobState::Running {
            std::thread::yield_now();
        }
        let second = q.submit(job("second")).unwrap();
        let e = q.submit(job("third")).unwrap_err();
        assert!(matches!(e, Error::QueueFull { waiting: 1 }), "{e}");
        assert!(q.cancel(second));
        assert_eq!(q.wait(second).unwrap().state, JobState::Cancelled);
        assert!(!q.cancel(second), "a finished job cannot be cancelled");
        assert!(!q.cancel(99), "no such job");
        go.send(()).unwrap();
        assert!(matches!(q.wait(first).unwrap().state, JobState::Failed(_)));
        // room again, numbered after the ids a front end's history holds
        q.number_after(41);
        assert_eq!(q.submit(job("fourth")).unwrap(), 42);
        let e = q.resubmit(42, || Ok(job("again"))).unwrap_err();
        assert!(e.to_string().contains("still waiting"), "{e}");
        assert!(q.resubmit(43, || Ok(job("unknown"))).is_err());
        go.send(()).unwrap();
        assert!(matches!(q.wait(42).unwrap().state, JobState::Failed(_)));
        // an ended job runs again under its id; so does one from history
        q.resubmit(42, || Ok(job("again"))).unwrap();
        go.send(()).unwrap();
        assert!(matches!(q.wait(42).unwrap().state, JobState::Failed(_)));
        q.resubmit(7, || Ok(job("from history"))).unwrap();
        go.send(()).unwrap();
        assert!(matches!(q.wait(7).unwrap().state, JobState::Failed(_)));
    }
}
