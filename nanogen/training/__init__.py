"""Training: the loop every model shares, its checkpoints and its log.

``train(model, loader, steps=..., out_dir=..., config=...)`` runs a
:class:`~nanogen.models.GenerativeModel` for a number of steps, writing a run directory
(``config.json``, ``checkpoint.npz``, ``log.jsonl``, ``loss.png``, ``samples.png``) that
``resume=True`` continues exactly where it stopped.  ``load_checkpoint(DIR)`` reads the
checkpoint back for ``nanogen sample`` and ``nanogen eval``; every problem with it is a
one-line :class:`CheckpointError`.
"""
from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from .log import TrainingLog
from .loop import RunFiles, TrainResult, train

__all__ = ["train", "TrainResult", "RunFiles", "save_checkpoint", "load_checkpoint",
           "CheckpointError", "CHECKPOINT_NAME", "TrainingLog"]
