# The embedded synthetic demo cohort (only when config `samples` is ""): one job writes the
# whole cohort in the `spinecensus synth` layout with its samples.tsv.
# Runs spinecensus.census.synthesize_job.synthesize (`python -m spinecensus.census synth`).


rule synthesize:
    output:
        sheet=f"{RESULTS}/synthetic/samples.tsv",
        images=[IMAGES[s] for s in SUBJECTS] if SYNTHETIC else [],
        semantics=[SEMANTICS[s] for s in SUBJECTS] if SYNTHETIC else [],
    log:
        f"{RESULTS}/logs/synthesize.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthesize.tsv"
    conda:
        CONDA_ENV
    threads: workflow.cores
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        out=lambda wildcards, output: os.path.dirname(output.sheet),
        n=config["synthetic"].get("n", 200),
        seed=config["synthetic"].get("seed", 2023),
        lumbarization=config["synthetic"].get("lumbarization", 0.066),
        sacralization=config["synthetic"].get("sacralization", 0.036),
        preset=config["synthetic"].get("preset", "default"),
        variants=" ".join(
            f"--variant-rate {name}={rate}"
            for name, rate in sorted(
                (config["synthetic"].get("variants") or {}).items()
            )
        ),
    shell:
        "python -m spinecensus.census synth --out {params.out:q} --n {params.n} "
        "--seed {params.seed} --lumbarization {params.lumbarization} "
        "--sacralization {params.sacralization} --preset {params.preset} "
        "{params.variants} --workers {threads} > {log:q} 2>&1"
