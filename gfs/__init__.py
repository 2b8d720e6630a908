"""gfs: the library behind the figure scripts and notebooks (named after the paper's repository,
Gradient-Flow-Symmetry). models.py, at the top level, holds the two-layer networks and their
conserved quantities; this package holds everything else:

  training.py, per_neuron.py   gradient-descent training of the two-layer networks, the Hessian,
                               per-neuron conserved quantities (Figs. 3-9)
  paper_numbers.py             the paper's stated settings and the paper code's numbers
  runs/                        the figure scripts' command line and driver, saved files, processes
  cifar/                       CIFAR-10 (Figs. 10-11): data, the CNN, the group action, ensembles
                               and agreement, attacks and the robustness suite, plots, notebook helpers
  report/                      REPORT.md's claims, rules and tables (reads saved files only)

Layers (no import runs back up): runs <- training, per_neuron <- cifar; report imports neither
torch nor cifar.
"""
