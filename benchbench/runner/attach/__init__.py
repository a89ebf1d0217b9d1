"""`benchbench attach -- python train.py ...`: measure a user's unmodified training script.

The script runs in a child process with benchbench's hooks installed before its first line (`boot/`, a
`sitecustomize` on the child's path). The hooks (`hooks.py`) find the steps from torch's own global hooks
(optimizer step hooks, GradScaler's update for skipped steps), the model from global module forward hooks,
the batch from what the script's DataLoader yields, and time the steps as `run` does; a short profiler window
follows the timed steps. The child writes one JSON document; the parent (`launch.py`) turns it into a
standard record (`Record.attached` says what ran), which report, compare and history read like any other.
"""
