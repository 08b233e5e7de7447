"""The seed-ws2016 profile reproduces the 2018 measurement (Vitaly Kuznetsov's PV TLB flush v2 cover letter).

WS2016, 128 vCPUs on 12 pCPUs, 65 threads x 50 mmap/munmap of 16384 pages:
native real 22.46 s / sys 86.33 s, hyperv-pv real 19.30 s / sys 36.25 s, user ~0.9-1.0 s;
without overcommit (12 vCPUs on 12 pCPUs) native and PV within 5% of each other.
The "before" runs had no Hyper-V enlightenments: WS2016 >64 vCPUs + non-flat topology +
any enlightenment crashes at boot without PV flush.
"""

from __future__ import annotations

import functools

import pytest

from workers import RunConfig, simulate

pytestmark = pytest.mark.slow

SEED = dict(guest_os="windows-2016", pcpus=12, threads=65, iterations=50, pages=16384,
            hv_semantics="kvm-2018", profile="seed-ws2016")


@functools.cache
def seed_run(mode: str, vcpus: int, topology: str):
    cfg = RunConfig(**SEED, vcpus=vcpus, topology=topology, flush_mode=mode, enlightenments=mode == "hyperv-pv")
    return simulate(cfg)


@pytest.mark.parametrize("topology", ["64x1x2", "8x16x1"])
def test_seed_profile_reproduces_real_time_and_pv_sys_time(topology):
    native = seed_run("native", 128, topology)
    pv = seed_run("hyperv-pv", 128, topology)
    assert native.outcome == pv.outcome == "ok"
    assert native.real_s == pytest.approx(22.46, rel=0.10)
    assert pv.real_s == pytest.approx(19.30, rel=0.10)
    assert pv.sys_s == pytest.approx(36.25, rel=0.10)
    for r in (native, pv):
        assert 0.8 <= r.user_s <= 1.1
    # the direction the 2018 series is about: PV flush saves sys time and real time under overcommit
    assert native.sys_s > pv.sys_s and native.real_s > pv.real_s


@pytest.mark.xfail(strict=True, reason=(
    "known model limitation: native sys (86.33 s) rises 15x more than native real in the measurement, "
    "which needs shootdown waits that overlap across threads; with unmapping serialised by the "
    "address-space lock the model's native sys stays well below it (see the seed profile's fitted_to notes)"))
def test_seed_profile_reproduces_native_sys_time():
    assert seed_run("native", 128, "64x1x2").sys_s == pytest.approx(86.33, rel=0.10)


@pytest.mark.parametrize("topology", ["6x1x2", "1x12x1"])
def test_without_overcommit_native_and_pv_agree(topology):
    native = seed_run("native", 12, topology)
    pv = seed_run("hyperv-pv", 12, topology)
    assert native.real_s == pytest.approx(pv.real_s, rel=0.05)
    assert native.sys_s == pytest.approx(pv.sys_s, rel=0.05)
    assert pv.deferred_flushes > 0 and native.deferred_flushes == 0
