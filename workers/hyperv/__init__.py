"""Hyper-V TLB-flush hypercall ABI: the Linux guest encoder and KVM's host handler.

* ``_tlfs``: TLFS/Linux constants, ``HypercallInput`` (the decoded input value) and
  sparse VP-set helpers.
* ``_kvm``: ``Partition``, KVM's handling of the flush hypercalls (2018 and current)
  with the per-vCPU flush FIFO and what each vCPU flushes on VM entry.
* ``_kvm_abi``: KVM constants, the result records and input readers;
  ``_kvm_calls``: the non-flush codes (SEND_IPI, SIGNAL_EVENT, ...) KVM also answers.
* ``_guest``: ``encode_flush``, Linux ``hyperv_flush_tlb_multi``.

Example:
    >>> p = Partition(range(128))
    >>> [call] = encode_flush({3, 70}, present=range(128), address_space=0x1000,
    ...                       start=0x7f0000000000, end=0x7f0000002000)
    >>> r = p.hypercall(0, call.control, call.input)
    >>> (r.status, sorted(r.flushed), p.vm_entry(70).pages)
    (0, [3, 70], (139637976727552, 139637976731648))
"""

from . import _guest, _kvm, _kvm_abi, _tlfs
from ._guest import *  # noqa: F403
from ._kvm import *  # noqa: F403
from ._kvm_abi import *  # noqa: F403
from ._tlfs import *  # noqa: F403

__all__ = [*_tlfs.__all__, *_kvm_abi.__all__, *_kvm.__all__, *_guest.__all__]
