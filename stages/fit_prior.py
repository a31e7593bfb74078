"""fit_prior: train the PixelCNN prior over the VQ-VAE code maps (models/pixelcnn/)."""
from facegen.pipeline.stage import stage_main
from facegen.pipeline.fit_prior import fit_prior

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: fit_prior(params))
