"""Ultralytics YOLO segmentation trained from Python, validation on, a checkpoint every epoch — with the user's
own clocks: a trainer subclass (passed as `trainer=`, as Ultralytics' docs show) that times its validation and
its checkpoint writes and prints them once an epoch (`epoch 3 val 0.412 save 0.118`). Offline: a model YAML (no
weights), no AMP check, no plots."""

import argparse
import time

import epoch_clock  # the user's own timer log, beside the script
from ultralytics import YOLO
from ultralytics.models.yolo.segment import SegmentationTrainer


class TimedTrainer(SegmentationTrainer):
    val_s = save_s = 0.0

    def validate(self):
        t0 = time.perf_counter()
        try:
            return super().validate()
        finally:
            self.val_s = time.perf_counter() - t0

    def save_model(self):
        t0 = time.perf_counter()
        try:
            return super().save_model()
        finally:
            self.save_s = time.perf_counter() - t0
            epoch_clock.say(f"epoch {self.epoch} val {self.val_s:.4f} save {self.save_s:.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--project", required=True)
    ap.add_argument("--log", default=None, help="also append the epoch timers to this file")
    args = ap.parse_args()
    epoch_clock.LOG = args.log
    YOLO("yolo11n-seg.yaml").train(trainer=TimedTrainer, data=args.data, epochs=args.epochs, imgsz=64, batch=4,
                                   nbs=4, workers=0, device="cpu", pretrained=False, amp=False, plots=False,
                                   val=True, project=args.project, name="t", exist_ok=True, verbose=False)


if __name__ == "__main__":
    main()
