# spinecensus: cohort workflow (segment -> split/label/measure -> tables, QC, report).
#
#   snakemake --cores 2                                  # synthetic demo cohort
#   snakemake --cores 2 --config samples=PATH/TO/samples.tsv
#   snakemake --cores 2 --report results/report.html
#   snakemake --profile slurm                            # a SLURM cluster (make slurm-profile)
# (profiles/default, the workflow profile, is loaded by Snakemake itself.)
#
# DAG: synthesize (demo only) -> segment (one job per batch of subjects, model loaded once)
#      -> analyse_<batch> (one process per batch, per-subject outputs) -> aggregate (cohort
#      tables) -> cohort_qc (figures),
#      review_page (results/review/index.html: the flagged subjects, overrides to download).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/analyse.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/review.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/train_real.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.cohort_qc.output,
        rules.failure_guard.output,
        rules.review_page.output,


onsuccess:
    # end-of-run summary: analysed / failed subjects, failures by rule, commonest errors
    _summary = run_summary(f"{RESULTS}/tables")
    if _summary:
        print(_summary)


onerror:
    # the same summary when tables exist (e.g. the failure guard stopped the run), and the
    # guard's own line
    _summary = run_summary(
        f"{RESULTS}/tables", guard_log=f"{RESULTS}/logs/failure_guard.log"
    )
    if _summary:
        print(_summary)
