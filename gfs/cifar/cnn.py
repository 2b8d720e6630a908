"""The paper's small CNN for CIFAR-10 (both notebooks), its training, its frozen features, and several trainings
or evaluations at once in worker processes. Its hidden layer is symmetry.GroupAction."""
import functools
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from gfs.runs import processes
from gfs.runs.command_line import progress_bar, resolve_device
from gfs.cifar.symmetry import FIT_NOISE, GroupAction

# ----------------------------------------------------------------------------------------------
# Model: the paper's small CNN with a group-action hidden layer

class Shift(nn.Module):
    """x - shift: images in [0, 1] become the paper's x/255 - 0.5 with shift = 0.5."""

    def __init__(self, shift):
        super().__init__()
        self.shift = float(shift)

    def forward(self, x):
        return x - self.shift if self.shift else x

    def extra_repr(self):
        return f"shift={self.shift:g}"


class ChannelsLast(nn.Module):
    """Same values, channels-last memory layout (much faster max-pooling on CPUs)."""

    def forward(self, x):
        return x.contiguous(memory_format=torch.channels_last)


class CifarCNN(nn.Module):
    """The paper's CNN: [x - shift] -> Conv2d(3, 32, 3, same) -> LeakyReLU(0.01) -> MaxPool2d(2) -> Flatten
    -> Linear(8192, h) -> GroupAction(h) -> Linear(h, classes) -> [Softmax]; built by make_cnn (its arguments).
    Parts: `features` (x float [B, 3, 32, 32] in [0, 1] -> the pre-activations H [B, h]), `group_action`, `readout`
    (the paper's U). forward(x): [B, classes] in mode 'plain', [num_g * B, classes] (member-major) in an ensemble
    mode; probabilities if softmax_output else logits."""

    def __init__(self, activation, hidden, num_classes, input_shift, softmax_output, num_g, group_scale, group_seed,
                 fit_noise, numerics):
        super().__init__()
        self.softmax_output = bool(softmax_output)
        # Speed, not semantics: the conv block runs in channels-last memory layout, and the pool comes before the
        # LeakyReLU. An increasing function commutes with a max, so LeakyReLU(MaxPool(x)) = MaxPool(LeakyReLU(x))
        # exactly (values and gradients), on 4x fewer entries. Together about 3x faster training on a CPU; Flatten
        # keeps C, H, W order.
        self.features = nn.Sequential(Shift(input_shift), ChannelsLast(), nn.Conv2d(3, 32, 3, padding="same"),
                                      nn.MaxPool2d(2), nn.LeakyReLU(0.01), nn.Flatten(),
                                      nn.Linear(32 * 16 * 16, hidden))
        self.group_action = GroupAction(hidden, activation, num_g, group_scale, group_seed, fit_noise, numerics)
        self.readout = nn.Linear(hidden, num_classes)

    def head(self, activations):
        """Readout (and softmax if the model has it) of hidden activations [..., h] -> [..., classes],
        in the activations' dtype (float64 for the members of the 'exact' numerics)."""
        weight, bias = self.readout.weight, self.readout.bias
        out = F.linear(activations, weight.to(activations.dtype), bias.to(activations.dtype))
        return out.softmax(dim=-1) if self.softmax_output else out

    def forward(self, x):
        return self.head(self.group_action(self.features(x)))

    def members(self, x, mode, generator=None):
        """Outputs of every ensemble member.  x: [B, 3, 32, 32] -> [num_g, B, classes]."""
        return self.head(self.group_action.members(self.features(x), mode, generator))


def make_cnn(activation="relu_sqr", hidden=16, num_classes=10, input_shift=0.5, softmax_output=True,
             num_g=1, group_scale=1.0, seed=0, fit_noise=FIT_NOISE["paper"], numerics="paper"):
    """The paper's CNN (CifarCNN) with its weights initialised from `seed` (PyTorch's default init). activation,
    num_g, group_scale, fit_noise, numerics: the GroupAction layer's, its first group drawn from `seed` too;
    input_shift: Shift's; softmax_output: True is the paper's model (a double softmax under cross-entropy, B1)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CifarCNN(activation, hidden, num_classes, input_shift, softmax_output,
                        num_g, group_scale, seed, fit_noise, numerics)


# ----------------------------------------------------------------------------------------------
# Training

ADAM_LR = 1e-3  # Adam's default learning rate, which the paper's notebooks train with

def train_model(model, images, labels, epochs=10, batch_size=32, lr=ADAM_LR, seed=0, shuffle=False,
                device=None, progress=True):
    """Adam on F.cross_entropy(model(x), y), in place, in mode 'plain'; the paper's trainer. Returns {'loss': per-epoch
    mean training loss, 'acc': per-epoch training accuracy}. images: float [N, 3, 32, 32] in [0, 1]; labels: int64 [N].
    The paper walks the images in fixed order (shuffle=False); shuffle=True reshuffles every epoch from `seed`. On the
    CPU, denormal floats are flushed to zero while training: they make early steps ~10x slower, and flushing them
    changes nothing visible."""
    device = resolve_device(device)
    model.to(device).train().group_action.set_mode("plain")
    images, labels = images.to(device), labels.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = {"loss": [], "acc": []}
    n, flush = len(images), device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator).to(device) if shuffle else None
            bar = progress_bar((n + batch_size - 1) // batch_size, f"epoch {epoch + 1}/{epochs}", disable=not progress)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            for start in range(0, n, batch_size):
                index = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
                x, y = images[index], labels[index]
                out = model(x)
                loss = F.cross_entropy(out, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * len(y)
                correct += (out.detach().argmax(dim=1) == y).sum()
                bar.update(1)
            history["loss"].append(float(loss_sum) / n)
            history["acc"].append(float(correct) / n)
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", acc=f"{history['acc'][-1]:.3f}")
            bar.close()
    finally:
        if flush:
            torch.set_flush_denormal(False)
    model.eval()
    return history


def _train_and_return(model, **train_kwargs):
    """train_model in a worker process; returns (trained state_dict, history)."""
    history = train_model(model, progress=False, **train_kwargs)
    return model.state_dict(), history


def train_models(models, datasets, seeds, jobs=1, bar=None, **train_kwargs):
    """train_model(model, images, labels, seed=seed, **train_kwargs) for each of models, datasets [(images, labels)]
    and seeds, up to `jobs` at once (run_calls); in place. bar: advanced by one per trained model. Returns the
    histories, in the order of `models`."""
    job_kwargs = [dict(train_kwargs, model=model, images=images, labels=labels, seed=seed)
                  for model, (images, labels), seed in zip(models, datasets, seeds)]
    if worker_count(jobs, len(models)) <= 1:  # in this process, with train_model's own progress bars
        return processes.parallel_map(train_model, job_kwargs, jobs=1, bar=bar)
    results = run_calls([functools.partial(_train_and_return, **kwargs) for kwargs in job_kwargs], jobs, bar)
    for model, (state, _) in zip(models, results):
        model.load_state_dict(state)
        model.eval()
    return [history for _, history in results]


@torch.no_grad()
def compute_features(model, images, batch_size=2000, device=None):
    """The frozen pre-activations H = model.features(x).  images [N, 3, 32, 32] -> [N, h] on `device`."""
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(device).eval()
    return torch.cat([model.features(images[i:i + batch_size].to(device))
                      for i in range(0, len(images), batch_size)])


# ----------------------------------------------------------------------------------------------
# Processes: one per core, each with one torch thread, train faster than one process with several threads
# (processes.parallel_map says why), and do not collapse when another program uses a core.

def worker_count(jobs, tasks):
    """How many worker processes run_calls uses: jobs (0 = one per CPU core), at most one per task; 1: this one."""
    jobs = int(jobs) if jobs else (os.cpu_count() or 1)
    return max(1, min(jobs, tasks))


def _call(call):
    return call()


def run_calls(calls, jobs=1, bar=None):
    """[call() for call in calls], in up to `jobs` spawned worker processes (safe after torch has started threads, as
    in a notebook kernel); with one worker, in this process, which keeps its freed memory too (keep_freed_memory).
    calls: picklable callables without arguments (functools.partial of a module-level function). bar: advanced by
    one per finished call."""
    calls = list(calls)
    processes.keep_freed_memory()
    return processes.parallel_map(_call, [{"call": call} for call in calls], worker_count(jobs, len(calls)),
                                      bar, start_method="spawn")
