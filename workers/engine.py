"""simulate(): one RunConfig in, one RunResult out. Pure: no I/O but reading the profile.

A run is one host (``pcpus``, its scheduler generation from ``host_kvm``) with
``vms`` identical VMs on it, each with its own guest kernel, KVM state, flush
strategy, threads and random streams, plus ``background_vcpus`` always-runnable
co-tenant threads.
"""

from __future__ import annotations

import hashlib
import time
from random import Random
from typing import Any

from workers.config import RunConfig
from workers.des import Simulation
from workers.flush import HyperVShootdown, STRATEGIES
from workers.guest.kernel import Kernel
from workers.guest.linux import LinuxKernel
from workers.guest.thread import GuestThread
from workers.guest.windows import NtKernel
from workers.host import Hog, Host, Probe
from workers.kvm import KvmVm
from workers.profiles import CostProfile, load_profile
from workers.result import RunResult
from workers.stats import COUNTER_NAMES, Counters, mean_int, percentile
from workers.workloads import DURATION_WORKLOADS, WORKLOADS, ProcessLocks

#: Windows ignores vCPUs past the 64th when the VM has more than 64 sockets (2018 cover letter).
WINDOWS_MAX_SOCKETS = 64
CRASH_NO_PV_FLUSH = "PAGE_FAULT_IN_NONPAGED_AREA"

#: Bump when a change to the engine changes what any run computes: stored results
#: then belong to other run_ids and are recomputed instead of served stale.
MODEL_VERSION = "3"


def effective_vcpus(cfg: RunConfig) -> int:
    sockets, _, _ = cfg.sockets_cores_threads
    if cfg.guest_os == "windows-2016" and sockets > WINDOWS_MAX_SOCKETS:
        return min(cfg.vcpus, 64)
    return cfg.vcpus


def boot_crash(cfg: RunConfig) -> str:
    """The 2018 bug: WS2016 with >64 vCPUs, a non-flat topology, any enlightenment and no PV flush."""
    _, cores, threads = cfg.sockets_cores_threads
    if (
        cfg.guest_os == "windows-2016"
        and effective_vcpus(cfg) > 64
        and (cores > 1 or threads > 1)
        and cfg.enlightenments
        and cfg.flush_mode != "hyperv-pv"
    ):
        return CRASH_NO_PV_FLUSH
    return ""


def run_key(cfg: RunConfig, profile: CostProfile | None = None) -> str:
    """A run's identity: the engine's model version, the canonical config and the profile's content."""
    prof = profile if profile is not None else load_profile(cfg.profile)
    return hashlib.sha256(f"{MODEL_VERSION}|{cfg.canonical_json()}|{prof.digest()}".encode()).hexdigest()[:32]


def simulate(
    cfg: RunConfig,
    profile: CostProfile | None = None,
    *,
    trace: list[dict[str, Any]] | None = None,
    probe: Probe | None = None,
) -> RunResult:
    """Simulate one run.

    Args:
        cfg: the run.
        profile: cost constants; default: the profile ``cfg.profile`` names.
        trace: if a list is given, hyperv-pv hypercalls are appended to it as
            KVM-trace-point-like dicts with simulated timestamps.
        probe: observation hooks (scheduling, flushes) for tests and debugging.
    Returns:
        The run's metrics; bit-identical for the same config, profile and seed.
    """
    wall0 = time.perf_counter()
    prof = profile if profile is not None else load_profile(cfg.profile)
    eff = effective_vcpus(cfg)
    crash = boot_crash(cfg)
    if crash:
        return _crashed(eff, crash, time.perf_counter() - wall0)

    sim = Simulation()
    host = Host(sim, cfg.pcpus, min_granularity_ns=cfg.host_slice_us * 1000, switch_ns=int(prof.host_switch_ns),
                tick_ns=int(prof.host_tick_ns), eevdf=cfg.host_kvm == "current", rng=Random(f"{cfg.seed}:host"),
                eevdf_yield_next_buddy=prof.flag("eevdf_yield_next_buddy"))
    host.probe = probe
    done: list[Kernel] = []

    def vm_done(k: Kernel) -> None:
        done.append(k)
        if len(done) == cfg.vms:
            sim.stop()

    kernels = [_boot_vm(cfg, prof, sim, host, k, eff, probe, trace, vm_done) for k in range(cfg.vms)]
    for _ in range(cfg.background_vcpus):
        host.start(Hog())
    for k, kernel in enumerate(kernels):
        _spawn_threads(cfg, kernel, k)

    if cfg.workload in DURATION_WORKLOADS:
        sim.at(int(cfg.duration_s * 1e9), lambda _: sim.stop())
    sim.run()
    if cfg.workload not in DURATION_WORKLOADS and len(done) < cfg.vms:
        stuck = sum(k.live_threads for k in kernels)
        raise RuntimeError(f"engine stalled with {stuck} threads unfinished at t={sim.now} ns")
    host.finish()
    return _result(cfg, eff, kernels, host, sim, time.perf_counter() - wall0)


def _boot_vm(cfg: RunConfig, prof: CostProfile, sim: Simulation, host: Host, k: int, eff: int,
             probe: Probe | None, trace: list | None, on_done) -> Kernel:
    counters = Counters()
    kvm = KvmVm(host, st_on_every_put=cfg.host_kvm == "2018", probe=probe, counters=counters)
    common = dict(vm_index=k, vcpus=cfg.vcpus, effective_vcpus=eff, ple=cfg.ple,
                  ple_window_ns=cfg.ple_window_us * 1000, probe=probe, on_done=on_done)
    rng = Random(f"{cfg.seed}:{k}:guest-scheduler")
    if cfg.guest_os == "windows-2016":
        kernel: Kernel = NtKernel(sim, host, prof, counters, rng, kvm, group_rng=Random(f"{cfg.seed}:{k}:group"),
                                  enlightened=cfg.enlightenments, **common)
    else:
        kernel = LinuxKernel(sim, host, prof, counters, rng, kvm, pcid=cfg.guest_pcid, **common)
    kvm.vcpus = kernel.vcpus
    for v in kernel.vcpus:
        host.start(v, halted=True)
    if cfg.flush_mode == "hyperv-pv":
        strategy = HyperVShootdown(kernel, prof, semantics=cfg.hv_semantics, trace=trace)
    else:
        strategy = STRATEGIES[cfg.flush_mode](kernel, prof)
    kernel.on_vm_entry = strategy.on_vm_entry if strategy.has_entry_work else None
    kernel.strategy = strategy
    return kernel


def _spawn_threads(cfg: RunConfig, kernel: Kernel, k: int) -> None:
    program = WORKLOADS[cfg.workload]
    locks = ProcessLocks(kernel)
    shootdown = kernel.strategy.shootdown
    for tid in range(cfg.threads):
        t = GuestThread(tid, ideal_vcpu=tid)
        rng = Random(f"{cfg.seed}:{k}:thread:{tid}")
        kernel.spawn(t, program(kernel, t, cfg, shootdown, rng, locks))


def _result(cfg: RunConfig, eff: int, kernels: list[Kernel], host: Host, sim: Simulation, wall: float) -> RunResult:
    duration = cfg.workload in DURATION_WORKLOADS
    per_vm: list[dict[str, float]] = []
    lat: list[int] = []
    wait_total = run_total = 0
    for kernel in kernels:
        threads = kernel.threads
        for t in threads:
            if t.vcpu is not None:  # still running when the run ended: account up to now
                kernel._account(t)
        real_s = cfg.duration_s if duration else max(t.done_at for t in threads) / 1e9
        ops = sum(t.ops for t in threads)
        steal = sum(v.wait_ns for v in kernel.vcpus)
        wait_total += steal
        run_total += sum(v.run_ns for v in kernel.vcpus)
        lat.extend(kernel.c.shootdown_latency_ns)
        per_vm.append({
            "real_s": real_s,
            "user_s": sum(t.user_ns for t in threads) / 1e9,
            "sys_s": sum(t.sys_ns for t in threads) / 1e9,
            "steal_s": steal / 1e9,
            "ops": ops,
            "ops_per_s": ops / real_s if real_s > 0 else 0.0,
            "spin_s": sum(t.spin_ns for t in threads) / 1e9,
            "lock_wait_s": sum(t.lock_wait_ns for t in threads) / 1e9,
        })
    n = len(per_vm)

    def mean(name: str) -> float:
        return sum(vm[name] for vm in per_vm) / n

    counters = {name: mean_int([getattr(k.c, name) for k in kernels]) for name in COUNTER_NAMES}
    lat.sort()
    return RunResult(
        outcome="ok",
        crash_reason="",
        effective_vcpus=eff,
        real_s=mean("real_s"),
        user_s=mean("user_s"),
        sys_s=mean("sys_s"),
        steal_s=mean("steal_s"),
        ops=mean_int([int(vm["ops"]) for vm in per_vm]),
        ops_per_s=mean("ops_per_s"),
        ops_per_s_min=min(vm["ops_per_s"] for vm in per_vm),
        spin_s=mean("spin_s"),
        lock_wait_s=mean("lock_wait_s"),
        lat_p50_us=percentile(lat, 0.50) / 1e3,
        lat_p90_us=percentile(lat, 0.90) / 1e3,
        lat_p99_us=percentile(lat, 0.99) / 1e3,
        lat_max_us=(lat[-1] / 1e3) if lat else 0.0,
        pcpu_util=host.busy_ns / (cfg.pcpus * sim.now) if sim.now else 0.0,
        steal_frac=wait_total / (wait_total + run_total) if wait_total + run_total else 0.0,
        sim_events=sim.events,
        engine_wall_s=wall,
        **counters,
    )


def _crashed(eff: int, reason: str, wall: float) -> RunResult:
    zeros: dict[str, Any] = {}
    for f in RunResult.__dataclass_fields__.values():
        if f.name in ("outcome", "crash_reason", "effective_vcpus"):
            continue
        zeros[f.name] = 0.0 if f.type in ("float", float) else 0
    zeros["engine_wall_s"] = wall
    return RunResult(outcome="crash", crash_reason=reason, effective_vcpus=eff, **zeros)
