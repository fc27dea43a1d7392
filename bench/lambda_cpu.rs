//! Section 7 of `make bench`: the release `run-api` with the CPU Lambda gives
//! a function of a given memory size (one vCPU at 1,769 MB, in proportion
//! below), over plain HTTP and over HTTPS as real endpoints are, warm and cold.
//!
//! - CPU share: the function process runs in a cgroup v1 `cpu` child with
//!   `cpu.cfs_quota_us` = round(100000 × MemoryMB / 1769) per 100000 µs, and
//!   in a `cpuacct` child that counts its CPU time (init included). Without a
//!   writable cgroup v1 `cpu` controller the section prints one line saying so
//!   and reports no row.
//! - HTTPS: the responder's handler behind rustls (bench/responder.rs),
//!   offering `h2` and `http/1.1` or `http/1.1` only, side by side; the SDK
//!   trusts it through `SSL_CERT_FILE` (the system bundle plus the bench CA,
//!   so the client loads a full trust store as on Lambda).
//! - Fan-out: `STOP_CONCURRENCY=100` (one wave of up to 100 StopTask), so the
//!   floor is D × (1 + ceil(N / 100)).
//!
//! `--lambda-cpu-only` runs this section alone and writes
//! `lambda_cpu.{md,json}` into `--out`; `--lambda-mb 256,512` picks the memory
//! sizes; `--lambda-wires http,h2,http1` the wires (default: plain HTTP at
//! the full vCPU and 256 MB, both HTTPS wires at every size);
//! `--lambda-paths direct,sdk` the StopTask paths (`ECS_DIRECT_STOP_TASK`;
//! default: direct, and sdk too at 512 MB); `--lambda-max-conns 0,16` the
//! `HTTP_MAX_CONNECTIONS_PER_HOST` values (default 0, no bound);
//! `--lambda-init-conns 0,100` the `ECS_CONNECTIONS_AT_INIT` values (default
//! 0); `--lambda-cold-only` leaves out the warm rows; `--lambda-bin PATH` measures another build of `run-api` (profile
//! candidates); `--lambda-tag NAME` labels that build in the output.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use serde_json::{json, Value};

use crate::responder::{workers_of, Responder, Wire};
use crate::runtime_api::RuntimeApi;
use crate::{binary, function_command, mean_injected, ms, percentile, stop_event, wait_first_poll};

/// The memory size at which Lambda gives a function one full vCPU.
const FULL_VCPU_MB: u32 = 1769;
const PERIOD_US: u64 = 100_000;
/// StopTask concurrency of these rows: one wave per 100 workers (ECS's burst).
const STOP_CONCURRENCY: usize = 100;

pub fn quota_us(memory_mb: u32) -> u64 {
    (PERIOD_US as f64 * f64::from(memory_mb) / f64::from(FULL_VCPU_MB)).round() as u64
}

fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// `--lambda-cpu-only`: this section alone.
pub fn only() -> bool {
    std::env::args().any(|a| a == "--lambda-cpu-only")
}

// ---------------------------------------------------------------- cgroups

/// A cgroup v1 `cpu` child with a CFS quota, and a `cpuacct` child that
/// counts the CPU time of what runs in it. Removed on drop (after the process
/// in it has been waited for).
struct CpuCgroup {
    cpu: PathBuf,
    acct: Option<PathBuf>,
}

impl CpuCgroup {
    fn create(name: &str, quota_us: u64) -> std::io::Result<CpuCgroup> {
        let cpu_root = Path::new("/sys/fs/cgroup/cpu");
        let cpu = cpu_root.join(name);
        std::fs::create_dir(&cpu)?;
        let group = CpuCgroup { cpu, acct: None };
        std::fs::write(group.cpu.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
        std::fs::write(group.cpu.join("cpu.cfs_quota_us"), quota_us.to_string())?;
        let mut group = group;
        // cpuacct is its own hierarchy here; where it is co-mounted with cpu
        // (`cpu,cpuacct`), the cpu child has the counters itself.
        if group.cpu.join("cpuacct.usage").exists() {
            group.acct = Some(group.cpu.clone());
        } else {
            let acct = Path::new("/sys/fs/cgroup/cpuacct").join(name);
            if std::fs::create_dir(&acct).is_ok() {
                group.acct = Some(acct);
            }
        }
        Ok(group)
    }

    /// CPU time used in the group so far (user + system, all threads).
    fn usage(&self) -> Duration {
        let ns = self
            .acct
            .as_ref()
            .and_then(|a| std::fs::read_to_string(a.join("cpuacct.usage")).ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Duration::from_nanos(ns)
    }

    /// CFS periods in which the group was throttled so far.
    fn throttled_periods(&self) -> u64 {
        let stat = std::fs::read_to_string(self.cpu.join("cpu.stat")).unwrap_or_default();
        stat.lines().find_map(|l| l.strip_prefix("nr_throttled ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    /// Make `cmd`'s process join the group between fork and exec, so its
    /// init runs under the quota too.
    fn enter_on_exec(&self, cmd: &mut std::process::Command) -> std::io::Result<()> {
        let mut files: Vec<File> = vec![OpenOptions::new().write(true).open(self.cpu.join("cgroup.procs"))?];
        if let Some(acct) = self.acct.as_ref().filter(|a| **a != self.cpu) {
            files.push(OpenOptions::new().write(true).open(acct.join("cgroup.procs"))?);
        }
        // SAFETY: the closure runs in the forked child before exec; it only
        // calls getpid and write(2) on descriptors opened beforehand, and
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let mut buf = [0u8; 10];
                let mut pid = std::process::id();
                let mut i = buf.len();
                loop {
                    i -= 1;
                    buf[i] = b'0' + (pid % 10) as u8;
                    pid /= 10;
                    if pid == 0 {
                        break;
                    }
                }
                for mut f in &files {
                    f.write_all(&buf[i..])?;
                }
                Ok(())
            });
        }
        Ok(())
    }
}

impl Drop for CpuCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.cpu);
        if let Some(acct) = self.acct.as_ref().filter(|a| **a != self.cpu) {
            let _ = std::fs::remove_dir(acct);
        }
    }
}

/// Whether cgroup v1 CPU quotas can be set here; the reason when not.
fn cgroups_usable() -> Result<(), String> {
    let probe = format!("mwaa-bench-probe-{}", std::process::id());
    let group = CpuCgroup::create(&probe, quota_us(256)).map_err(|e| format!("/sys/fs/cgroup/cpu/{probe}: {e}"))?;
    if group.acct.is_none() {
        return Err("no cpuacct counters for a child cgroup".into());
    }
    Ok(())
}

// ---------------------------------------------------------------- measuring

/// One configuration of the function: its memory size (and so CPU share),
/// how its endpoints speak, how it sends StopTask and its connection bound.
#[derive(Clone, Copy)]
struct Setting {
    memory_mb: u32,
    wire: Wire,
    /// `ECS_DIRECT_STOP_TASK`.
    direct: bool,
    /// `HTTP_MAX_CONNECTIONS_PER_HOST` (0: no bound).
    max_conns: usize,
    /// `ECS_CONNECTIONS_AT_INIT`.
    init_conns: usize,
}

impl Setting {
    fn cpu_share(&self) -> f64 {
        quota_us(self.memory_mb) as f64 / PERIOD_US as f64
    }
    fn label(&self) -> String {
        format!(
            "{} MB ({:.3} vCPU), {}, {}, max conns {}, opened at init {}",
            self.memory_mb,
            self.cpu_share(),
            self.wire.label(),
            self.path(),
            self.max_conns,
            self.init_conns
        )
    }
    fn path(&self) -> &'static str {
        if self.direct {
            "direct"
        } else {
            "sdk"
        }
    }
    fn conns(&self) -> String {
        if self.max_conns == 0 {
            "∞".into()
        } else {
            self.max_conns.to_string()
        }
    }
}

/// A `run-api` process in its own cgroup, driven by its own Runtime API.
struct Function {
    runtime: RuntimeApi,
    child: Child,
    group: CpuCgroup,
    /// exec → first poll of the Runtime API.
    init: Duration,
    /// CPU time of the process up to its first poll.
    init_cpu: Duration,
}

static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Function {
    async fn start(bin: &Path, s: Setting, ep: &Responder) -> Function {
        let name =
            format!("mwaa-bench-{}-{}", std::process::id(), STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let group = CpuCgroup::create(&name, quota_us(s.memory_mb)).expect("the cgroup (checked before)");
        let runtime = RuntimeApi::start().await;
        let mut cmd = function_command(bin, &runtime, ep, 1);
        // Logging as the template configures it (LoggingConfig: JSON,
        // ApplicationLogLevel INFO): Lambda sets these two variables.
        cmd.env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", s.memory_mb.to_string())
            .env("STOP_CONCURRENCY", STOP_CONCURRENCY.to_string())
            .env_remove("RUST_LOG")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_LEVEL", arg("--lambda-log-level").unwrap_or_else(|| "INFO".into()))
            .env("ECS_DIRECT_STOP_TASK", s.direct.to_string())
            .env("HTTP_MAX_CONNECTIONS_PER_HOST", s.max_conns.to_string())
            .env("ECS_CONNECTIONS_AT_INIT", s.init_conns.to_string());
        group.enter_on_exec(&mut cmd).expect("open the cgroup's cgroup.procs");
        let t0 = Instant::now();
        let child = cmd.spawn().expect("start the release binary (make bench builds it)");
        let polled = wait_first_poll(&runtime).await;
        let init_cpu = group.usage();
        Function { runtime, child, group, init: polled - t0, init_cpu }
    }

    /// One stop of `run_id`: (wall time to the posted response, CPU time).
    async fn stop(&self, run_id: &str) -> (Duration, Duration) {
        let cpu0 = self.group.usage();
        let event = Bytes::from(stop_event(run_id).to_string());
        let t = Instant::now();
        let (done, body) = self.runtime.invoke(format!("lc-{run_id}"), event).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("STOPPING"), "{run_id}: {body}");
        (done - t, self.group.usage().saturating_sub(cpu0))
    }

    fn stop_process(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `group` is removed when self drops, now that the process is gone.
    }
}

struct WarmRow {
    setting: Setting,
    n: usize,
    runs: usize,
    p50: Duration,
    p99: Duration,
    d_eff: Duration,
    floor: Duration,
    cpu_per_stop: Duration,
    throttled_per_stop: f64,
}

struct ColdRow {
    setting: Setting,
    n: usize,
    starts: usize,
    init: Duration,
    init_cpu: Duration,
    first_invoke: Duration,
    first_invoke_cpu: Duration,
    floor: Duration,
    /// Connections ECS accepted per start (TLS wires), and how many of
    /// them negotiated `h2`: (all, h2), medians.
    ecs_connections: (u64, u64),
}

fn floor(d: Duration, n: usize) -> Duration {
    d * (1 + n.div_ceil(STOP_CONCURRENCY) as u32)
}

async fn warm_rows(bin: &Path, s: Setting, ep: &Responder, d: Duration, plan: &[(usize, usize)]) -> Vec<WarmRow> {
    let f = Function::start(bin, s, ep).await;
    let mut rows = Vec::new();
    for &(n, runs) in plan {
        // Warm-up: connections open (and TLS sessions set up) for this fan-out.
        for i in 0..3 {
            f.stop(&format!("n{n}-lcwarm{i}")).await;
        }
        let before = ep.counts.injected();
        let throttled0 = f.group.throttled_periods();
        let (mut samples, mut cpu) = (Vec::with_capacity(runs), Duration::ZERO);
        for i in 0..runs {
            let run_id = format!("n{n}-lc{i}");
            assert_eq!(workers_of(&run_id), n);
            let (wall, c) = f.stop(&run_id).await;
            samples.push(wall);
            cpu += c;
        }
        samples.sort();
        rows.push(WarmRow {
            setting: s,
            n,
            runs,
            p50: percentile(&samples, 0.5),
            p99: percentile(&samples, 0.99),
            d_eff: mean_injected(before, ep.counts.injected()),
            floor: floor(d, n),
            cpu_per_stop: cpu / runs as u32,
            throttled_per_stop: (f.group.throttled_periods() - throttled0) as f64 / runs as f64,
        });
    }
    f.stop_process();
    rows
}

async fn cold_row(bin: &Path, s: Setting, ep: &Responder, d: Duration, n: usize, starts: usize) -> ColdRow {
    let (mut init, mut init_cpu, mut first, mut first_cpu) = (vec![], vec![], vec![], vec![]);
    let (mut conns, mut h2) = (vec![], vec![]);
    let accepted =
        || (ep.counts.ecs_connections.load(Ordering::SeqCst), ep.counts.ecs_h2_connections.load(Ordering::SeqCst));
    for i in 0..starts {
        let before = accepted();
        let f = Function::start(bin, s, ep).await;
        let (wall, cpu) = f.stop(&format!("n{n}-lccold{i}")).await;
        let after = accepted();
        conns.push(after.0 - before.0);
        h2.push(after.1 - before.1);
        init.push(f.init);
        init_cpu.push(f.init_cpu);
        first.push(wall);
        first_cpu.push(cpu);
        f.stop_process();
    }
    for v in [&mut init, &mut init_cpu, &mut first, &mut first_cpu] {
        v.sort();
    }
    conns.sort();
    h2.sort();
    ColdRow {
        setting: s,
        n,
        starts,
        init: percentile(&init, 0.5),
        init_cpu: percentile(&init_cpu, 0.5),
        first_invoke: percentile(&first, 0.5),
        first_invoke_cpu: percentile(&first_cpu, 0.5),
        floor: floor(d, n),
        ecs_connections: (conns[conns.len() / 2], h2[h2.len() / 2]),
    }
}

/// GB-seconds Lambda bills for `duration` at `memory_mb` (rounded up to 1 ms).
fn gb_s(memory_mb: u32, duration: Duration) -> f64 {
    f64::from(memory_mb) / 1024.0 * (ms(duration).ceil() / 1000.0)
}

pub struct Section {
    pub md: String,
    pub warm: Value,
    pub cold: Value,
}

/// A comma-separated list flag, or `default`.
fn list<T>(flag: &str, parse: impl Fn(&str) -> T, default: Vec<T>) -> Vec<T> {
    arg(flag).map(|v| v.split(',').map(|x| parse(x.trim())).collect()).unwrap_or(default)
}

/// The settings measured: each memory size over both HTTPS wires, and the
/// full vCPU and the template's 256 MB over plain HTTP as well; the direct
/// path, and at 512 MB (as deployed) the SDK path too; unbounded
/// connections. `--lambda-mb`, `--lambda-wires`, `--lambda-paths` and
/// `--lambda-max-conns` choose instead.
fn settings() -> Vec<Setting> {
    let number = |v: &str| v.parse::<u32>().unwrap_or_else(|_| panic!("a number, not {v:?}"));
    let mbs = list("--lambda-mb", number, vec![FULL_VCPU_MB, 256, 512, 1024]);
    let wires = arg("--lambda-wires").map(|_| list("--lambda-wires", Wire::parse, vec![]));
    let paths = arg("--lambda-paths").map(|_| list("--lambda-paths", |p| p == "direct", vec![]));
    let conns = list("--lambda-max-conns", |v| number(v) as usize, vec![0]);
    let at_init = list("--lambda-init-conns", |v| number(v) as usize, vec![0]);
    let mut out = Vec::new();
    for &m in &mbs {
        let default_wires = if m == FULL_VCPU_MB || m == 256 {
            vec![Wire::Http, Wire::H2, Wire::Http1]
        } else {
            vec![Wire::H2, Wire::Http1]
        };
        for &wire in wires.as_ref().unwrap_or(&default_wires) {
            let default_paths = if m == 512 && wire != Wire::Http { vec![true, false] } else { vec![true] };
            for &direct in paths.as_ref().unwrap_or(&default_paths) {
                for &max_conns in &conns {
                    for &init_conns in &at_init {
                        out.push(Setting { memory_mb: m, wire, direct, max_conns, init_conns });
                    }
                }
            }
        }
    }
    out
}

/// Runs the section; `None` (after one line saying why) where cgroup v1 CPU
/// quotas are not available. `--lambda-cold-only` leaves out the warm rows.
pub async fn section(plain: &Responder, d: Duration) -> Option<Section> {
    if let Err(why) = cgroups_usable() {
        println!("lambda-cpu: no cgroup v1 CPU quota here ({why}); the Lambda-CPU rows are omitted");
        return None;
    }
    let bin = arg("--lambda-bin").map(PathBuf::from).unwrap_or_else(|| binary("run-api"));
    let tag = arg("--lambda-tag").unwrap_or_else(|| "release".into());
    let cold_starts: usize = arg("--lambda-cold").map_or(8, |v| v.parse().expect("--lambda-cold K"));
    let warm_too = !std::env::args().any(|a| a == "--lambda-cold-only");
    let h2 = Responder::start(d, Wire::H2).await;
    let http1 = Responder::start(d, Wire::Http1).await;
    // No row beyond ECS's burst: the API sends one wave of 100 and leaves the
    // rest to the finalizer (section 8 measures those stops).
    let plan: &[(usize, usize)] = &[(0, 60), (1, 80), (10, 60), (100, 30)];

    let (mut warm, mut cold) = (Vec::new(), Vec::new());
    for s in settings() {
        let ep = match s.wire {
            Wire::Http => plain,
            Wire::H2 => &h2,
            Wire::Http1 => &http1,
        };
        eprintln!("lambda-cpu: {} …", s.label());
        if warm_too {
            warm.extend(warm_rows(&bin, s, ep, d, plan).await);
        }
        for n in [1, 100] {
            cold.push(cold_row(&bin, s, ep, d, n, cold_starts).await);
        }
    }
    Some(render(&tag, &bin, d, &warm, &cold))
}

fn render(tag: &str, bin: &Path, d: Duration, warm: &[WarmRow], cold: &[ColdRow]) -> Section {
    let mut md = format!(
        "\n## 7. Under Lambda's CPU share, over HTTP and HTTPS (`run-api` binary: {tag})\n\n\
The release `run-api` through the Runtime API in a cgroup v1 CPU quota of round(100000 × MemoryMB / 1769) µs per 100 ms \
(Lambda: one vCPU at 1,769 MB), with STOP_CONCURRENCY = {STOP_CONCURRENCY}; floor = D × (1 + ceil(N / {STOP_CONCURRENCY})), \
D = {} ms. HTTPS: rustls responder offering `h2` and `http/1.1` (h2) or `http/1.1` only (http/1.1), RSA-2048 chain, trusted through SSL_CERT_FILE; DynamoDB and ECS on two ports (two hosts). \
StopTask path: `ECS_DIRECT_STOP_TASK` true (direct) or false (sdk); max conns: `HTTP_MAX_CONNECTIONS_PER_HOST` (∞: no bound); \
at init: `ECS_CONNECTIONS_AT_INIT` (connections to ECS opened in the background at init). Warm: after 3 warm-up stops of the same N. \
CPU = the function process's CPU time (cpuacct); GB-s = MemoryMB / 1024 × p50 rounded up to 1 ms. \
The responder (in the bench process) is not under the quota.\n\n\
| memory MB | vCPU | wire | StopTask path | max conns | at init | workers N | runs | p50 ms | p99 ms | injected D ms | floor ms | p50 / floor | p99 / floor | CPU ms per stop | throttled periods per stop | GB-s per stop (p50) |\n\
|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        ms(d)
    );
    let mut jwarm = Vec::new();
    for r in warm {
        let s = r.setting;
        md.push_str(&format!(
            "| {} | {:.3} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.3} | {:.0} | {:.3} | {:.3} | {:.2} | {:.1} | {:.6} |\n",
            s.memory_mb,
            s.cpu_share(),
            s.wire.label(),
            s.path(),
            s.conns(),
            s.init_conns,
            r.n,
            r.runs,
            ms(r.p50),
            ms(r.p99),
            ms(r.d_eff),
            ms(r.floor),
            ms(r.p50) / ms(r.floor),
            ms(r.p99) / ms(r.floor),
            ms(r.cpu_per_stop),
            r.throttled_per_stop,
            gb_s(s.memory_mb, r.p50)
        ));
        jwarm.push(json!({"workers": r.n, "runs": r.runs, "p50_ms": ms(r.p50), "p99_ms": ms(r.p99),
            "injected_d_ms": ms(r.d_eff), "floor_ms": ms(r.floor),
            "p50_ratio": ms(r.p50) / ms(r.floor), "p99_ratio": ms(r.p99) / ms(r.floor),
            "cpu_share": s.cpu_share(), "tls": s.wire.tls(), "wire": s.wire.key(), "path": s.path(),
            "max_connections_per_host": s.max_conns, "connections_at_init": s.init_conns, "memory_mb": s.memory_mb, "stop_concurrency": STOP_CONCURRENCY,
            "cpu_ms_per_stop": ms(r.cpu_per_stop), "throttled_periods_per_stop": r.throttled_per_stop,
            "gb_s_per_stop_p50": gb_s(s.memory_mb, r.p50), "binary": tag}));
    }
    md.push_str(
        "\nCold (a fresh process per start, so its connections and TLS handshakes are in the first invoke; medians): \
init = exec → first Runtime API poll; first invoke = the first stop of the process; GB-s = (init + first invoke) billed.\n\n\
| memory MB | vCPU | wire | StopTask path | max conns | at init | workers N | starts | init ms | init CPU ms | first invoke ms | first invoke CPU ms | floor ms | first invoke / floor | GB-s (init + first invoke) | ECS connections (h2) |\n\
|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut jcold = Vec::new();
    for r in cold {
        let s = r.setting;
        let billed = gb_s(s.memory_mb, r.init) + gb_s(s.memory_mb, r.first_invoke);
        md.push_str(&format!(
            "| {} | {:.3} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {:.6} | {} ({}) |\n",
            s.memory_mb,
            s.cpu_share(),
            s.wire.label(),
            s.path(),
            s.conns(),
            s.init_conns,
            r.n,
            r.starts,
            ms(r.init),
            ms(r.init_cpu),
            ms(r.first_invoke),
            ms(r.first_invoke_cpu),
            ms(r.floor),
            ms(r.first_invoke) / ms(r.floor),
            billed,
            r.ecs_connections.0,
            r.ecs_connections.1
        ));
        jcold.push(json!({"workers": r.n, "starts": r.starts, "init_ms": ms(r.init), "init_cpu_ms": ms(r.init_cpu),
            "first_invoke_ms": ms(r.first_invoke), "first_invoke_cpu_ms": ms(r.first_invoke_cpu),
            "floor_ms": ms(r.floor), "first_invoke_ratio": ms(r.first_invoke) / ms(r.floor),
            "cpu_share": s.cpu_share(), "tls": s.wire.tls(), "wire": s.wire.key(), "path": s.path(),
            "max_connections_per_host": s.max_conns, "connections_at_init": s.init_conns, "memory_mb": s.memory_mb, "gb_s_init_and_first_invoke": billed,
            "ecs_connections": r.ecs_connections.0, "ecs_h2_connections": r.ecs_connections.1,
            "binary": tag}));
    }
    md.push_str(&format!("\nBinary: `{}`.\n", bin.display()));
    Section { md, warm: json!(jwarm), cold: json!(jcold) }
}

/// `--lambda-cpu-only`: the section alone, written to `out`/lambda_cpu.{md,json}.
pub async fn standalone(plain: &Responder, d: Duration, out: &Path, header: &str) {
    let Some(sec) = section(plain, d).await else { return };
    let md = format!("{header}{}", sec.md);
    println!("{md}");
    let js =
        json!({"service_latency_ms": ms(d), "stop_latency_lambda_cpu": sec.warm, "cold_start_lambda_cpu": sec.cold});
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(out.join("lambda_cpu.md"), &md).unwrap();
    std::fs::write(out.join("lambda_cpu.json"), serde_json::to_string_pretty(&js).unwrap()).unwrap();
    println!("written: {}/lambda_cpu.md and lambda_cpu.json", out.display());
}
