//! The Wasm capacity: WASI preview 1 modules and preview 2 command components, run in wasmtime
//! inside this process.
//!
//! Expensive work happens once per image in [`WasmCapacity::prepare`]: hash, compile (or load the
//! cached artifact), link, `instantiate_pre`. Starting a container is cheap: a thread, a `Store`
//! with the container's limits, an instantiation from the pre-linked program.
//!
//! Architecture invariant: one `Engine` and one epoch ticker serve every guest; a guest's
//! limits live on its own `Store`, never on the engine.

mod artifact;
mod engine;
pub mod http;
mod limits;
mod run;
mod sandbox;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use artifact::{CacheOutcome, WasmKind, sha256_hex};
pub use engine::{EngineSettings, PoolingChoice, SharedEngine};
pub use run::describe_bytes;

use crate::capacity::{Capacity, CapacityError, ContainerHandle, ContainerSpec};
use artifact::{ArtifactCache, Compiled};
use limits::MemoryLimiter;

/// The data of a guest's `Store`: its WASI context (preview 1 or 2) and its memory limiter.
pub struct GuestState<W> {
    wasi: W,
    limiter: MemoryLimiter,
}

/// The WASI preview 2 context and the resource table it needs.
pub struct P2Wasi {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for GuestState<P2Wasi> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
    }
}

/// A Wasm image made ready to start: compiled and linked once, instantiated per container.
pub struct WasmProgram {
    /// `sha256:<hex>` of the Wasm bytes.
    pub digest: String,
    pub kind: WasmKind,
    /// Whether preparing it compiled the bytes or found the artifact on disk.
    pub cache: CacheOutcome,
    pre: ProgramPre,
}

enum ProgramPre {
    Core(wasmtime::InstancePre<GuestState<WasiP1Ctx>>),
    Component(CommandPre<GuestState<P2Wasi>>),
    /// A `wasi:http/proxy` component: served per request, not run.
    Http(wasmtime_wasi_http::p2::bindings::ProxyPre<http::HttpState>),
}

impl WasmProgram {
    /// Whether it is an HTTP handler (`wasi:http/incoming-handler`) rather than a command.
    pub fn serves_http(&self) -> bool {
        matches!(self.pre, ProgramPre::Http(_))
    }
}

/// Where compiled artifacts are cached and how the engine is built.
#[derive(Debug, Clone, Default)]
pub struct WasmCapacityConfig {
    pub engine: EngineSettings,
    /// Directory for compiled artifacts; `None` keeps nothing on disk.
    pub artifact_dir: Option<PathBuf>,
}

/// Runs Wasm containers. One per process.
pub struct WasmCapacity {
    shared: SharedEngine,
    artifacts: ArtifactCache,
    core_linker: wasmtime::Linker<GuestState<WasiP1Ctx>>,
    component_linker: wasmtime::component::Linker<GuestState<P2Wasi>>,
    /// WASI p2 plus wasi:http, for HTTP handlers (components built with std import more than
    /// the proxy world, so the whole of p2 is linked).
    http_linker: wasmtime::component::Linker<http::HttpState>,
    /// HTTP handlers serving now, for the gateway.
    http_endpoints: Arc<crate::capacity::endpoint::HttpEndpoints>,
    /// Programs already prepared in this process, by digest; one preparation per digest even
    /// when several tasks ask at once.
    programs: Mutex<HashMap<String, Arc<OnceCell<Arc<WasmProgram>>>>>,
    /// The digests of image bytes hashed before, by their allocation: a file image that has
    /// not changed comes back as the same bytes (`Images` remembers it), and is not hashed
    /// again at every start.
    hashed: Mutex<Vec<(Arc<[u8]>, String)>>,
}

/// The most byte buffers whose digest is remembered.
const MAX_HASHED: usize = 64;

impl WasmCapacity {
    pub fn new(config: &WasmCapacityConfig) -> Result<Self, CapacityError> {
        let shared = SharedEngine::new(&config.engine)?;
        let link_error =
            |e: wasmtime::Error| CapacityError::Start(format!("cannot link WASI: {e}"));

        let mut core_linker = wasmtime::Linker::new(&shared.engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut core_linker, |state: &mut GuestState<_>| {
            &mut state.wasi
        })
        .map_err(link_error)?;

        let mut component_linker = wasmtime::component::Linker::new(&shared.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker).map_err(link_error)?;

        let mut http_linker = wasmtime::component::Linker::new(&shared.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut http_linker).map_err(link_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker)
            .map_err(link_error)?;

        Ok(Self {
            http_linker,
            http_endpoints: Arc::default(),
            artifacts: ArtifactCache::new(&shared.engine, config.artifact_dir.clone()),
            shared,
            core_linker,
            component_linker,
            programs: Mutex::new(HashMap::new()),
            hashed: Mutex::default(),
        })
    }

    /// Drops every prepared program from memory (running containers keep theirs). The next
    /// prepare of an image loads its compiled artifact from disk, or compiles it.
    pub fn forget_programs(&self) {
        self.programs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The HTTP handlers serving on this host.
    pub fn http_endpoints(&self) -> &Arc<crate::capacity::endpoint::HttpEndpoints> {
        &self.http_endpoints
    }

    /// The engine every guest runs on.
    pub fn engine(&self) -> &SharedEngine {
        &self.shared
    }

    fn link(&self, compiled: Compiled) -> Result<ProgramPre, CapacityError> {
        let cannot_link = |e: wasmtime::Error| CapacityError::InvalidImage(format!("{e:#}"));
        match compiled {
            Compiled::Module(module) => {
                if module.get_export("_start").is_none() {
                    return Err(CapacityError::InvalidImage(
                        "the module exports no `_start`: it is not a WASI command".into(),
                    ));
                }
                let pre = self
                    .core_linker
                    .instantiate_pre(&module)
                    .map_err(cannot_link)?;
                Ok(ProgramPre::Core(pre))
            }
            Compiled::Component(component) => {
                let command = self
                    .component_linker
                    .instantiate_pre(&component)
                    .and_then(CommandPre::new);
                let command_error = match command {
                    Ok(pre) => return Ok(ProgramPre::Component(pre)),
                    Err(error) => error,
                };
                let proxy = self
                    .http_linker
                    .instantiate_pre(&component)
                    .and_then(wasmtime_wasi_http::p2::bindings::ProxyPre::new);
                match proxy {
                    Ok(pre) => Ok(ProgramPre::Http(pre)),
                    Err(proxy_error) => Err(CapacityError::InvalidImage(format!(
                        "the component is neither a command (wasi:cli/run: {command_error:#}) \
                         nor an HTTP handler (wasi:http/incoming-handler: {proxy_error:#})"
                    ))),
                }
            }
        }
    }

    fn prepare_blocking(&self, bytes: &[u8], digest: String) -> Result<WasmProgram, CapacityError> {
        let kind = WasmKind::detect(bytes)?;
        let hex = digest.trim_start_matches("sha256:");
        let (compiled, cache) =
            self.artifacts
                .load_or_compile(&self.shared.engine, hex, kind, bytes)?;
        let pre = self.link(compiled)?;
        tracing::debug!(%digest, ?kind, ?cache, "program prepared");
        Ok(WasmProgram {
            digest,
            kind,
            cache,
            pre,
        })
    }
}

impl WasmCapacity {
    /// Makes a Wasm image ready to start (once per image: later calls share the program).
    pub async fn prepare(&self, image: Arc<[u8]>) -> Result<Arc<WasmProgram>, CapacityError> {
        let digest = self.digest_of(&image);
        let cell = {
            let mut programs = self.programs.lock().unwrap_or_else(|p| p.into_inner());
            programs.entry(digest.clone()).or_default().clone()
        };
        let program = cell
            .get_or_try_init(|| async {
                // Compilation is CPU-bound for up to seconds: tell a multi-threaded runtime to
                // move other work off this worker meanwhile.
                let prepare = || self.prepare_blocking(&image, digest.clone()).map(Arc::new);
                match tokio::runtime::Handle::current().runtime_flavor() {
                    tokio::runtime::RuntimeFlavor::MultiThread => {
                        tokio::task::block_in_place(prepare)
                    }
                    _ => prepare(),
                }
            })
            .await?;
        Ok(program.clone())
    }

    /// `sha256:<hex>` of `image`, remembered by its allocation.
    fn digest_of(&self, image: &Arc<[u8]>) -> String {
        let mut hashed = self.hashed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, digest)) = hashed.iter().find(|(bytes, _)| Arc::ptr_eq(bytes, image)) {
            return digest.clone();
        }
        let digest = format!("sha256:{}", sha256_hex(image));
        // Bytes nobody else holds any more (a registry image's, read afresh at each start)
        // would only be kept alive here.
        hashed.retain(|(bytes, _)| Arc::strong_count(bytes) > 1);
        if hashed.len() >= MAX_HASHED {
            hashed.clear();
        }
        hashed.push((image.clone(), digest.clone()));
        digest
    }

    /// Starts one container of `program`: a guest thread, or an HTTP worker for a
    /// `wasi:http` handler.
    pub fn start(
        &self,
        program: &Arc<WasmProgram>,
        spec: ContainerSpec,
    ) -> Result<ContainerHandle, CapacityError> {
        if let ProgramPre::Http(pre) = &program.pre {
            let outbound = http::OutboundPolicy::allowing(&spec.http_outbound_hosts);
            return http::start_worker(
                self.shared.engine.clone(),
                pre.clone(),
                spec,
                outbound,
                self.http_endpoints.clone(),
            );
        }
        run::spawn_guest(self.shared.engine.clone(), program.clone(), spec)
    }
}

impl Capacity for WasmCapacity {
    fn kind(&self) -> crate::capacity::CapacityKind {
        crate::capacity::CapacityKind::Wasm
    }

    fn prepare(
        self: Arc<Self>,
        _digest: String,
        image: crate::capacity::ImageSource,
    ) -> crate::capacity::BoxFuture<
        'static,
        Result<Arc<dyn crate::capacity::PreparedImage>, CapacityError>,
    > {
        Box::pin(async move {
            let crate::capacity::ImageSource::Wasm(bytes) = image else {
                return Err(CapacityError::UnsupportedImage(
                    "not a Wasm image: the Wasm capacity runs modules and components".into(),
                ));
            };
            let program = WasmCapacity::prepare(&self, bytes).await?;
            let prepared: Arc<dyn crate::capacity::PreparedImage> = Arc::new(PreparedWasm {
                capacity: self,
                program,
            });
            Ok(prepared)
        })
    }
}

/// A Wasm program as a [`PreparedImage`](crate::capacity::PreparedImage): containers are
/// instances of it, and a health check is one more instance given the check's arguments.
pub struct PreparedWasm {
    pub capacity: Arc<WasmCapacity>,
    pub program: Arc<WasmProgram>,
}

impl crate::capacity::PreparedImage for PreparedWasm {
    fn digest(&self) -> &str {
        &self.program.digest
    }

    fn kind(&self) -> crate::capacity::CapacityKind {
        crate::capacity::CapacityKind::Wasm
    }

    fn per_request(&self) -> bool {
        self.program.serves_http()
    }

    fn start(&self, spec: ContainerSpec) -> Result<ContainerHandle, CapacityError> {
        self.capacity.start(&self.program, spec)
    }

    fn check<'a>(
        &'a self,
        container: &'a ContainerSpec,
        command: crate::capacity::CheckCommand<'a>,
    ) -> crate::capacity::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // An HTTP handler has no arguments to run with: its check is a request.
            if let ProgramPre::Http(pre) = &self.program.pre {
                return http::probe(
                    self.capacity.shared.engine.clone(),
                    pre.clone(),
                    container,
                    command.args,
                    command.timeout,
                )
                .await;
            }
            let log = Arc::new(crate::capacity::ContainerLog::new(
                4096,
                crate::capacity::Tee::None,
            ));
            let spec = ContainerSpec {
                argv: std::iter::once(container.name.clone())
                    .chain(command.args.iter().cloned())
                    .collect(),
                log: log.clone(),
                ..container.clone()
            };
            let handle = self
                .capacity
                .start(&self.program, spec)
                .map_err(|error| format!("the check could not start: {error}"))?;
            match tokio::time::timeout(command.timeout, handle.wait()).await {
                Ok(exit) if exit.exit_code == 0 => Ok(()),
                Ok(exit) => Err(format!(
                    "exit {}{}",
                    exit.exit_code,
                    log.last_stderr_line()
                        .map(|line| format!(": {line}"))
                        .unwrap_or_default()
                )),
                Err(_) => {
                    handle.stop(std::time::Duration::ZERO);
                    handle.wait().await;
                    Err(format!("no answer within {}s", command.timeout.as_secs()))
                }
            }
        })
    }
}
