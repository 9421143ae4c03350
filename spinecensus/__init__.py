"""spinecensus: vertebra/disc segmentation, labeling and LSTV prevalence for spine MRI cohorts."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # lazy: `import spinecensus` must stay torch-free; the API class pulls in torch
    if name == "SegmentationInference":
        from spinecensus.segment.api import SegmentationInference

        return SegmentationInference
    raise AttributeError(f"module 'spinecensus' has no attribute {name!r}")
