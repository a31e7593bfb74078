"""prepare: (generate the embedded dataset, then) decode, crop and resize faces into uint8 arrays."""
from facegen.pipeline.prepare import prepare_stage
from facegen.pipeline.stage import stage_main

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: prepare_stage(params))
