"""QC figure of a real-MRI evaluation: the expert mask and a model's prediction on the
mid-sagittal slice of the annotated structures (canonical ``[slice, SI, AP]``)."""

from __future__ import annotations

import numpy as np

from spinecensus.train.real_data import LoadedSample


def qc_png(sample: LoadedSample, pred: np.ndarray, path: str, title: str = "") -> None:
    """Mid-sagittal slice: image, expert mask (contour) and prediction (colour) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spinecensus.io import atomic_path

    img = np.asarray(sample.scan.data, dtype=np.float32)
    fg = sample.instances.reshape(len(img), -1).any(1)
    k = int(np.median(np.nonzero(fg)[0])) if fg.any() else len(img) // 2
    vmax = float(np.percentile(img, 99.5))
    fig, axs = plt.subplots(1, 2, figsize=(8, 4.5))
    for ax in axs:
        ax.imshow(img[k], cmap="gray", vmin=0, vmax=vmax)
        ax.axis("off")
    axs[0].contour(sample.instances[k] > 0, levels=[0.5], colors="yellow", linewidths=0.8)
    axs[0].set_title(f"{sample.meta.key} expert ({next(iter(sample.meta.labeled_classes))})")
    axs[1].imshow(np.ma.masked_equal(pred[k], 0), cmap="bwr", vmin=1, vmax=2, alpha=0.45)
    axs[1].contour(sample.instances[k] > 0, levels=[0.5], colors="yellow", linewidths=0.6)
    axs[1].set_title(title or "prediction (blue body, red disc)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


__all__ = ["qc_png"]
