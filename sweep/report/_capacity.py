"""VMs per host from a judged ladder: the largest count meeting the SLO, with and without a failed host.

A ladder is one host shape, VM shape, workload, handler generation and flush
mode, measured at ``vms`` = 1, 2, ... Two rules keep the answer conservative:

- The limit is the largest ``k`` such that every rung 1..k meets the SLO (a
  noisy pass above a failure does not count); 0 when one VM alone fails.
- A pool of N hosts planned at k VMs each holds N*k VMs; with one host down the
  other N-1 hold them, the fullest ``ceil(N*k / (N-1))``. Every count up to the
  limit was measured, so the N+1 answer is the largest k whose failover count is
  within the limit: ``floor(limit * (N-1) / N)``, exact, no interpolation.

The ladder stops at its first failing rung or at the cap; a ladder that met the
SLO at the cap is ``saturated`` (the true limit may be higher).
"""

from __future__ import annotations

from typing import Sequence

from sweep.report._slo import Verdict


def failover_vms(vms: int, pool_hosts: int) -> int:
    """VMs on the fullest surviving host when one of ``pool_hosts`` hosts, each with ``vms``, fails."""
    if pool_hosts < 2:
        raise ValueError(f"pool_hosts: a pool needs >= 2 hosts to survive a failure, got {pool_hosts}")
    return -(-vms * pool_hosts // (pool_hosts - 1))


def vms_limit(verdicts: Sequence[Verdict]) -> int:
    """The largest k such that rungs 1..k were all measured and met the SLO (0: not even one VM)."""
    by_vms = {v.vms: v for v in verdicts}
    k = 0
    while k + 1 in by_vms and by_vms[k + 1].passed:
        k += 1
    return k


def n_plus_one_vms(limit: int, pool_hosts: int) -> int:
    """VMs per host such that the pool still meets the SLO with one host down.

    Example:
        >>> n_plus_one_vms(4, 4), n_plus_one_vms(5, 4), n_plus_one_vms(1, 2)
        (3, 3, 0)
    """
    return limit * (pool_hosts - 1) // pool_hosts


def next_rung(verdicts: Sequence[Verdict], cap: int) -> int | None:
    """The vms count to measure next, or None when the ladder is finished (a rung failed, or the cap met)."""
    limit = vms_limit(verdicts)
    if limit >= cap or any(v.vms == limit + 1 for v in verdicts):  # at the cap, or rung limit+1 failed
        return None
    return limit + 1


__all__ = ["failover_vms", "n_plus_one_vms", "next_rung", "vms_limit"]
