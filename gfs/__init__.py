"""gfs: the library behind the figure scripts and notebooks (named after the paper's repository,
Gradient-Flow-Symmetry); models.py, at the top level, holds the two-layer networks and their conserved
quantities. training.py and per_neuron.py train them and compute per-neuron quantities (Figs. 3-9);
paper_numbers.py holds the paper's settings and its code's numbers; runs/ runs the figure scripts (command
line and driver, saved files, processes); cifar/ is Figs. 10-11; report/ writes REPORT.md from saved files.

Layers (no import runs back up): runs <- training, per_neuron <- cifar; report imports neither
torch nor cifar.
"""
