"""The notebooks and file names of the CIFAR-10 figures, written once: the notebooks save under them, the report
and the tests read them. A name is relative to the output folder, without extension (save_figure
adds .npz, .json, .pdf and .png). The paper's names are kept for Figs. 10 and 11.
"""
NOTEBOOKS = {"Fig. 10": "ensemble_CIFAR.ipynb", "Fig. 11": "adversarial_CIFAR.ipynb"}  # the notebook of each figure
NUMERICS_SUFFIX = {"paper": "", "exact": "_exact"}  # the group action's numerics (symmetry.NUMERICS)
FIT_SIZE = "ensemble/fit_size_generalisation"       # Fig. 10's fit-size experiment (beyond the paper)


def fig10(numerics):
    """Fig. 10's heat maps in one numerics."""
    return "ensemble/cnn_cifar_leakyrelu2_main_acc" + NUMERICS_SUFFIX[numerics]


def fig11(kind, hidden, num_g, group_scale, numerics="paper"):
    """Fig. 11: kind FGSM or PGD (the paper's protocol), corrected (the threat models) or robustness (the
    standard evaluation). A quick run's settings show in its names (g5 for g200); a str passes through,
    so "*" makes the pattern the report globs."""
    scale = group_scale if isinstance(group_scale, str) else f"{group_scale:g}"
    return f"ensemble/cnn_cifar_leakyrelu_{kind}_h{hidden}_g{num_g}_eps{scale}" + NUMERICS_SUFFIX[numerics]
