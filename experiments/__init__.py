"""One module per experiment; each defines `EXPERIMENT` (a harness.experiment.Experiment)."""
