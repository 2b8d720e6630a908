"""CIFAR-10 experiments (Figs. 10-11); each module's docstring says what it holds."""
