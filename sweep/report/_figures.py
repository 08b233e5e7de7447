"""The report's figures, drawn with matplotlib's object API (no pyplot state) and kept as PNG bytes.

Each figure is a ``Figure`` object too, so the same drawings go into the PDF
(``PdfPages``) without drawing twice.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from sweep.report._analysis import HEATMAP_METRICS, Analysis, Capacity
from sweep.report._ladder import LadderState
from sweep.report._search import SearchFindings
from sweep.report._spec import ReportSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: PNG resolution: sharp enough on screen, small enough to embed.
DPI = 100
#: Most panels in the SLO-curve figure; more shapes than this are listed in the tables only.
MAX_CURVE_PANELS = 24
_MODE_COLORS = {"native": "#c0392b", "hyperv-pv": "#2471a3", "kvm-pv": "#1e8449"}


@dataclass(frozen=True, slots=True)
class RenderedFigure:
    """A figure: its file stem, title, caption, PNG bytes and the matplotlib object (for the PDF)."""

    name: str
    title: str
    caption: str
    png: bytes
    figure: "Figure"


def draw_figures(spec: ReportSpec, analysis: Analysis, search: SearchFindings | None) -> list[RenderedFigure]:
    """All figures of a report, in the order the HTML shows them."""
    figures = [_heatmap(analysis, column, title) for column, title in HEATMAP_METRICS]
    figures.append(_consolidation(spec, analysis.capacity))
    figures.append(_slo_curves(spec, analysis.states))
    if search is not None and search.importances:
        figures.append(_importances(search))
    return figures


def _new_figure(width: float, height: float) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(min(width, 18.0), min(height, 40.0)), dpi=DPI, layout="constrained")


def _png(fig: "Figure") -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    fig.set_layout_engine("none")  # keep the layout just computed: the PDF page reuses it instead of solving it again
    return buf.getvalue()


def _rendered(name: str, title: str, caption: str, fig: "Figure") -> RenderedFigure:
    return RenderedFigure(name, title, caption, _png(fig), fig)


def _empty(fig: "Figure", text: str) -> None:
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)


# --- PV benefit heatmaps ---------------------------------------------------------------


def _heatmap(analysis: Analysis, column: str, title: str) -> RenderedFigure:
    import numpy as np

    bt = analysis.benefit
    name = f"benefit-{column.split()[0]}"
    caption = (f"PV benefit on {title}: native / PV, geometric mean over replicates (above 1: PV is better). "
               "Rows: VM vCPUs; columns: VMs on the host; one panel per topology. Only VM counts both modes ran "
               "are shown (a ladder stops at its first miss). 'crash' marks cells whose native runs crashed at boot.")
    if bt.empty or column not in bt.columns:
        fig = _new_figure(6, 2)
        _empty(fig, "no paired runs yet")
        return _rendered(name, f"PV benefit: {title}", caption, fig)
    groups = list(bt.groupby(["host", "guest_os", "workload", "hv_semantics", "flush_mode"], sort=True))
    topologies = list(dict.fromkeys(bt["topology_label"]))
    values = np.log2(bt[column].astype(float).where(bt[column] > 0))
    finite = values[np.isfinite(values)]
    limit = max(1.0, min(4.0, math.ceil(float(np.abs(finite).max())) if len(finite) else 1.0))
    fig = _new_figure(1.2 + 3.4 * len(topologies), 0.9 + 2.9 * len(groups))
    axes = fig.subplots(len(groups), len(topologies), squeeze=False)
    image = None
    for r, ((host, guest, workload, hv, mode), group) in enumerate(groups):
        for c, topo in enumerate(topologies):
            ax = axes[r][c]
            sub = group[group["topology_label"] == topo]
            ax.set_title(f"{host} | {guest} | {workload}\n{mode} ({hv}), topology {topo}", fontsize=8)
            if sub.empty:
                ax.axis("off")
                continue
            vcpus = sorted(sub["vcpus"].unique())
            counts = sorted(sub["vms"].unique())
            by_cell = {(row["vcpus"], row["vms"]): row for _, row in sub.iterrows()}
            grid = np.full((len(vcpus), len(counts)), np.nan)
            for (v, count), row in by_cell.items():
                b = float(row[column])
                grid[vcpus.index(v), counts.index(count)] = math.log2(b) if b > 0 and not math.isnan(b) else np.nan
            image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, origin="lower", aspect="auto")
            for i, v in enumerate(vcpus):
                for j, count in enumerate(counts):
                    cell = by_cell.get((v, count))
                    if cell is None:
                        text = ""
                    elif cell["crash base"] > 0:
                        text = "crash"
                    elif math.isnan(grid[i, j]):
                        text = "-"
                    else:
                        value = 2 ** grid[i, j]
                        text = f"{value:.0f}x" if value >= 10 else f"{value:.2g}x"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7,
                            color="white" if not math.isnan(grid[i, j]) and abs(grid[i, j]) > limit * 0.6 else "black")
            ax.set_xticks(range(len(counts)), [str(x) for x in counts], fontsize=7)
            ax.set_yticks(range(len(vcpus)), [str(v) for v in vcpus], fontsize=7)
            ax.set_xlabel("VMs on the host", fontsize=7)
            ax.set_ylabel("vCPUs", fontsize=7)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.8)
        ticks = list(range(-int(limit), int(limit) + 1))
        bar.set_ticks(ticks, labels=[f"{2.0 ** t:g}x" for t in ticks])
        bar.set_label("native / PV", fontsize=8)
    fig.suptitle(f"PV benefit: {title}", fontsize=11)
    return _rendered(name, f"PV benefit: {title}", caption, fig)


# --- VMs per host ---------------------------------------------------------------------------


def _consolidation(spec: ReportSpec, capacity: Sequence[Capacity]) -> RenderedFigure:
    from matplotlib.ticker import MaxNLocator

    n = spec.pool_hosts
    title = "VMs per host meeting the SLO"
    caption = (f"SLO {spec.slo.describe()}. Solid: the most VMs per host meeting it; hatched: the most such that a "
               f"{n}-host pool still meets it with one host down. '+' means it held at max_vms ({spec.max_vms}); "
               "'crash' means the VM crashed at boot. Each bar names the Hyper-V handler (and so the KVM generation) it assumes.")
    if not capacity:
        fig = _new_figure(6, 2)
        _empty(fig, "no results yet")
        return _rendered("consolidation", title, caption, fig)
    panels: dict[tuple[str, str], list[Capacity]] = {}
    for c in capacity:
        panels.setdefault((c.host, c.workload), []).append(c)
    modes = list(spec.flush_modes)
    shapes_max = max(len({c.shape for c in cs}) for cs in panels.values())
    fig = _new_figure(8.5, 0.9 + len(panels) * (0.7 + 0.32 * shapes_max * len(modes)))
    axes = fig.subplots(len(panels), 1, squeeze=False)
    top = min(spec.max_vms, max(1, *(c.vms_per_host for c in capacity)) + 1)
    for ax, ((host, workload), caps) in zip(axes[:, 0], sorted(panels.items())):
        shapes = list(dict.fromkeys(c.shape for c in caps))
        height = 0.8 / len(modes)
        for m, mode in enumerate(modes):
            for s, shape in enumerate(shapes):
                found = [c for c in caps if c.shape == shape and c.flush_mode == mode]
                if not found:
                    continue
                c = found[0]
                y = s + (m - (len(modes) - 1) / 2) * height
                color = _MODE_COLORS.get(mode, "#7f8c8d")
                label = mode if s == 0 else None
                if c.crashed:
                    ax.text(0.02 * top, y, "crash", va="center", fontsize=7, color=color)
                    continue
                ax.barh(y, c.vms_per_host, height=height * 0.9, color=color, alpha=0.45, label=label)
                ax.text(c.vms_per_host, y, f" {c.vms_per_host}" + ("+" if c.saturated else ""), va="center", fontsize=7)
                if c.n_plus_one:
                    ax.barh(y, c.n_plus_one, height=height * 0.9, color=color, hatch="///", fill=False,
                            edgecolor=color, label=f"{mode}, 1 of {n} hosts down" if s == 0 else None)
        ax.set_yticks(range(len(shapes)), [f"{vm} {v} vCPU {t}, {hv}" for _, vm, v, t, _, hv in shapes], fontsize=7)
        ax.set_xlim(0, top * 1.1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("VMs per host", fontsize=8)
        ax.set_title(f"host {host}, workload {workload}", fontsize=9)
    handles: dict[str, Any] = {}
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(4, len(handles)), fontsize=7)
    fig.suptitle(title, fontsize=11)
    return _rendered("consolidation", title, caption, fig)


# --- the slowest VM's throughput against VMs on the host -----------------------------------


def _slo_curves(spec: ReportSpec, states: Sequence[LadderState]) -> RenderedFigure:
    from matplotlib.ticker import MaxNLocator

    title = "Slowest VM's throughput against VMs on the host"
    shapes = list(dict.fromkeys(s.ladder.shape for s in states))
    shown = shapes[:MAX_CURVE_PANELS]
    floor = spec.slo.throughput
    caption = ("The slowest VM's ops/s as a share of one VM alone (the best flush mode's), at each VM count measured, per "
               "flush mode; x marks a count that missed the SLO. "
               + (f"The dashed line is the throughput SLO ({floor:.0%})." if floor is not None else
                  "The SLO has no throughput term; the curve shows the contention anyway."))
    if len(shapes) > len(shown):
        caption += f" First {len(shown)} of {len(shapes)} shapes; the tables list all."
    if not shown:
        fig = _new_figure(6, 2)
        _empty(fig, "no results yet")
        return _rendered("slo-curves", title, caption, fig)
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = _new_figure(1.0 + 3.6 * cols, 0.8 + 2.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    for ax, shape in zip(axes.flat, shown):
        host, vm, vcpus, topo, workload, hv = shape
        for st in (s for s in states if s.ladder.shape == shape):
            color = _MODE_COLORS.get(st.ladder.flush_mode, "#7f8c8d")
            known = [(v.vms, v.throughput) for v in st.verdicts if v.throughput is not None]
            if known:
                ax.plot(*zip(*known), marker="o", ms=3, color=color, label=st.ladder.flush_mode)
            missed = [(v.vms, v.throughput if v.throughput is not None else 0.0) for v in st.verdicts if not v.passed]
            if missed:
                ax.plot(*zip(*missed), "x", color=color, ms=8,
                        label=f"{st.ladder.flush_mode} crash" if not known else None)
        if floor is not None:
            ax.axhline(floor, color="black", ls="--", lw=0.8)
        ax.set_title(f"{host} | {vm} {vcpus} vCPU {topo}\n{workload}, {hv}", fontsize=8)
        ax.set_xlabel("VMs on the host", fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("slowest VM / one VM alone", fontsize=7)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, "no value: see the table's note", ha="center", va="center", fontsize=7, transform=ax.transAxes)
    fig.suptitle(title, fontsize=11)
    return _rendered("slo-curves", title, caption, fig)


# --- search ------------------------------------------------------------------------------


def _importances(search: SearchFindings) -> RenderedFigure:
    items = sorted(search.importances.items(), key=lambda kv: kv[1])
    fig = _new_figure(7, 1.0 + 0.35 * len(items))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items], color="#2471a3")
    ax.set_xlabel("importance (fANOVA share of the objective's variance)", fontsize=8)
    ax.tick_params(labelsize=8)
    title = f"Parameter importances in study {search.study}"
    caption = f"How much each searched parameter explains the objective over {search.completed} completed trials."
    ax.set_title(title, fontsize=10)
    return _rendered("search-importances", title, caption, fig)


def write_pdf(path: Any, figures: Sequence[RenderedFigure], summary: str) -> None:
    """A PDF: the plain-text summary on the first pages, then every figure."""
    from matplotlib.backends.backend_pdf import PdfPages

    lines = summary.splitlines() or [""]
    per_page = 60
    with PdfPages(path) as pdf:
        for start in range(0, len(lines), per_page):
            page = _new_figure(8.27, 11.69)
            page.text(0.04, 0.97, "\n".join(lines[start:start + per_page]), va="top", ha="left", family="monospace", fontsize=6.5)
            pdf.savefig(page)
        for f in figures:
            pdf.savefig(f.figure)


__all__ = ["RenderedFigure", "draw_figures", "write_pdf"]
