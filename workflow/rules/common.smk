# Shared set-up: config and sample-sheet validation, subject list, deterministic batches.
# Everything here runs at parse time, before any job: a bad sheet stops the run here with a
# message naming the row.
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The package is importable from the checkout even when it is not installed (conda jobs).
REPO = Path(workflow.basedir)
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from spinecensus.census.batches import (  # noqa: E402
    batch_of,
    make_batches,
    synthetic_subject_ids,
)
from spinecensus.census.environment import prepare_job_environment  # noqa: E402
from spinecensus.census.run_summary import run_summary  # noqa: E402
from spinecensus.census.sheet import (  # noqa: E402
    SampleSheetError,
    read_sheet,
    resolve_paths,
)
from spinecensus.census.strata import StrataSpec, check_declaration  # noqa: E402
from spinecensus.io import InputError  # noqa: E402
from spinecensus.segment.weights import (  # noqa: E402
    WeightsTaskError,
    check_weights_file,
    weights_file,
)

# Jobs run `python -m spinecensus.census ...` with the Python of the environment snakemake
# runs in (the active venv) unless a software-deployment method (conda) activates its own
# environment first; PYTHONPATH lets either find this checkout's package sources.
prepare_job_environment(REPO)

validate(config, "../schemas/config.schema.yaml")

RESULTS = config.get("results", "results") or "results"
SEG = config["segmentation"]
METHOD = SEG.get("method", "model")
DEVICE = str(SEG.get("device", "cpu"))
SYNTHETIC = config.get("samples", "") == ""
CONDA_ENV = "../../envs/spinecensus.yaml"

if SYNTHETIC:
    # the generator's subject IDs are a function of n, so the DAG is known before the
    # cohort exists (no checkpoint needed)
    SHEET = f"{RESULTS}/synthetic/samples.tsv"
    SUBJECTS = sorted(synthetic_subject_ids(int(config["synthetic"]["n"])))
    IMAGES = {s: f"{RESULTS}/synthetic/{s}/image.nii.gz" for s in SUBJECTS}
    SEMANTICS = {s: f"{RESULTS}/synthetic/{s}/semantic.nii.gz" for s in SUBJECTS}
else:
    SHEET = config["samples"]
    try:
        _sheet = read_sheet(SHEET)
    except SampleSheetError as exc:
        raise WorkflowError(str(exc))
    validate(_sheet, "../schemas/samples.schema.yaml")
    _sheet = resolve_paths(_sheet, SHEET)
    SUBJECTS = sorted(_sheet["subject"])
    IMAGES = {s: (p or "") for s, p in zip(_sheet["subject"], _sheet["image"])}
    if "semantic" in _sheet.columns:
        SEMANTICS = {
            s: (p or "") for s, p in zip(_sheet["subject"], _sheet["semantic"])
        }
    else:
        # the `spinecensus synth` layout: the mask lies next to the image
        SEMANTICS = {
            s: str(Path(p).parent / "semantic.nii.gz") for s, p in IMAGES.items()
        }

if not SUBJECTS:
    raise WorkflowError(f"sample sheet {SHEET}: no subjects")

# The prevalence strata are declared (config prevalence.strata); a declared column the sheet
# lacks, or a covariate named like an output column of subjects.parquet, stops the run here,
# naming the column. The synthetic sheet is written by a job: its columns are the generator's.
try:
    STRATA = StrataSpec.from_config(config)
    if SYNTHETIC:
        from spinecensus.synthetic.cohort import SAMPLE_COLUMNS

        check_declaration(list(SAMPLE_COLUMNS), STRATA, "(synthetic demo cohort)")
    else:
        check_declaration(_sheet, STRATA, SHEET)
except ValueError as exc:  # SampleSheetError, or prevalence.age_bins not increasing
    raise WorkflowError(str(exc))

# The analyst's overrides (config review.overrides, workflow/rules/review.smk) are checked
# before any job: an unknown subject or action, a bad status, a level name outside the label
# schema stops the run here, naming the row. Only the aggregate rule reads the file, so
# editing it reruns aggregate, the rules that read its tables and the review page.
REVIEW = config.get("review") or {}
OVERRIDES = str(REVIEW.get("overrides") or "")
if OVERRIDES:
    from spinecensus.review.overrides import OverridesError, read_overrides

    try:
        _overrides = read_overrides(OVERRIDES, SUBJECTS)
    except OverridesError as exc:
        raise WorkflowError(str(exc))
    validate(_overrides, "../schemas/overrides.schema.yaml")

BATCHES = make_batches(SUBJECTS, int(SEG.get("subjects_per_job", 25)))
BATCH_OF = batch_of(BATCHES)

# Weights are checked before any job: a missing file, or a labeler given as the segmenter
# (or the reverse), stops the run here, naming the file and both tasks.
try:
    if METHOD == "model":
        check_weights_file(
            weights_file(SEG.get("weights") or "shipped", "segmentation"),
            "segmentation",
        )
    if (config.get("labeling") or {}).get("weights"):
        check_weights_file(
            weights_file(config["labeling"]["weights"], "labeling"), "labeling"
        )
except (InputError, WeightsTaskError) as exc:
    raise WorkflowError(str(exc))


def existing(paths):
    """Only the paths that exist: a missing image must become a per-subject failure
    (recorded in failures.parquet), not a DAG error that stops the whole cohort."""
    return [p for p in paths if p and (SYNTHETIC or os.path.exists(p))]


def batch_images(wildcards):
    return existing(IMAGES[s] for s in BATCHES[wildcards.batch])


def batch_semantics(wildcards):
    if METHOD != "ground_truth":
        return []
    return existing(SEMANTICS[s] for s in BATCHES[wildcards.batch])


def subject_image(wildcards):
    return existing([IMAGES[wildcards.subject]])


def subject_seg_dir(wildcards):
    return f"{RESULTS}/segmentation/{BATCH_OF[wildcards.subject]}"


def seg_signature():
    """The settings a subject's analysis depends on besides its inputs (a change reruns it)."""
    return json.dumps(
        {
            "method": METHOD,
            "weights": SEG.get("weights", ""),
            "labeling": config.get("labeling"),
        },
        sort_keys=True,
    )


wildcard_constraints:
    subject="[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    batch=r"b\d{5}",


# --- training targets (workflow/rules/train.smk, train_real.smk) ------------------------------
TRAIN_DIR = "results/train"


def _train_config(threads):
    return {**config.get("train", {}), "threads": threads}


def _autolabel_weights(wildcards):
    """Step 1's model, or train.segmentation_weights ("shipped" or a path) to skip step 1."""
    given = (config.get("train") or {}).get("segmentation_weights") or ""
    if not given:
        return f"{TRAIN_DIR}/segmentation.pt"
    from spinecensus.segment.weights import weights_file

    return str(weights_file(given, "segmentation"))


TRAIN_REAL_DIR = "results/train_real"
_TR = config.get("train_real", {}) or {}
REAL_VARIANTS = list(
    _TR.get("variants", ["real_only", "scratch_mixed", "pretrained_mixed"])
)


# `snakemake train_real_cv`: one model per patient-level fold, each trained like the
# `cv_variant` (default the shipped real weights' recipe) and judged on its own fold
REAL_CV_VARIANT = str(_TR.get("cv_variant", "pretrained_mixed"))


def _real_folds():
    from spinecensus.train.real_splits import n_folds

    return list(range(n_folds(float(_TR.get("val_fraction", 0.34)))))


def _train_real_config(threads):
    return {**(config.get("train_real", {}) or {}), "threads": threads}


def _shipped_weights():
    from spinecensus.train.real_run_config import RealRunConfig

    return str(RealRunConfig.from_dict(_TR).pretrained_path())


def _real_eval_models(weights):
    """Models compared by train_real_evaluate: the shipped synthetic-only weights first."""
    return {"synthetic_only": _shipped_weights(), **dict(zip(REAL_VARIANTS, weights))}


# `snakemake train_real_naming`: a labeler fine-tuned per fold on the real scans' named
# levels, and the cross-validated naming of every real scan
# (spinecensus.train.real_labeler, spinecensus.train.real_naming)
_TRL = _TR.get("labeler", {}) or {}


def _real_labeler_config(threads):
    shared = {k: _TR[k] for k in ("root", "val_fraction", "seed", "device") if k in _TR}
    return {**shared, **_TRL, "threads": threads}


def _real_labeler_windows(wildcards):
    """Synthetic windows mixed into the fine-tuning: train_real.labeler.crops (a
    `spinecensus.train.crops.make_crops` file), else ground-truth windows made by the workflow.
    """
    return _TRL.get("crops") or f"{TRAIN_REAL_DIR}/naming/windows.npz"


def _naming_segmentation(wildcards):
    """Per-fold segmentation weights that the naming evaluation splits: given, or those of
    `snakemake train_real_cv`."""
    given = _TRL.get("segmentation_folds")
    if given:
        return [str(p) for p in given]
    return expand(f"{TRAIN_REAL_DIR}/cv/fold{{fold}}.pt", fold=_real_folds())


def _shipped_labeler():
    from spinecensus.segment.weights import DEFAULT_LABELING_WEIGHTS

    return str(DEFAULT_LABELING_WEIGHTS)
