"""CIFAR-10 experiments (Figs. 10-11): data (dataset.py), the CNN and its training (cnn.py), the group
action on its hidden layer (symmetry.py), ensembles of moved networks and their agreement
(ensembles.py), attacks (attacks.py), the paper's adversarial protocol (paper_protocol.py), the
standard robustness suite (robustness.py), plots (plots.py) and the notebooks' parameters
(notebook_parameters.py)."""
