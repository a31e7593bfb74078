"""Deciding between families from the recorded runs: metric specs, noise, the paired decision rule,
the gate's band, the known strengths and the report's page model. Nothing here touches a model."""
