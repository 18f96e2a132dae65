"""The training-curve figure: losses and D's outputs against the step (matplotlib)."""
import os

from needle.fileio import atomic_writer

__all__ = ["plot_history", "plot_panels", "plot_series", "save_figure"]


def _pyplot():
    """matplotlib.pyplot with the Agg backend (files only, no display), imported on first
    use: it costs about a second, which every training process would pay at start."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot
    return matplotlib.pyplot


def __getattr__(name):  # `from gan.plots import plt` still works, lazily
    if name == "plt":
        return _pyplot()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def plot_history(history, path, title="training"):
    """Plot d_loss/g_loss and d_real/d_fake from metrics records (dicts with "step")."""
    plt = _pyplot()
    figure, (losses, outputs) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for key, label in (("d_loss", "D loss"), ("g_loss", "G loss")):
        plot_series(losses, history, key, label)
    losses.set_ylabel("loss")
    losses.legend()
    losses.set_title(title)
    for key, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        plot_series(outputs, history, key, label)
    outputs.set_xlabel("step")
    outputs.set_ylabel("D output")
    outputs.legend()
    return save_figure(figure, path)


def plot_panels(history, path, title, panels):
    """One panel per (y label, keys) in `panels`, stacked over a shared step axis, each key a
    series of the records that have it; keys no record has are left out, and so are panels
    left empty (a recipe lists every figure it may log)."""
    plt = _pyplot()
    panels = [(label, [key for key in keys if any(key in r for r in history)])
              for label, keys in panels]
    panels = [(label, keys) for label, keys in panels if keys] or [("", [])]
    figure, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels) + 0.6),
                                sharex=True, squeeze=False)
    axes = axes[:, 0]
    for ax, (label, keys) in zip(axes, panels):
        for key in keys:
            plot_series(ax, history, key, key)
        ax.set_ylabel(label)
        if keys:
            ax.legend(fontsize="small", ncol=3)
    axes[0].set_title(title)
    axes[-1].set_xlabel("step")
    return save_figure(figure, path)


def save_figure(figure, path):
    """Write `figure` to the PNG `path` through needle.fileio's atomic writer (a full disk
    leaves no half-written file) and close it."""
    plt = _pyplot()
    try:
        figure.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_writer(path) as f:
            figure.savefig(f, format="png", dpi=100)
    finally:
        plt.close(figure)
    return path


def plot_series(axes, history, key, label):
    """Plot `key` against the step over the records that have it (evaluations do not); a
    series of fewer than two points is drawn as markers (a line needs two)."""
    records = [record for record in history if key in record]
    axes.plot([r["step"] for r in records], [r[key] for r in records], label=label,
              marker="o" if len(records) < 2 else None)
