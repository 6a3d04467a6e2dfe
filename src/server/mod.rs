//! `ragafusion serve`: a local web studio over the engine. One process
//! holds the job queue (models loaded once and kept), the history on disk,
//! the uploads, and serves the page (compiled into the binary) and the
//! JSON API the page uses. See docs/server.md.
//!
//! ```text
//! body.rs       a job's JSON body to the engine's job
//! state.rs      the queue, history, uploads, models and events
//! api.rs        the handlers; events.rs the Server-Sent Events
//! history.rs    job records on disk; uploads.rs content-checked uploads
//! files.rs      job files streamed, with byte ranges
//! models.rs     the models offered; reports.rs compare reports
//! guard.rs      token, Host check and security headers
//! ui.rs         the page's files
//! ```

pub mod api;
pub mod api_error;
pub mod body;
pub mod events;
pub mod files;
pub mod guard;
pub mod history;
pub mod models;
pub mod reports;
pub mod state;
pub mod ui;
pub mod uploads;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::error::{Error, Result};
use state::AppState;

/// How a server runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeOptions {
    /// Address to listen on (loopback by default).
    pub host: IpAddr,
    /// Port (0: any free one).
    pub port: u16,
    /// Checkpoint folders jobs may use; the first is the default. Empty:
    /// the shipped model.
    pub models: Vec<PathBuf>,
    /// Where jobs, their files and uploads are kept.
    pub data_dir: PathBuf,
    /// Folder searched for `compare` reports.
    pub reports_dir: PathBuf,
    /// When set, every request must carry it.
    pub token: Option<String>,
    /// Largest upload, bytes.
    pub max_upload_bytes: u64,
    /// Jobs that may wait at once; more are answered 429.
    pub queue: usize,
    /// Device of the models.
    pub device: String,
    /// Compute dtype of the models.
    pub dtype: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8642,
            models: Vec::new(),
            data_dir: "ragafusion-studio".into(),
            reports_dir: ".".into(),
            token: None,
            max_upload_bytes: 200_000_000,
            queue: 16,
            device: crate::engine::defaults::DEVICE.into(),
            dtype: crate::engine::defaults::DTYPE.into(),
        }
    }
}

/// The routes, on `app`.
pub fn router(app: Arc<AppState>) -> Router {
    let most = app.options.max_upload_bytes + api::MAX_DRAIN_BYTES + (1 << 20);
    let upload_limit = DefaultBodyLimit::max(usize::try_from(most).unwrap_or(usize::MAX));
    let api = Router::new()
        .route("/health", get(api::health))
        .route("/models", get(api::models))
        .route("/vocabulary", get(api::vocabulary))
        .route("/vocabulary/ragas", get(api::search_ragas))
        .route("/caption", get(api::caption))
        .route("/jobs", post(api::submit).get(api::list_jobs))
        .route("/jobs/{id}", get(api::get_job).delete(api::cancel_job))
        .route("/jobs/{id}/events", get(events::job_events))
        .route("/jobs/{id}/resume", post(api::resume_job))
        .route("/jobs/{id}/files/{name}", get(api::job_file))
        .route("/uploads", post(api::upload).layer(upload_limit))
        .route("/reports", get(api::list_reports))
        .route("/reports/{id}", get(api::report))
        .fallback(guard::api_not_found);
    Router::new()
        .nest("/api", api)
        .merge(ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            guard::guard,
        ))
        .with_state(app)
}

/// A server listening, ready to run.
#[derive(Debug)]
pub struct Bound {
    listener: tokio::net::TcpListener,
    app: Arc<AppState>,
    runtime: tokio::runtime::Runtime,
}

impl Bound {
    /// Loads the history, checks the models and binds the address.
    pub fn bind(options: ServeOptions) -> Result<Self> {
        let models = models::model_entries(&options.models)?;
        let addr = SocketAddr::new(options.host, options.port);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("the server's runtime", e))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| Error::param("port", format!("cannot listen on {addr}: {e}")))?;
        let app = Arc::new(AppState::start(options, models)?);
        Ok(Self {
            listener,
            app,
            runtime,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::io("the listening socket", e))
    }

    /// Serves until Ctrl-C or SIGTERM; jobs still waiting or running are
    /// then recorded as interrupted, and a running diffusion job saves
    /// its state as it stops.
    pub fn run(self) -> Result<()> {
        let Bound {
            listener,
            app,
            runtime,
        } = self;
        let history = Arc::clone(&app.history);
        let service = router(app);
        runtime.block_on(async move {
            tokio::select! {
                r = axum::serve(listener, service) => r.map_err(|e| Error::io("serving", e)),
                _ = stop_signal() => Ok(()),
            }
        })?;
        // later changes (the running job stopping) are not recorded
        history.close();
        Ok(())
    }
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
