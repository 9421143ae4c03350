"""Semantic segmentation: the U-Net, its weights and sidecar, ONNX, batched inference, and the
published package's compatible API (SegmentationInference).

Modules, in the order a volume goes through them:

* ``spec``: ``ModelSpec`` (the network's description, stored as the JSON sidecar),
  ``SEMANTIC_CLASSES``, ``labeling_classes``, ``thesis_onnx_spec``.
* ``network``: the smp U-Net (``build_network``) and the thesis-layout adapter.
* ``preprocess``: intensity normalisation (``normalise_volume``), neighbouring slices as
  channels (``neighbour_index``).
* ``grid``: native slice <-> network grid (``Geometry``, ``plan_geometry``,
  ``to_network_grid``, ``from_network_grid``).
* ``runners``: a torch or ONNX Runtime network on one batch (``TorchRunner``, ``OnnxRunner``).
* ``predict``: batched inference on whole volumes (``SegmentationModel``).
* ``postprocess``: the spine column of a semantic mask (``spine_column``,
  ``largest_component``).
* ``weights``: shipped weights (``DEFAULT_SEGMENTATION_WEIGHTS``, ``weights_file``), ``.pt`` +
  sidecar files (``save_weights``, ``read_spec``, ``load_network``) and ``load_model``.
* ``onnx_export``: ``export_onnx`` and the ``spinecensus export-onnx`` command.
* ``api``: ``SegmentationInference``, the published ``spine-segmentation`` package's API.
"""
