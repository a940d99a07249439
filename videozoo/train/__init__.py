"""Training and fine-tuning the zoo's models on labelled videos (see docs/training.md).

>>> from videozoo.train import TrainConfig, train            # doctest: +SKIP
>>> result = train(TrainConfig(model="x3d_xs", weights="kinetics400", data="train.txt",
...                            val_data="val.txt", out="runs/x3d", epochs=10, warmup_epochs=1))
>>> result.final["val_acc"], result.model_path                # doctest: +SKIP

The modules, in the order a run uses them: config (TrainConfig), processes (one or several),
model (the clip and architecture overrides), data (clips and batches), setup (model, loaders,
optimiser, schedule), resume (checkpoints and exact resumption), epoch (the steps of one epoch),
validate, schedule (learning rates), report (metrics.csv, plots, progress) and loop (the epochs).
"""

from videozoo.train.config import TrainConfig, add_cli_arguments, config_from_args, load_config
from videozoo.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "add_cli_arguments", "config_from_args", "load_config", "train"]
