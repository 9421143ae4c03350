# spinecensus: cohort workflow (segment -> split/label/measure -> tables, QC, report).
#
#   snakemake --profile profiles/default                       # synthetic demo cohort
#   snakemake --profile profiles/default --config samples=PATH/TO/samples.tsv
#   snakemake --profile profiles/default --report results/report.html
#
# DAG: synthesize (demo only) -> segment (one job per batch of subjects, model loaded once)
#      -> analyse (one job per subject) -> aggregate (cohort tables) -> cohort_qc (figures).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/analyse.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/train_real.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.cohort_qc.output,


onsuccess:
    # end-of-run summary: analysed / failed subjects and every per-subject failure
    _summary = cohort.run_summary(f"{RESULTS}/tables")
    if _summary:
        print(_summary)
