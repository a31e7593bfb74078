"""evaluate@<family>: metrics/<family>.json and the figures under reports/<family>/."""
from facegen.pipeline.evaluate import evaluate_family
from facegen.pipeline.stage import family_arg, stage_main

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: evaluate_family(params, args.family), family_arg)
