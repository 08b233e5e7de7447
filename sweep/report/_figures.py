"""The report's figures, drawn with matplotlib's object API (no pyplot state) and kept as PNG bytes.

Each figure is a ``Figure`` object too, so the same drawings go into the PDF
(``PdfPages``) without drawing twice.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from sweep.report._analysis import HEATMAP_METRICS, Analysis, Capacity, Curve
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
    figures.append(_slo_curves(spec, analysis.curves))
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
               "Rows: VM vCPUs; columns: consolidation ratio (vCPU:pCPU); one panel per topology. "
               "'crash' marks cells whose native runs crashed at boot.")
    if bt.empty or column not in bt.columns:
        fig = _new_figure(6, 2)
        _empty(fig, "no paired runs yet")
        return _rendered(name, f"PV benefit: {title}", caption, fig)
    groups = list(bt.groupby(["host", "guest_os", "workload", "flush_mode"], sort=True))
    topologies = list(dict.fromkeys(bt["topology_label"]))
    values = np.log2(bt[column].astype(float).where(bt[column] > 0))
    finite = values[np.isfinite(values)]
    limit = max(1.0, min(4.0, math.ceil(float(np.abs(finite).max())) if len(finite) else 1.0))
    fig = _new_figure(1.2 + 3.4 * len(topologies), 0.9 + 2.9 * len(groups))
    axes = fig.subplots(len(groups), len(topologies), squeeze=False)
    image = None
    for r, ((host, guest, workload, mode), group) in enumerate(groups):
        for c, topo in enumerate(topologies):
            ax = axes[r][c]
            sub = group[group["topology_label"] == topo]
            ax.set_title(f"{host} | {guest} | {workload}\n{mode}, topology {topo}", fontsize=8)
            if sub.empty:
                ax.axis("off")
                continue
            vcpus = sorted(sub["vcpus"].unique())
            ratios = sorted(sub["ratio"].unique())
            by_cell = {(row["vcpus"], row["ratio"]): row for _, row in sub.iterrows()}
            grid = np.full((len(vcpus), len(ratios)), np.nan)
            for (v, ratio), row in by_cell.items():
                b = float(row[column])
                grid[vcpus.index(v), ratios.index(ratio)] = math.log2(b) if b > 0 and not math.isnan(b) else np.nan
            image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, origin="lower", aspect="auto")
            for i, v in enumerate(vcpus):
                for j, ratio in enumerate(ratios):
                    cell = by_cell.get((v, ratio))
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
            ax.set_xticks(range(len(ratios)), [f"{x:g}" for x in ratios], fontsize=7)
            ax.set_yticks(range(len(vcpus)), [str(v) for v in vcpus], fontsize=7)
            ax.set_xlabel("vCPU:pCPU", fontsize=7)
            ax.set_ylabel("vCPUs", fontsize=7)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.8)
        ticks = list(range(-int(limit), int(limit) + 1))
        bar.set_ticks(ticks, labels=[f"{2.0 ** t:g}x" for t in ticks])
        bar.set_label("native / PV", fontsize=8)
    fig.suptitle(f"PV benefit: {title}", fontsize=11)
    return _rendered(name, f"PV benefit: {title}", caption, fig)


# --- consolidation ratios -------------------------------------------------------------------


def _consolidation(spec: ReportSpec, capacity: Sequence[Capacity]) -> RenderedFigure:
    n = spec.pool_hosts
    title = "Highest consolidation ratio meeting the SLO"
    caption = (f"SLO {spec.slo.describe()}. Solid: highest measured vCPU:pCPU ratio meeting it; hatched: the same with one host "
               f"of a {n}-host pool failed (its VMs spread over the other {n - 1}, ratio x {n}/{n - 1}). "
               "A missing bar means no measured ratio met the SLO; 'crash' means the VM crashed at boot.")
    if not capacity:
        fig = _new_figure(6, 2)
        _empty(fig, "no results yet")
        return _rendered("consolidation", title, caption, fig)
    panels: dict[tuple[str, str], list[Capacity]] = {}
    for c in capacity:
        panels.setdefault((c.host, c.workload), []).append(c)
    modes = list(spec.flush_modes)
    shapes_max = max(len({(c.vm, c.vcpus, c.topology_label) for c in cs}) for cs in panels.values())
    fig = _new_figure(8.5, 0.9 + len(panels) * (0.7 + 0.32 * shapes_max * len(modes)))
    axes = fig.subplots(len(panels), 1, squeeze=False)
    top = max(spec.overcommit)
    for ax, ((host, workload), caps) in zip(axes[:, 0], sorted(panels.items())):
        shapes = list(dict.fromkeys((c.vm, c.vcpus, c.topology_label) for c in caps))
        height = 0.8 / len(modes)
        for m, mode in enumerate(modes):
            for s, shape in enumerate(shapes):
                found = [c for c in caps if (c.vm, c.vcpus, c.topology_label) == shape and c.flush_mode == mode]
                if not found:
                    continue
                c = found[0]
                y = s + (m - (len(modes) - 1) / 2) * height
                color = _MODE_COLORS.get(mode, "#7f8c8d")
                label = mode if s == 0 else None
                if c.crashed:
                    ax.text(0.02 * top, y, "crash", va="center", fontsize=7, color=color)
                    continue
                if c.max_ratio is not None:
                    ax.barh(y, c.max_ratio, height=height * 0.9, color=color, alpha=0.45, label=label)
                    text = f"{c.max_ratio:g}" + ("+" if c.saturated else "")
                    ax.text(c.max_ratio, y, f" {text}", va="center", fontsize=7)
                if c.failover_safe is not None:
                    ax.barh(y, c.failover_safe, height=height * 0.9, color=color, hatch="///", fill=False,
                            edgecolor=color, label=f"{mode}, 1 of {n} hosts failed" if s == 0 else None)
        ax.set_yticks(range(len(shapes)), [f"{vm} {v} vCPU {t}" for vm, v, t in shapes], fontsize=7)
        ax.set_xlim(0, top * 1.15)
        ax.set_xlabel("vCPU:pCPU", fontsize=8)
        ax.set_title(f"host {host}, workload {workload}", fontsize=9)
    handles: dict[str, Any] = {}
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(4, len(handles)), fontsize=7)
    fig.suptitle(title, fontsize=11)
    return _rendered("consolidation", title, caption, fig)


# --- SLO metric against ratio ---------------------------------------------------------------


def _slo_curves(spec: ReportSpec, curves: Sequence[Curve]) -> RenderedFigure:
    metric = spec.slo.metric
    title = f"SLO metric ({metric}) against consolidation ratio"
    shapes = list(dict.fromkeys(c.shape for c in curves))
    shown = shapes[:MAX_CURVE_PANELS]
    caption = (f"{spec.slo.describe()} at each measured ratio, per flush mode; the dashed line is the SLO, "
               "x marks a ratio where the VM crashed at boot.")
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
        host, vm, guest, vcpus, topo, workload = shape
        for c in (c for c in curves if c.shape == shape):
            color = _MODE_COLORS.get(c.flush_mode, "#7f8c8d")
            known = [(p.ratio, p.value) for p in c.points if p.value is not None and not p.crashed]
            if known:
                ax.plot(*zip(*known), marker="o", ms=3, color=color, label=c.flush_mode)
            crashed = [p.ratio for p in c.points if p.crashed]
            if crashed:
                ax.plot(crashed, [spec.slo.max] * len(crashed), "x", color=color, ms=8,
                        label=f"{c.flush_mode} crash" if not known else None)
        ax.axhline(spec.slo.max, color="black", ls="--", lw=0.8)
        ax.set_title(f"{host} | {vm} {vcpus} vCPU {topo}\n{workload}", fontsize=8)
        ax.set_xlabel("vCPU:pCPU", fontsize=7)
        ax.set_ylabel(metric, fontsize=7)
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
