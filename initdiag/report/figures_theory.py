"""The report figures of the theory: the order / chaos phase diagram and the Jacobian spectra.

One panel per activation the theory covers (:func:`.theory_data.phase_activations`,
:func:`.theory_data.jacobian_activations`), drawn with :mod:`.theory_figures` from the sweep's
predictions and spectra (computed once, :class:`~initdiag.report.context.Context`) and laid out by
:mod:`.layout`. A figure is a function ``(sweep, ctx) -> matplotlib Figure``; its ``skip`` tells
why it does not apply to a sweep (normalized or residual stacks, ...).
"""

from __future__ import annotations

from initdiag.report import layout
from initdiag.report.context import Context
from initdiag.report.layout import CBAR_W, PANEL_H, PANEL_W
from initdiag.report.theory_data import (jacobian_activations, jacobian_panel,
                                         jacobian_skip_reason, log_density_bins,
                                         phase_activations, phase_points, phase_skip_reason,
                                         theory_configs)
from initdiag.report.theory_figures import CHI_LABEL, jacobian_histogram, phase_diagram
from initdiag.results import SweepResult


def phase_skip(sweep: SweepResult, ctx: Context) -> str | None:
    """Why the phase diagram does not apply to ``sweep`` (None: it does)."""
    return phase_skip_reason(sweep, ctx.predictions)


def phase_figure(sweep: SweepResult, ctx: Context):
    """The phase diagram of each activation with the run's initializers placed on it."""
    acts = phase_activations(sweep, ctx.predictions)
    n = len(acts)
    fig, axes = layout.new_grid(1, n + 1, [PANEL_W] * n + [CBAR_W], [PANEL_H])
    for ax, act in zip(axes[0, :n], acts):
        ok, why = theory_configs(sweep, ctx.predictions, act)
        pts, inits = phase_points(ok)
        pal = {label: ctx.palette[init] for label, init in inits.items()}
        widths = "/".join(dict.fromkeys(str(c["width"]) for c, _ in ok))
        skipped = list(dict.fromkeys(i for names in why.values() for i in names))
        phase_diagram(act, points=pts, palette=pal, colorbar=False, ax=ax, skipped=skipped,
                      title=f"{act} (points at width {widths})")
    fig.colorbar(axes[0, 0].collections[0], cax=axes[0, n], label=CHI_LABEL)
    head = layout.suptitle(fig, r"Order / chaos phase diagram of the mean-field recursion, with "
                                r"the run's initializers", n * PANEL_W + 1.0)
    layout.finish_layout(fig, axes, [PANEL_W] * n + [CBAR_W], [PANEL_H], header=[head])
    return fig


def jacobian_skip(sweep: SweepResult, ctx: Context) -> str | None:
    """Why the Jacobian figure does not apply to ``sweep`` (None: it does)."""
    return jacobian_skip_reason(sweep, *ctx.spectra)


def jacobian_figure(sweep: SweepResult, ctx: Context):
    """The singular-value densities of each activation's Jacobians, one line per initializer
    (and variant)."""
    from matplotlib.patches import StepPatch

    spectra, _ = ctx.spectra
    acts = jacobian_activations(sweep, spectra)
    n = len(acts)
    fig, axes = layout.new_grid(1, n, [PANEL_W] * n, [PANEL_H])
    handles, labels = {}, []
    for ax, act in zip(axes[0], acts):
        panel = jacobian_panel(sweep, spectra, act)
        chosen = {label: s for label, (_, s) in panel.items()}
        pal = {label: ctx.palette[init] for label, (init, _) in panel.items()}
        jacobian_histogram(chosen, palette=pal, legend=False, ax=ax,
                           bins=log_density_bins(chosen))
        ax.set_title(act)
        steps = [p for p in ax.patches if isinstance(p, StepPatch)]  # one per spectrum, in order
        for label, step in zip(chosen, steps):
            if label not in handles:
                handles[label] = step
                labels.append(label)
    layout.side_legend(axes[0, -1], handles, labels)
    head = layout.suptitle(fig, r"Singular values of the input-output Jacobian $\partial x^L/"
                                r"\partial x^0$ at initialization", n * PANEL_W + 2.0)
    layout.finish_layout(fig, axes, [PANEL_W] * n, [PANEL_H], header=[head])
    return fig
