"""train_classifier: the attribute classifier that scores edits and embeds images for FID/KID/PRDC."""
from facegen.pipeline.stage import stage_main
from facegen.pipeline.train_classifier import train_classifier

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: train_classifier(params))
