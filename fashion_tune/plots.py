"""The figures of an evaluation, lr-find and the search-efficiency benchmark, drawn with matplotlib.

Pure drawing: arrays in, PNG bytes out (the caller writes them to a file, or to TensorBoard).
No TensorFlow, no Ray.
"""

from __future__ import annotations

import io
import warnings
from typing import Sequence

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # A crowded figure (Optuna's plots of a study of thousands of trials) is saved whole all the same:
        # matplotlib's note that it could not tighten the margins is not the user's concern.
        warnings.filterwarnings("ignore", message="Tight layout not applied")
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return buffer.getvalue()


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], normalised: bool, title: str) -> bytes:
    """Rows: true class; columns: predicted class; each cell annotated."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 8))
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalised else None)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            text = f"{matrix[i, j]:.2f}" if normalised else f"{int(matrix[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black")
    return png_bytes(fig)


def image_grid(images: np.ndarray, captions: Sequence[str], title: str, columns: int = 6) -> bytes:
    """A grid of 28x28 images with a caption under each."""
    plt = pyplot()
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image.squeeze(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    return png_bytes(fig)


def photo_strip(photos: Sequence[bytes], inputs: np.ndarray, captions: Sequence[str], title: str) -> bytes:
    """Encoded photos in a row, each above the 28x28 model input made of it and a caption."""
    from PIL import Image

    plt = pyplot()
    fig, axes = plt.subplots(2, len(photos), figsize=(1.8 * len(photos), 4.2), squeeze=False)
    for column, (photo, x, caption) in enumerate(zip(photos, inputs, captions)):
        top, bottom = axes[0, column], axes[1, column]
        top.imshow(Image.open(io.BytesIO(photo)).convert("RGB"))
        bottom.imshow(x.squeeze(), cmap="gray", vmin=0, vmax=1)
        bottom.set_title(caption, fontsize=8)
        top.axis("off")
        bottom.axis("off")
    fig.suptitle(title, fontsize=9)
    return png_bytes(fig)


def probability_bars(images: np.ndarray, probabilities: np.ndarray, labels: np.ndarray,
                     class_names: Sequence[str], title: str) -> bytes:
    """Each image beside a bar chart of its class probabilities; the true class in green,
    a wrong top prediction in red."""
    plt = pyplot()
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(8, 1.6 * n), squeeze=False, gridspec_kw={"width_ratios": [1, 3]})
    for row, (image, probs, label) in enumerate(zip(images, probabilities, labels)):
        axes[row, 0].imshow(image.squeeze(), cmap="gray", vmin=0, vmax=1)
        axes[row, 0].axis("off")
        colours = ["tab:gray"] * len(class_names)
        predicted = int(np.argmax(probs))
        if predicted != label:
            colours[predicted] = "tab:red"
        colours[int(label)] = "tab:green"
        axes[row, 1].barh(range(len(class_names)), probs, color=colours)
        axes[row, 1].set_xlim(0, 1)
        axes[row, 1].set_yticks(range(len(class_names)), class_names, fontsize=7)
        axes[row, 1].invert_yaxis()
        axes[row, 1].tick_params(axis="x", labelsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # leave room for the title
    return png_bytes(fig)


def reliability_diagram(bin_confidence: np.ndarray, bin_accuracy: np.ndarray, bin_counts: np.ndarray,
                        ece: float, title: str) -> bytes:
    """Accuracy against confidence per bin (a calibrated model lies on the diagonal), and how
    many predictions fall in each bin."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    edges = np.linspace(0, 1, len(bin_counts) + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    filled = bin_counts > 0
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
    top.bar(centres[filled], bin_accuracy[filled], width=width * 0.9, alpha=0.7, label="accuracy")
    top.plot(bin_confidence[filled], bin_accuracy[filled], "o-", color="tab:red", label="accuracy at mean confidence")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.set_title(f"{title} (ECE {ece:.4f})")
    bottom.bar(centres, bin_counts, width=width * 0.9, color="tab:blue")
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("predictions")
    return png_bytes(fig)


def loss_vs_learning_rate(rates: np.ndarray, losses: np.ndarray, suggestion: float, title: str) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(rates, losses)
    ax.set_xscale("log")
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.2e}")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(title)
    ax.legend()
    return png_bytes(fig)


def best_so_far_curves(curves: dict, metric: str, title: str) -> bytes:
    """For each study: the best metric reached against the trial-epochs spent to reach it."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ["-", "--", ":", "-."]  # curves often overlap early (same seed, same first trials)
    for i, (name, (epochs, best)) in enumerate(curves.items()):
        ax.step(epochs, best, where="post", label=name, linestyle=styles[i % len(styles)], linewidth=2)
    ax.set_xlabel("trial-epochs spent")
    ax.set_ylabel(f"best {metric} so far")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return png_bytes(fig)
