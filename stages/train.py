"""train@<family>: fit one model family on the prepared data."""
from facegen.pipeline.stage import family_arg, stage_main
from facegen.pipeline.train import train_family

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: train_family(params, args.family), family_arg)
