"""`nova run`: the same TrainingRun on one machine, with worker processes instead of pods."""
