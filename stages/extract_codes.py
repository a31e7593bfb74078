"""extract_codes: encode every prepared split into VQ-VAE code maps (data/codes/)."""
from facegen.pipeline.stage import stage_main
from facegen.pipeline.extract_codes import extract_codes

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: extract_codes(params))
