"""prepare: (generate the embedded dataset, then) decode, crop and resize faces into uint8 arrays."""
import logging

from facegen import paths
from facegen.data.prepare import prepare
from facegen.stage import stage_main


def run(params, args) -> None:  # noqa: ANN001 - signature fixed by stage_main
    summary = prepare(params.data, params.seed, paths.PREPARED)
    logging.getLogger("prepare").info("prepared %s", summary)


if __name__ == "__main__":
    stage_main(__doc__, run)
