"""Training curves as a PNG beside the checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.files import save_atomic


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch for train / val / test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-"), ("val", "--"), ("test", ":")):
        if all(split in h for h in history):
            ax_loss.plot(epochs, [h[split]["loss"] for h in history], style, label=split)
            ax_acc.plot(epochs, [h[split]["accuracy"] for h in history], style, label=f"{split} accuracy")
            if split != "train":
                ax_acc.plot(
                    epochs,
                    [h[split]["balanced_accuracy"] for h in history],
                    style,
                    alpha=0.5,
                    label=f"{split} balanced acc.",
                )
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    """Grid and legend on every axis, written atomically as PNG, then closed."""
    import matplotlib.pyplot as plt

    for ax in fig.axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
