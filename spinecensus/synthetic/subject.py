"""One synthetic subject (``SyntheticSubject``): arrays, grid, covariates, NIfTI storage.

Storage
-------
:meth:`SyntheticSubject.to_nifti` / :func:`spinecensus.synthetic.cohort.write_subject` store
the arrays in a realistic non-canonical order, by default axis codes ``"ASL"`` (axis 0 toward
anterior, axis 1 toward superior, axis 2 toward left), so readers must reorient;
``spinecensus.io.load_scan`` of the written image returns exactly ``subject.image``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

from spinecensus.io import CANONICAL_AXCODES
from spinecensus.synthetic.config import DEFAULT_AXCODES

if TYPE_CHECKING:
    from spinecensus.synthetic.truth import DrawnColumn, PlantedTruth


@dataclass
class SyntheticSubject:
    """One synthetic subject, arrays in canonical order (slice L->R, S->I, A->P).

    ``spacing_mm`` is in the same axis order.  ``id_to_name`` maps instance ids (1..N,
    cranio-caudal) to anatomical names of :mod:`spinecensus.anatomy.labels`.
    """

    subject: str
    image: np.ndarray
    semantic: np.ndarray
    instances: np.ndarray
    id_to_name: dict[int, str]
    spacing_mm: tuple[float, float, float]
    anomaly: str
    sex: str
    age: int
    #: world (RAS, mm) position of voxel (0, 0, 0) of the canonical grid
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: free-form generation details (curvature, rotation, ...) for QC
    meta: dict[str, object] = field(default_factory=dict)
    #: variants of :mod:`spinecensus.synthetic.variants` the subject was generated with
    variants: tuple[str, ...] = ()
    #: tissue classes of the image model (uint8, :mod:`spinecensus.synthetic.tissues`, same
    #: shape): the label map :func:`spinecensus.synthetic.appearance.render_appearance`
    #: renders in other contrasts (None for subjects not made by ``generate_subject``)
    tissue: np.ndarray | None = None
    #: the drawn column and what was planted (:class:`spinecensus.synthetic.truth.DrawnColumn`),
    #: None for subjects not made by ``generate_subject``; :attr:`truth` reads it
    drawn: DrawnColumn | None = None

    @cached_property
    def truth(self) -> PlantedTruth | None:
        """The drawn geometry and what was planted
        (:class:`spinecensus.synthetic.truth.PlantedTruth`, ``truth.json``), computed on
        first use; None without :attr:`drawn`."""
        return None if self.drawn is None else self.drawn.truth()

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape)  # type: ignore[return-value]

    def canonical_affine(self) -> np.ndarray:
        """4x4 voxel -> RAS mm affine of the canonical array (axis codes R, I, P)."""
        sx, sy, sz = self.spacing_mm
        aff = np.zeros((4, 4))
        aff[0, 0] = sx  # axis 0 -> +R
        aff[2, 1] = -sy  # axis 1 -> -S (inferior)
        aff[1, 2] = -sz  # axis 2 -> -A (posterior)
        aff[:3, 3] = self.origin_mm
        aff[3, 3] = 1.0
        return aff

    def _transform(self, axcodes: str) -> np.ndarray:
        return ornt.ornt_transform(
            ornt.axcodes2ornt(CANONICAL_AXCODES), ornt.axcodes2ornt(tuple(axcodes))
        )

    def affine(self, axcodes: str = DEFAULT_AXCODES) -> np.ndarray:
        """4x4 affine of the arrays stored with ``axcodes`` (spacing included, no rotation:
        the small rotation is applied to the anatomy, so masks stay exact)."""
        t = self._transform(axcodes)
        return self.canonical_affine() @ ornt.inv_ornt_aff(t, self.shape)

    def stored(self, canonical: np.ndarray, axcodes: str = DEFAULT_AXCODES) -> np.ndarray:
        """A canonical-order array reoriented to ``axcodes`` storage order."""
        return np.ascontiguousarray(ornt.apply_orientation(canonical, self._transform(axcodes)))

    def to_nifti(
        self, axcodes: str = DEFAULT_AXCODES
    ) -> tuple[nib.Nifti1Image, nib.Nifti1Image, nib.Nifti1Image]:
        """(image int16, semantic uint8, instances uint16) NIfTI images on the stored grid."""
        aff = self.affine(axcodes)
        out = []
        for arr, dtype in (
            (self.image, np.int16),
            (self.semantic, np.uint8),
            (self.instances, np.uint16),
        ):
            img = nib.Nifti1Image(self.stored(arr.astype(dtype, copy=False), axcodes), aff)
            img.set_data_dtype(dtype)
            img.header.set_xyzt_units("mm")
            img.set_qform(aff, code=1)
            img.set_sform(aff, code=1)
            out.append(img)
        return out[0], out[1], out[2]
