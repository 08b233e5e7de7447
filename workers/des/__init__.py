"""A tiny discrete-event core (SimPy's layout, stripped to what the engine needs)."""

from workers.des.core import EmptySchedule, Simulation

__all__ = ["EmptySchedule", "Simulation"]
