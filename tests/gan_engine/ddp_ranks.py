"""``torchrun ... -m tests.gan_engine.ddp_ranks SPEC.json OUT.json``: train SPEC's Trainer (no
evaluator, so no classifier to train) on every rank; rank 0 writes the logged steps to OUT."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gan_engine import distributed
from gan_engine.spec import parse_spec
from gan_engine.trainer import Trainer, pick_device
from tests.gan_engine.conftest import Recorder, dataset_for


def main(spec_path: Path, out: Path) -> None:
    spec = parse_spec(json.loads(spec_path.read_text()))
    with distributed.process_group(pick_device(spec.training.device)) as world:
        recorder = Recorder()
        Trainer(spec, dataset_for(spec), callbacks=[recorder]).fit()
        if world.is_main:
            out.write_text(json.dumps(recorder.steps))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
