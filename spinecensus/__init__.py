"""spinecensus: vertebra/disc segmentation, labeling and LSTV prevalence for spine MRI cohorts."""

__version__ = "0.1.0"
