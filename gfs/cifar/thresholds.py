"""The CIFAR experiments' two thresholds, torch-free: what the notebooks mark in their figures and the report's
rules judge by (the report imports them without torch; docs/cifar.md and docs/report.md give their reasons)."""

# A (num_g, group scale) cell whose symmetry error (the largest relative gap between a moved network's logits and
# the original's, on the images its pi was fitted on) exceeds this is "not a symmetry".
SYMMETRY_TOLERANCE = 1e-3
# "Same predictions on unseen images": every member predicts the original's class on at least this fraction.
AGREEMENT_THRESHOLD = 0.99
