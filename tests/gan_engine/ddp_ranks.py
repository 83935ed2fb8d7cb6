"""``torchrun ... -m tests.gan_engine.ddp_ranks SPEC.json OUT.json [NAN_STEP]``: train SPEC's
Trainer (no evaluator, so no classifier to train) on every rank; rank 0 writes the logged steps
to OUT, and every rank what it holds (ADA's p, LeCam's anchors, sums of G's and D's parameters) to
OUT.rankR.json. NAN_STEP: rank 1 alone gets a NaN generator loss from that step on, and rank 0
writes the step at which it saw the run diverge."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

from gan_engine import distributed
from gan_engine.spec import parse_spec
from gan_engine.trainer import Trainer, TrainingDiverged, pick_device
from tests.gan_engine.conftest import Recorder, dataset_for


def main(spec_path: Path, out: Path, nan_step: int | None) -> None:
    spec = parse_spec(json.loads(spec_path.read_text()))
    with distributed.process_group(pick_device(spec.training.device)) as world:
        recorder = Recorder()
        trainer = Trainer(spec, dataset_for(spec), callbacks=[recorder])
        if nan_step is not None and world.rank == 1:
            honest = trainer.loss

            def nan_from(fake: torch.Tensor) -> torch.Tensor:
                return honest.generator(fake) * (math.nan if trainer.step + 1 >= nan_step else 1)

            trainer.loss = dataclasses.replace(honest, generator=nan_from)
        try:
            trainer.fit()
        except TrainingDiverged as error:
            if world.is_main:
                out.write_text(json.dumps({"diverged_at": error.step}))
            return
        if world.is_main:
            out.write_text(json.dumps(recorder.steps))
        adapted = {  # what each rank holds after training: it must agree across ranks
            "ada_p": [float(v) for v in trainer.augment.metrics().values()],
            "lecam": [] if trainer.lecam is None else trainer.lecam.anchors.tolist(),
            "weights": [  # parameters: BatchNorm's running statistics are each rank's own
                sum(float(parameter.double().sum()) for parameter in net.parameters())
                for net in (trainer.G, trainer.D)
            ],
        }
        out.with_suffix(f".rank{world.rank}.json").write_text(json.dumps(adapted))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
