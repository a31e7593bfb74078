"""report: reports/index.html + report.md comparing every evaluated family, and metrics/summary.json."""
from facegen.pipeline.report import report_stage
from facegen.pipeline.stage import stage_main

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: report_stage(params))
