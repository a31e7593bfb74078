"""reference: real-vs-real floors (metrics/reference.json) and cached Inception features of the test faces."""
from facegen.pipeline.reference import reference
from facegen.pipeline.stage import stage_main

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: reference(params))
