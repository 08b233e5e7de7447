"""simulate(): one RunConfig in, one RunResult out. Pure: no I/O but reading the profile."""

from __future__ import annotations

import hashlib
import time
from random import Random
from typing import Any

from workers.config import RunConfig
from workers.des import Simulation
from workers.flush import HyperVShootdown, KvmPvShootdown, NativeShootdown
from workers.guest import Guest, GuestThread
from workers.host import Host, HostTask, Probe
from workers.profiles import CostProfile, load_profile
from workers.result import RunResult
from workers.stats import Counters, percentile
from workers.workloads import WORKLOADS

#: Windows ignores vCPUs past the 64th when the VM has more than 64 sockets (2018 cover letter).
WINDOWS_MAX_SOCKETS = 64
CRASH_NO_PV_FLUSH = "PAGE_FAULT_IN_NONPAGED_AREA"


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


#: Bump when a change to the engine changes what any run computes: stored results
#: then belong to other run_ids and are recomputed instead of served stale.
MODEL_VERSION = "2"


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
        return _crashed(cfg, eff, crash, time.perf_counter() - wall0)

    sim = Simulation()
    counters = Counters()
    host = Host(sim, cfg.pcpus, cfg.host_slice_us * 1000, int(prof.host_switch_ns))
    host.probe = probe
    guest = Guest(
        sim, host, prof, counters, Random(f"{cfg.seed}:guest-scheduler"),
        vcpus=cfg.vcpus, effective_vcpus=eff, windows=cfg.guest_os == "windows-2016",
        ple=cfg.ple, ple_window_ns=cfg.ple_window_us * 1000,
    )
    if cfg.flush_mode == "native":
        strategy: NativeShootdown = NativeShootdown(guest, prof)
    elif cfg.flush_mode == "hyperv-pv":
        strategy = HyperVShootdown(guest, prof, semantics=cfg.hv_semantics, trace=trace)
    else:
        strategy = KvmPvShootdown(guest, prof)
    guest.on_vm_entry = strategy.on_vm_entry

    for _ in range(cfg.background_vcpus):
        host.start(HostTask(is_vm=False))
    program = WORKLOADS[cfg.workload]
    for tid in range(cfg.threads):
        t = GuestThread(tid, ideal_vcpu=tid % eff)
        guest.spawn(t, program(guest, t, cfg, strategy.shootdown, Random(f"{cfg.seed}:thread:{tid}")))

    sim.run()
    if guest.live_threads:
        raise RuntimeError(f"engine stalled with {guest.live_threads} threads unfinished at t={sim.now} ns")
    host.finish()
    return _result(cfg, eff, guest, host, counters, sim, time.perf_counter() - wall0)


def _result(cfg, eff, guest, host, c: Counters, sim, wall) -> RunResult:
    threads = guest.threads
    real_ns = max(t.done_at for t in threads)
    real_s = real_ns / 1e9
    ops = sum(t.ops for t in threads)
    lat = sorted(c.shootdown_latency_ns)
    return RunResult(
        outcome="ok",
        crash_reason="",
        effective_vcpus=eff,
        real_s=real_s,
        user_s=sum(t.user_ns for t in threads) / 1e9,
        sys_s=sum(t.sys_ns for t in threads) / 1e9,
        ops=ops,
        ops_per_s=ops / real_s if real_s > 0 else 0.0,
        shootdowns=c.shootdowns,
        ipis=c.ipis,
        vm_exits=c.vm_exits,
        hypercalls=c.hypercalls,
        hc_flush_space=c.hc_flush_space,
        hc_flush_list=c.hc_flush_list,
        hc_flush_space_ex=c.hc_flush_space_ex,
        hc_flush_list_ex=c.hc_flush_list_ex,
        hc_errors=c.hc_errors,
        full_flushes=c.full_flushes,
        fine_flushes=c.fine_flushes,
        deferred_flushes=c.deferred_flushes,
        spin_s=sum(t.spin_ns for t in threads) / 1e9,
        lock_wait_s=sum(t.lock_wait_ns for t in threads) / 1e9,
        lat_p50_us=percentile(lat, 0.50) / 1e3,
        lat_p90_us=percentile(lat, 0.90) / 1e3,
        lat_p99_us=percentile(lat, 0.99) / 1e3,
        lat_max_us=(lat[-1] / 1e3) if lat else 0.0,
        preemptions=host.preemptions,
        ple_exits=c.ple_exits,
        pcpu_util=host.busy_ns / (cfg.pcpus * real_ns) if real_ns else 0.0,
        sim_events=sim.events,
        engine_wall_s=wall,
    )


def _crashed(cfg: RunConfig, eff: int, reason: str, wall: float) -> RunResult:
    zeros: dict[str, Any] = {
        name: 0 for name in RunResult.__dataclass_fields__ if name not in ("outcome", "crash_reason", "effective_vcpus")
    }
    for name in ("real_s", "user_s", "sys_s", "ops_per_s", "spin_s", "lock_wait_s", "lat_p50_us", "lat_p90_us",
                 "lat_p99_us", "lat_max_us", "pcpu_util", "engine_wall_s"):
        zeros[name] = 0.0
    zeros["engine_wall_s"] = wall
    return RunResult(outcome="crash", crash_reason=reason, effective_vcpus=eff, **zeros)
