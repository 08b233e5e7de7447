"""The seed-ws2016 profile against the 2018 measurement (Vitaly Kuznetsov's PV TLB flush v2 cover letter).

WS2016, 128 vCPUs on 12 pCPUs, 65 threads x 50 mmap/munmap of 16384 pages, booted as
64x1x2 and as 8x16x1: native ("before": no Hyper-V enlightenments, since WS2016 with
>64 vCPUs, a non-flat topology and any enlightenment crashes at boot without PV flush)
real 22.46 s / user 0.99 s / sys 86.33 s, hyperv-pv real 19.30 s / user 0.91 s /
sys 36.25 s, each within 10 %; the benefit a user reads off, native/PV real 1.164x
within 5 % and sys 2.38x within 10 %; and 12 vCPUs on 12 pCPUs: native and PV within
5 % of each other on real and sys.
"""

from __future__ import annotations

import functools

import pytest

from workers import RunConfig, simulate

pytestmark = pytest.mark.slow

SEED = dict(guest_os="windows-2016", pcpus=12, threads=65, iterations=50, pages=16384,
            hv_semantics="kvm-2018", profile="seed-ws2016")
MEASURED = {"native": (22.464, 0.990, 86.3276), "hyperv-pv": (19.304, 0.908, 36.249)}
TOPOLOGIES = ["64x1x2", "8x16x1"]


@functools.cache
def seed_run(mode: str, vcpus: int, topology: str, threads: int = 65, iterations: int = 50):
    cfg = RunConfig(**{**SEED, "threads": threads, "iterations": iterations}, vcpus=vcpus, topology=topology,
                    flush_mode=mode, enlightenments=mode == "hyperv-pv")
    r = simulate(cfg)
    assert r.outcome == "ok", r.crash_reason
    return r


#: Why engine model 3 misses a figure: each part of the trade-off the fit had to make.
NOT_REACHED = (
    "model limitation (issue 14, README Calibration): the Cygwin test's threads queue on mmap_guard, "
    "so the host fills only in bursts; the fit trades PV sys (+90 %) and both real times (-11 %, "
    "-17 %) for native sys, and no profile reaches every figure at once"
)


def _figure(mode: str, metric: str, reached: bool):
    marks = () if reached else (pytest.mark.xfail(strict=True, reason=NOT_REACHED),)
    return pytest.param(mode, metric, marks=marks, id=f"{mode}-{metric}")


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("mode, metric", [
    _figure("native", "real_s", False),
    _figure("native", "user_s", True),
    _figure("native", "sys_s", True),
    _figure("hyperv-pv", "real_s", False),
    _figure("hyperv-pv", "user_s", False),
    _figure("hyperv-pv", "sys_s", False),
])
def test_seed_figure(mode, metric, topology):
    measured = dict(zip(("real_s", "user_s", "sys_s"), MEASURED[mode]))[metric]
    assert getattr(seed_run(mode, 128, topology), metric) == pytest.approx(measured, rel=0.10)


@pytest.mark.xfail(strict=True, reason=NOT_REACHED)
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_seed_benefit_real(topology):
    native, pv = seed_run("native", 128, topology), seed_run("hyperv-pv", 128, topology)
    assert native.real_s / pv.real_s == pytest.approx(22.464 / 19.304, rel=0.05)


@pytest.mark.xfail(strict=True, reason=NOT_REACHED)
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_seed_benefit_sys(topology):
    native, pv = seed_run("native", 128, topology), seed_run("hyperv-pv", 128, topology)
    assert native.sys_s / pv.sys_s == pytest.approx(86.3276 / 36.249, rel=0.10)


def test_the_direction_of_the_benefit_holds():
    """Whatever its size, PV flush saves real and sys time under this overcommit."""
    native, pv = seed_run("native", 128, "64x1x2"), seed_run("hyperv-pv", 128, "64x1x2")
    assert native.real_s > pv.real_s and native.sys_s > pv.sys_s
    assert pv.deferred_flushes > 0 and native.deferred_flushes == 0


@pytest.mark.parametrize("topology", ["6x1x2", "1x12x1"])
def test_without_overcommit_native_and_pv_agree(topology):
    native = seed_run("native", 12, topology, threads=64, iterations=100)
    pv = seed_run("hyperv-pv", 12, topology, threads=64, iterations=100)
    assert native.real_s == pytest.approx(pv.real_s, rel=0.05)
    assert native.sys_s == pytest.approx(pv.sys_s, rel=0.05)
