"""train_classifier: the attribute classifier that scores edits and embeds images for FID/KID/PRDC."""
from facegen.stage import stage_main
from facegen.training.classifier import train_classifier

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: train_classifier(params))
