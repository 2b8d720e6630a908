"""The numbers of the paper's own code, each written once: what a reproduction is compared with.

  [R] re-running the paper's own scripts with their seeds (CPU, float32): a faithful port must give these
      (tests/science/test_fidelity.py checks the cheap ones, make_report.py shows them all);
  [C] the saved outputs of the paper's notebooks (GPU, unseeded, a new model per cell): qualitative only.

Legend labels are kept as printed ("Q=-1364"): the label text is the reference. Reference numbers exist only for the
paper's four activations; an activation added later has none.
"""
from collections import namedtuple

PAPER_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid")
# Fig. 3 [R] (m, n, h = 5, 10, 50, init std 0.1): Q and its normaliser N_0 at the initialisation.
FIG3_INITIAL_Q_AND_NORMALISER = {"linear": (-1.926, 7.149), "relu": (0.3092, 4.913), "tanh": (-501.96, 507.19),
                                 "sigmoid": (-501.69, 504.30)}
FIG3_LEARNING_RATES = (0.1, 0.01, 0.001)  # the paper's Fig. 3 learning rates, the order of every FIG3_* tuple below
# Fig. 3 [R]: final dQ~ and final |Y - U sigma(V^T)|_F at lr 0.1 / 0.01 / 0.001 (float32).
FIG3_FINAL_DRIFT = {"linear": (6.9e-4, 8.9e-5, 4.4e-4), "relu": (3.6e-4, 1.3e-4, -1.9e-4),
                    "tanh": (1.5e-5, 1.8e-6, 6.1e-6), "sigmoid": (-1.7e-6, 1.8e-7, 6.3e-5)}
FIG3_FINAL_LOSS = {"linear": (3.0e-6, 3.2e-5, 4.3e-4), "relu": (8.7e-6, 9.0e-5, 1.1e-3),
                   "tanh": (3.4e-6, 3.8e-5, 5.0e-4), "sigmoid": (1.7e-5, 2.3e-4, 3.6e-3)}
# Fig. 3 [R]: the largest |dQ~| over the run at lr 0.1 / 0.01 / 0.001 (float32) where the re-run printed it (None: not
# printed; the final |dQ~| above, a lower bound of it, stands in): the round-off the paper's own loop shows.
FIG3_LARGEST_DRIFT = {"relu": (None, None, 5.9e-4), "sigmoid": (6e-6, 2e-6, None)}
# Fig. 3 [R], float64 re-run: final dQ~ at lr 0.1 / 0.01 / 0.001 (linear only).
FIG3_FLOAT64_FINAL_DRIFT = {"linear": (6.9e-4, 7.0e-5, 7.0e-6)}

# Figs. 4-5: the layer sizes (m, h, n) of the paper's histograms: Fig. 4 for every activation, Fig. 5 linear only.
FIG4_SHAPE = (100, 100, 100)
FIG5_SHAPES = ((100, 200, 100), (200, 100, 100))
# Figs. 4-5 [R], keyed by (activation, (m, h, n)): Q over 1000 seeded initialisations; unit: the reference's last digit.
QStats = namedtuple("QStats", ["mean", "std", "min", "max", "unit"])
FIG45_Q_STATS = {
    ("linear", (100, 100, 100)): QStats(0.06, 1.94, -5.06, 6.34, 0.01),
    ("relu", (100, 100, 100)): QStats(50.04, 1.77, 45.2, 55.2, 0.1),
    ("tanh", (100, 100, 100)): QStats(-10000.9, 1.96, -10006.1, -9994.6, 0.1),
    ("sigmoid", (100, 100, 100)): QStats(-10000.2, 20.8, -10063.8, -9929.6, 0.1),
    ("linear", (100, 200, 100)): QStats(-100.1, 2.23, -106.5, -92.4, 0.1),
    ("linear", (200, 100, 100)): QStats(99.9, 2.30, 93.3, 106.8, 0.1),
}

# Fig. 6 [R]: legend labels and steps to reach |Y - U sigma(V^T)|_F < 1e-2, per init std.
FIG6_LEGENDS = {"linear": ["Q=-0.0193", "Q=-1.93", "Q=-193"], "relu": ["Q=0.00309", "Q=0.309", "Q=30.9"],
                "tanh": ["Q=-500", "Q=-502", "Q=-1364"], "sigmoid": ["Q=-500", "Q=-502", "Q=-663"]}
FIG6_STEPS = {"linear": {0.01: 102_050, 0.1: 59_577, 1.0: 3_496}, "relu": {0.01: 223_077, 0.1: 139_574, 1.0: 8_790},
              "tanh": {0.01: 106_451, 0.1: 63_679, 1.0: 7_511}, "sigmoid": {0.01: 481_176, 0.1: 323_606, 1.0: 57_050}}

# Fig. 7 [R], radial net at init scale 0.01 / 0.1 / 1 / 10: legend labels, the plotted loss MSE/|Y|_F at the start
# (the same for all four runs), and the updates to reach it below 1e-2 (None: never in 1e6). The paper's log counts
# entries from 1 (70 and 6,751 for the first two); these are applied updates.
FIG7_LEGENDS = ["Q=0.00206", "Q=0.206", "Q=20.6", "Q=2.06e+03"]
FIG7_INITIAL_LOSS = 0.13495
FIG7_STEPS = (69, 6_750, 674_771, None)
FIG7_STEP_BUDGET = 1_000_000

# Fig. 9 [R] at init std 0.001 / 0.3 / 0.6 / 0.9: legend labels and the largest Hessian eigenvalue.
FIG9_LEGENDS = {"linear": ["Q=1.93e-04", "Q=17.3", "Q=69.3", "Q=156"],
                "relu": ["Q=3.25e-04", "Q=29.2", "Q=117", "Q=263"],
                "tanh": ["Q=-250", "Q=-235", "Q=-226", "Q=-418"],
                "sigmoid": ["Q=-250", "Q=-243", "Q=-222", "Q=-200"]}
FIG9_LARGEST_EIGENVALUE = {"linear": (17.7, 30.0, 107.5, 239.5), "relu": (17.2, 22.3, 66.4, 146.7),
                           "tanh": (16.0, 25.1, 69.7, 117.8), "sigmoid": (127.1, 127.7, 129.7, 133.6)}
FIG9_NOTE = ("In the paper's code [R] the sharpness grows with |Q| for linear and ReLU; for tanh its Q is not "
             "monotone in the init scale (the largest scale has the most negative Q) while the sharpness grows with "
             "the scale; for sigmoid all large eigenvalues lie within a few percent of each other and the sharpness "
             "grows slightly as its Q rises towards 0, i.e. it falls with |Q|. Both orders of |Q| are those of the "
             "paper code's convention; with Q from 0 they differ (below).")


def legend_Q(label):
    """'Q=-1364' -> -1364.0"""
    return float(label.removeprefix("Q="))


# Fig. 10 [C]: heat-map rows (vote accuracy - original), num_g = 10 ... 120, keyed by eps.
FIG10_ROWS = {
    "group": {20: (-.372, -.318, -.43, -.413, -.413, -.38, -.46), 10: (-.352, -.366, -.285, -.233, -.325, -.247, -.201),
              1: (-.295, -.246, -.219, -.188, -.159, -.129, -.221), 0.1: (-.017, .005, -.007, 0, 0, .001, .003)},
    "perm_interp": {20: (-.344, -.245, -.104, -.068, -.042, -.214, -.075),
                    10: (-.297, -.224, -.277, -.21, -.171, -.186, -.144),
                    1: (-.148, -.042, -.065, -.127, -.165, -.051, -.179)},
}
FIG10_NOTE = ("Paper's code [C] (saved notebook outputs; a new model per cell, original accuracy 0.442-0.594): for "
              "eps <= 0.01 every method except shuffle is within 0.003 of the original; at eps = 0.1 group, g^-1 "
              "and perm_interp stay within 0.017, random loses up to 0.089; at eps >= 1 g^-1 loses 0.376-0.511, "
              "random 0.37-0.533, shuffle 0.29-0.544 (at every eps); group beats g^-1, random and shuffle at eps = 1 "
              "and 10 but is worse than perm_interp; at eps = 20 group is about equal to random and shuffle.")

# Fig. 11 [C]: printed accuracies (mean softmax) under the paper's protocol on 1000 images, at the attack strengths
# below (FGSM: epsilon; PGD: iterations).
FIG11_STRENGTHS = {"FGSM": (0.0, 0.003, 0.006, 0.009, 0.012), "PGD": (0, 1, 2, 3)}  # the paper protocol's strengths
FIG11_PGD = {"radius": 0.3, "step": 0.01}  # the paper's PGD: advertorch's defaults (random start)
FIG11_IMAGES = 1000
FIG11_ACCURACY = {"FGSM": {"original": (.598, .210, .133, .066, .028), "group": (.538, .223, .158, .109, .083),
                           "g_inverse": (.089, .115, .101, .106, .100), "perm_interp": (.556, .225, .132, .078, .036)},
                  "PGD": {"original": (.576, .006, .000, .000), "group": (.460, .038, .002, .026),
                          "g_inverse": (.111, .095, .110, .090), "perm_interp": (.557, .013, .000, .000)}}
