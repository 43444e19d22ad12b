//! One guest's life: its own thread, a `Store` with its limits, instantiation from the
//! pre-linked program, the run, and the exit with its reason.
//!
//! Guests run as tasks on a pool of guest threads, one per core, each driving a
//! single-threaded tokio runtime for its guests' async WASI calls (see [`GuestPool`]): starting
//! a guest is a queue push, not a thread and a runtime, and an idle guest holds only its
//! `Store` and its future. A guest yields at every epoch tick, so a spinning guest shares its
//! thread instead of holding it; its CPU time is the time spent polling it, and a stop can
//! interrupt it at the next tick or while it waits on the host.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use wasmtime::{Engine, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;

use super::limits::{Denial, MemoryLimiter};
use super::{GuestState, P2Wasi, ProgramPre, WasmProgram, sandbox};
use crate::capacity::handle::HandleParts;
use crate::capacity::{
    CapacityError, ContainerExit, ContainerHandle, ContainerLog, ContainerSpec, CpuBudget,
    StatsCell, StopRequest,
};

/// Exit code of a guest that trapped (as a process killed by SIGABRT).
pub const EXIT_TRAP: i32 = 134;
/// Exit code of a guest stopped for memory, or interrupted after its grace period (SIGKILL).
pub const EXIT_KILLED: i32 = 137;
/// Exit code of a guest that could not be started (as Docker's).
pub const EXIT_CANNOT_START: i32 = 125;

/// Starts the guest on the pool of guest threads and returns its handle.
pub(super) fn spawn_guest(
    engine: Engine,
    program: Arc<WasmProgram>,
    spec: ContainerSpec,
) -> Result<ContainerHandle, CapacityError> {
    let (handle, parts) = ContainerHandle::new();
    let span = tracing::info_span!(
        "container",
        task_id = %spec.task_id,
        container = %spec.name,
        digest = %program.digest,
    );
    let guest = async move {
        let HandleParts { stop, exit, stats } = parts;
        let clock = Arc::new(GuestClock::default());
        let outcome = PollTimed {
            inner: Box::pin(supervise(&engine, &program, spec, stop, &stats, &clock)),
            clock: clock.clone(),
        }
        .await;
        stats.set_cpu(clock.total());
        tracing::info!(exit_code = outcome.exit_code, reason = ?outcome.reason, "container exited");
        exit.send_replace(Some(outcome));
    };
    GuestPool::get()?.start(tracing::Instrument::instrument(guest, span));
    Ok(handle)
}

/// The threads guests run on: one per core, each a single-threaded tokio runtime driven for
/// the life of the process. Guests are placed in turn.
struct GuestPool {
    runtimes: Vec<tokio::runtime::Handle>,
    next: std::sync::atomic::AtomicUsize,
}

static POOL: std::sync::OnceLock<Result<GuestPool, String>> = std::sync::OnceLock::new();

impl GuestPool {
    fn get() -> Result<&'static GuestPool, CapacityError> {
        POOL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            (0..cores)
                .map(Self::start_thread)
                .collect::<Result<Vec<_>, _>>()
                .map(|runtimes| GuestPool {
                    runtimes,
                    next: Default::default(),
                })
        })
        .as_ref()
        .map_err(|e| CapacityError::Start(format!("cannot start the guest threads: {e}")))
    }

    fn start_thread(index: usize) -> Result<tokio::runtime::Handle, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name(format!("wasm-guests-{index}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| e.to_string())?;
        Ok(handle)
    }

    /// On a quiet host, gives the guest its first poll on this thread, then hands it to a
    /// guest thread; otherwise hands it over at once.
    ///
    /// Why: waking a parked guest thread costs ~200 µs p50 (~900 µs p90) on a busy machine,
    /// a fifth of a cold start; this thread is awake already. The first poll instantiates the
    /// guest and runs it until it first waits on the host or the next epoch tick (at most one
    /// tick of guest CPU on this thread). Only when no guest is being polled anywhere: then
    /// the guest threads are parked (the wake-up is what this saves), and at most one start
    /// at a time holds a runtime worker. In a burst of starts, or beside busy guests, the
    /// guest threads are awake, the hand-off is cheap, and the workers stay free for the API
    /// and the agent. Only on a multi-threaded runtime, which lives as long as the process:
    /// the timers a first poll creates belong to the runtime it ran on, and a current-thread
    /// runtime (a test's, say) may end before the guest does.
    fn start(&self, guest: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut guest = Box::pin(guest);
        let here = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        let now = clock_nanos();
        let previous = LAST_START.swap(now, std::sync::atomic::Ordering::Relaxed);
        let quiet = GUESTS_POLLING.load(std::sync::atomic::Ordering::Relaxed) == 0
            && now.saturating_sub(previous) >= QUIET_AFTER_NANOS;
        if quiet && let Ok(tokio::runtime::RuntimeFlavor::MultiThread) = here {
            // Whatever the guest waits on gets this waker, a no-op: the guest thread polls it
            // again first thing, which registers its own.
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            if guest.as_mut().poll(&mut context).is_ready() {
                return;
            }
        }
        self.spawn(guest);
    }

    fn spawn(&self, guest: impl std::future::Future<Output = ()> + Send + 'static) {
        let at = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.runtimes.len();
        drop(self.runtimes[at].spawn(guest));
    }
}

/// A guest's CPU time on a shared thread: the time spent polling its future (the guest runs
/// only inside those polls), read from the monotonic clock.
#[derive(Default)]
struct GuestClock {
    /// Nanoseconds spent in polls that ended.
    spent: std::sync::atomic::AtomicU64,
    /// When the poll under way began (nanoseconds since `ORIGIN`), 0 between polls.
    polling_since: std::sync::atomic::AtomicU64,
}

static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn clock_nanos() -> u64 {
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    // Never 0, which means "not polling".
    u64::try_from(origin.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl GuestClock {
    /// CPU time so far, the poll under way included.
    fn total(&self) -> Duration {
        use std::sync::atomic::Ordering::Relaxed;
        let spent = self.spent.load(Relaxed);
        let since = self.polling_since.load(Relaxed);
        let current = if since == 0 {
            0
        } else {
            clock_nanos().saturating_sub(since)
        };
        Duration::from_nanos(spent + current)
    }
}

/// A future whose polls are timed into a [`GuestClock`].
struct PollTimed<F> {
    inner: std::pin::Pin<Box<F>>,
    clock: Arc<GuestClock>,
}

impl<F: std::future::Future> std::future::Future for PollTimed<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        use std::sync::atomic::Ordering::Relaxed;
        let started = clock_nanos();
        self.clock.polling_since.store(started, Relaxed);
        let _polling = Polling::begin();
        let polled = self.inner.as_mut().poll(cx);
        self.clock.polling_since.store(0, Relaxed);
        self.clock
            .spent
            .fetch_add(clock_nanos().saturating_sub(started), Relaxed);
        polled
    }
}

/// When the last guest was started (nanoseconds since `ORIGIN`).
static LAST_START: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A start this long after the previous one is not part of a burst.
const QUIET_AFTER_NANOS: u64 = 1_000_000;

/// How many guests are inside a poll right now, anywhere in the process.
static GUESTS_POLLING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One guest's poll under way, counted in [`GUESTS_POLLING`] (uncounted when it ends, even
/// by a panic).
struct Polling;

impl Polling {
    fn begin() -> Self {
        GUESTS_POLLING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        GUESTS_POLLING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs the guest until it exits, or until a stop request's grace period runs out.
async fn supervise(
    engine: &Engine,
    program: &WasmProgram,
    spec: ContainerSpec,
    mut stop: watch::Receiver<Option<StopRequest>>,
    stats: &Arc<StatsCell>,
    clock: &Arc<GuestClock>,
) -> ContainerExit {
    // The guest's stdin reaches end of file when this turns true: its signal to stop.
    let (stop_signal, guest_stop) = watch::channel(false);
    let guest = run_guest(
        engine,
        program,
        spec,
        guest_stop,
        stats.clone(),
        clock.clone(),
    );
    tokio::pin!(guest);

    let first = tokio::select! {
        exit = &mut guest => return exit,
        request = next_stop(&mut stop) => request,
    };
    stop_signal.send_replace(true);
    tracing::info!(grace = ?first.grace, "stop requested: stdin closed");
    let mut grace = first.grace;
    let mut deadline = Instant::now() + first.grace;
    loop {
        tokio::select! {
            exit = &mut guest => return exit,
            () = tokio::time::sleep_until(deadline) => {
                tracing::info!("grace period over: interrupting the guest");
                return ContainerExit::with_reason(
                    EXIT_KILLED,
                    format!(
                        "StopTimeout: the guest did not exit within {} of the stop request and \
                         was interrupted",
                        describe_duration(grace)
                    ),
                );
            }
            request = later_stop(&mut stop) => {
                let sooner = Instant::now() + request.grace;
                if sooner < deadline {
                    deadline = sooner;
                    grace = request.grace;
                }
            }
        }
    }
}

/// The next stop request; never resolves once nobody can send one.
pub(super) async fn next_stop(stop: &mut watch::Receiver<Option<StopRequest>>) -> StopRequest {
    loop {
        if let Some(request) = *stop.borrow_and_update() {
            return request;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// A stop request sent after the one already seen (a shorter grace, say); never resolves once
/// nobody can send one.
async fn later_stop(stop: &mut watch::Receiver<Option<StopRequest>>) -> StopRequest {
    loop {
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
        if let Some(request) = *stop.borrow_and_update() {
            return request;
        }
    }
}

/// A guest's failure and whether it happened before its first instruction.
struct GuestError {
    phase: Phase,
    error: wasmtime::Error,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Instantiate,
    Run,
}

async fn run_guest(
    engine: &Engine,
    program: &WasmProgram,
    spec: ContainerSpec,
    stop: watch::Receiver<bool>,
    stats: Arc<StatsCell>,
    clock: Arc<GuestClock>,
) -> ContainerExit {
    let log = spec.log.clone();
    let (result, denial) = match ready_store(engine, program, spec, stop, stats, clock) {
        Ok(Ready::Core(mut store, pre)) => {
            let result = run_core(&mut store, pre).await;
            (result, store.data().limiter.denial())
        }
        Ok(Ready::Component(mut store, pre)) => {
            let result = run_component(&mut store, pre).await;
            (result, store.data().limiter.denial())
        }
        Err(exit) => return exit,
    };
    classify(result, denial, &log)
}

/// A guest's `Store`, ready to instantiate its program in.
enum Ready<'a> {
    Core(
        Store<GuestState<WasiP1Ctx>>,
        &'a wasmtime::InstancePre<GuestState<WasiP1Ctx>>,
    ),
    Component(
        Store<GuestState<P2Wasi>>,
        &'a CommandPre<GuestState<P2Wasi>>,
    ),
}

/// Builds the guest's WASI context and `Store` from its spec. Not async on purpose: the spec
/// and the WASI builder end here, so they are not part of the future a guest holds for its
/// whole life (1,000 idle guests hold 1,000 of them).
fn ready_store<'a>(
    engine: &Engine,
    program: &'a WasmProgram,
    spec: ContainerSpec,
    stop: watch::Receiver<bool>,
    stats: Arc<StatsCell>,
    clock: Arc<GuestClock>,
) -> Result<Ready<'a>, ContainerExit> {
    // Not `allow_blocking_current_thread`: with it, a p1 guest's sleep becomes a thread sleep
    // that no stop request can interrupt.
    let mut builder = sandbox::wasi_builder(&spec, stop).map_err(|error| {
        ContainerExit::with_reason(
            EXIT_CANNOT_START,
            format!("CannotStartContainerError: {error}"),
        )
    })?;
    let limiter = MemoryLimiter::new(spec.memory_limit_bytes, stats.clone());
    let meter = CpuMeter::new(spec.cpu_budgets, stats, clock);
    match &program.pre {
        ProgramPre::Core(pre) => Ok(Ready::Core(
            new_store(engine, builder.build_p1(), limiter, meter),
            pre,
        )),
        ProgramPre::Component(pre) => {
            let wasi = P2Wasi {
                ctx: builder.build(),
                table: Default::default(),
            };
            Ok(Ready::Component(
                new_store(engine, wasi, limiter, meter),
                pre,
            ))
        }
        // Started as workers by the capacity, never run as a process.
        ProgramPre::Http(_) => Err(ContainerExit::with_reason(
            EXIT_CANNOT_START,
            "CannotStartContainerError: an HTTP handler is served, not run",
        )),
    }
}

fn new_store<W: Send + 'static>(
    engine: &Engine,
    wasi: W,
    limiter: MemoryLimiter,
    mut meter: CpuMeter,
) -> Store<GuestState<W>> {
    let mut store = Store::new(engine, GuestState { wasi, limiter });
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| Ok(meter.on_tick()));
    store
}

async fn run_core(
    store: &mut Store<GuestState<WasiP1Ctx>>,
    pre: &wasmtime::InstancePre<GuestState<WasiP1Ctx>>,
) -> Result<(), GuestError> {
    let instantiate = |error| GuestError {
        phase: Phase::Instantiate,
        error,
    };
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(instantiate)?;
    let start = instance
        .get_typed_func::<(), ()>(&mut *store, "_start")
        .map_err(instantiate)?;
    tracing::debug!("guest running");
    start
        .call_async(&mut *store, ())
        .await
        .map_err(|error| GuestError {
            phase: Phase::Run,
            error,
        })
}

async fn run_component(
    store: &mut Store<GuestState<P2Wasi>>,
    pre: &CommandPre<GuestState<P2Wasi>>,
) -> Result<(), GuestError> {
    let command = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|error| GuestError {
            phase: Phase::Instantiate,
            error,
        })?;
    tracing::debug!("guest running");
    match command.wasi_cli_run().call_run(&mut *store).await {
        Ok(Ok(())) => Ok(()),
        // `run` returning an error is the component's way of saying "exit 1".
        Ok(Err(())) => Err(GuestError {
            phase: Phase::Run,
            error: I32Exit(1).into(),
        }),
        Err(error) => Err(GuestError {
            phase: Phase::Run,
            error,
        }),
    }
}

/// Turns how the guest ended into an exit code and a reason.
fn classify(
    result: Result<(), GuestError>,
    denial: Option<Denial>,
    log: &ContainerLog,
) -> ContainerExit {
    let GuestError { phase, error } = match result {
        Ok(()) => return ContainerExit::code(0),
        Err(error) => error,
    };
    let exit_code = error.downcast_ref::<I32Exit>().map(|exit| exit.0);
    if let Some(code) = exit_code
        && (code == 0 || denial.is_none())
    {
        return ContainerExit::code(code);
    }
    let last_words = log
        .last_stderr_line()
        .map(|line| format!(" (stderr: {line})"))
        .unwrap_or_default();
    if let Some(denial) = denial {
        return ContainerExit::with_reason(
            EXIT_KILLED,
            format!(
                "OutOfMemoryError: the container's memory limit of {} was reached; growing to {} \
                 was refused{last_words}",
                describe_bytes(denial.limit_bytes),
                describe_bytes(denial.wanted_bytes),
            ),
        );
    }
    if phase == Phase::Instantiate {
        return ContainerExit::with_reason(
            EXIT_CANNOT_START,
            format!("CannotStartContainerError: cannot instantiate the guest: {error:#}"),
        );
    }
    match error.downcast_ref::<Trap>() {
        Some(trap) => {
            let backtrace = error
                .downcast_ref::<WasmBacktrace>()
                .map(|bt| format!("\n{bt}"))
                .unwrap_or_default();
            ContainerExit::with_reason(
                EXIT_TRAP,
                format!("WasmTrap: {trap}{last_words}{backtrace}"),
            )
        }
        None => ContainerExit::with_reason(1, format!("GuestError: {error:#}{last_words}")),
    }
}

/// Measures the guest's CPU time at each epoch tick, reports it, and pauses the guest when a
/// CPU budget it draws from is in debt.
struct CpuMeter {
    budgets: Vec<Arc<CpuBudget>>,
    stats: Arc<StatsCell>,
    clock: Arc<GuestClock>,
    last: Duration,
}

impl CpuMeter {
    fn new(budgets: Vec<Arc<CpuBudget>>, stats: Arc<StatsCell>, clock: Arc<GuestClock>) -> Self {
        let last = clock.total();
        Self {
            budgets,
            stats,
            clock,
            last,
        }
    }

    fn on_tick(&mut self) -> UpdateDeadline {
        let now = self.clock.total();
        let used = now.saturating_sub(self.last);
        self.last = now;
        self.stats.set_cpu(now);
        let pause = self
            .budgets
            .iter()
            .map(|b| b.charge(used))
            .max()
            .unwrap_or_default();
        if pause.is_zero() {
            // Yield anyway, so that a stop request is seen even by a guest that never calls
            // the host.
            UpdateDeadline::Yield(1)
        } else {
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(pause)))
        }
    }
}

/// `64 MiB`, `1.5 GiB`, `512 KiB`, `100 B`.
pub fn describe_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn describe_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{:.3}s", duration.as_secs_f64())
    }
}
