"""The trained CNNs of the CIFAR notebooks as safetensors files (tensors and text only: nothing runs when one is read),
one per model (dataset.weights_name; docs/cifar.md, "Published models"): as tensors the CNN's parameters
(CifarCNN.named_parameters, float32) and clean_predictions int8 [N]; as metadata, each JSON-encoded under its own key,
every setting it was trained with (at least ARCHITECTURE), the format and the history.
"""
import json
import os

import numpy as np
import torch

from gfs.cifar.cnn import make_cnn
from gfs.runs.saved_files import write_atomic

FORMAT = "gfs-cifar-cnn/1"
ARCHITECTURE = ("activation", "hidden", "input_shift", "softmax_output", "seed")  # what make_cnn rebuilds it from
PREDICTIONS = "clean_predictions"


class WeightsError(ValueError):
    """A weights file that is missing, unreadable, or of another run than asked for (one line)."""


def _safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise ImportError("saving and loading the trained CNNs needs safetensors: pip install -r requirements.txt") from None
    return safetensors.torch


@torch.no_grad()
def clean_predictions(model, images, device=None, batch_size=1000):
    """The model's class (plain mode, the original network) per image.  images [N, 3, 32, 32] -> int8 numpy [N]."""
    device = device if device is not None else next(model.parameters()).device
    model.to(device).eval()
    model.group_action.set_mode("plain")
    return torch.cat([model(images[i:i + batch_size].to(device)).argmax(dim=-1).cpu()
                      for i in range(0, len(images), batch_size)]).numpy().astype(np.int8)


def save_cnn(model, root, name, settings, history, predictions):
    """Write root/name.safetensors, whole or not at all (module docstring); returns its path. predictions: int8 [N];
    settings: a dict with at least ARCHITECTURE; history: {'loss': [...], 'acc': [...]}."""
    missing = [key for key in ARCHITECTURE if key not in settings]
    if missing:
        raise ValueError(f"the settings of a saved CNN need {', '.join(missing)}")
    path = os.path.join(root, name + ".safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tensors = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in model.named_parameters()}
    tensors[PREDICTIONS] = torch.from_numpy(np.asarray(predictions, dtype=np.int8))
    metadata = {key: json.dumps(value) for key, value in settings.items()}
    metadata.update(format=json.dumps(FORMAT), history=json.dumps(history))
    write_atomic(path, _safetensors().save(tensors, metadata=metadata))
    return path


def load_cnn(root, name, expect=None):
    """The CNN saved as root/name.safetensors: (model in eval mode on the CPU, settings, history, predictions int8 [N]).
    expect: {setting: value} this run needs (e.g. epochs, data_digest); a file trained otherwise is a WeightsError
    naming the first difference, as is a missing, unreadable or incomplete file."""
    path = os.path.join(root, name + ".safetensors")
    if not os.path.isfile(path):
        raise WeightsError(f"no saved CNN {path!r} (WEIGHTS_FROM: a folder holding {os.path.dirname(name)}/ from a run "
                           "of the same settings)")
    safetensors = _safetensors()
    try:
        with safetensors.safe_open(path, "pt") as f:  # one read: the tensors (as load_file gives them) and the metadata
            tensors = {key: f.get_tensor(key) for key in f.keys()}
            metadata = {key: json.loads(value) for key, value in (f.metadata() or {}).items()}
    except Exception as error:  # truncated or foreign file
        raise WeightsError(f"{path}: not a readable safetensors file ({type(error).__name__}: {error})") from None
    if metadata.get("format") != FORMAT or any(key not in metadata for key in ARCHITECTURE):
        raise WeightsError(f"{path}: not a CNN saved by weights.save_cnn (format {metadata.get('format')!r})")
    for key, value in (expect or {}).items():
        if metadata.get(key) != value:
            raise WeightsError(f"{path}: trained with {key} = {metadata.get(key)!r}, this run has {value!r}")
    model = make_cnn(**{key: metadata[key] for key in ARCHITECTURE})
    parameters = dict(model.named_parameters())
    if set(tensors) - {PREDICTIONS} != set(parameters):
        raise WeightsError(f"{path}: holds {sorted(set(tensors) - {PREDICTIONS})}, the CNN has {sorted(parameters)}")
    with torch.no_grad():
        for key, parameter in parameters.items():
            if tensors[key].shape != parameter.shape:
                raise WeightsError(f"{path}: {key} has shape {list(tensors[key].shape)}, expected {list(parameter.shape)}")
            parameter.copy_(tensors[key])
    model.eval()
    settings = {key: value for key, value in metadata.items() if key not in ("format", "history")}
    return model, settings, metadata["history"], tensors[PREDICTIONS].numpy()
