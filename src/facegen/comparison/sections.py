"""The questions the report answers, in order; which metrics each shows comes from the specs.

A section's rows are the metrics whose ``section:`` in ``metrics_tolerances.yaml`` names it, in that
file's order: adding a metric to a question is one spec entry, never a list typed here.
"""
from __future__ import annotations

from dataclasses import dataclass

from facegen.comparison.specs import SECTION_KEYS, MetricSpecs


@dataclass(frozen=True)
class Section:
    """One question the report answers: its key in the specs, its prose and its figure."""

    key: str
    title: str
    question: str
    figure: str | None = None      # key of the report's comparison figures
    reference: str = ""            # what every number is measured against
    names_rate: bool = False       # its sentences say how many bits the leaders' latents carry

    def metrics(self, specs: MetricSpecs) -> list[str]:
        """The metric names the specs put in this section, in the specs' order (patterns excluded)."""
        return [name for name, spec in specs.entries.items() if spec.section == self.key and "*" not in name]


SECTIONS = (
    Section("reconstruction", "Reconstruction", "How faithfully does each family reproduce a test face it has never seen?",
            "reconstructions",
            "The data itself scores PSNR ∞ and SSIM 1; the DCGAN has no encoder, so its row is latent optimisation.",
            names_rate=True),
    Section("realism", "Sample realism", "How realistic are its samples, and do they cover the variety of real faces?",
            "samples", "The column 'real vs real' scores training faces against the same test faces at the same "
            "sample counts: the best any model can do."),
    Section("likelihood", "Likelihood", "How much probability does it give test faces (lower bits/dim is better)?", None,
            "A uniform model over the 256 levels scores 8.0 bits/dim. GANs define no likelihood."),
    Section("editing", "Attribute editing",
            "Can an attribute be changed by moving in the latent space without changing the others?", "edit_curves",
            "Success is read off each family's strength sweep where 90% of the other attributes are still kept; "
            "'chance' is the same for random face-to-face directions. The judge (the attribute classifier) is "
            "scored on test faces and on each family's reconstructions of them: a judge that cannot read a "
            "family's decodes cannot score its edits.", names_rate=True),
    Section("disentanglement", "Disentanglement",
            "Does each latent dimension capture one ground-truth factor (synthetic data only)?"),
    Section("cost", "Cost", "What does each family cost?", None,
            "Training and sampling times depend on the machine: they are logged to MLflow and measured in benchmarks/."),
)
