"""benchbench attach's bootstrap: on the attached script's path, so Python runs it before the script's first
line. It installs the hooks when the launcher asked for them (BENCHBENCH_ATTACH), then hands over to any
`sitecustomize` the environment had (the next one on the path), so the script's own setup is unchanged."""

import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    rest = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    for p in rest:
        cand = os.path.join(p or ".", "sitecustomize.py")
        if os.path.isfile(cand):
            spec = importlib.util.spec_from_file_location("_bb_next_sitecustomize", cand)
            if spec and spec.loader:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


_cfg = os.environ.get("BENCHBENCH_ATTACH")
_launcher = os.environ.get("BENCHBENCH_ATTACH_RANKS")
if _cfg and _launcher and os.environ.get("SLURM_PROCID" if _launcher == "srun" else "RANK") is None:
    _cfg = None  # torchrun's agent: it trains nothing; the ranks it starts inherit the variable and are attached
if _cfg:
    try:
        from benchbench.runner.attach.install import install

        install(_cfg)
    except Exception as _exc:  # the script still runs; the launcher says nothing was measured, and why
        try:
            with open(_cfg + ".boot-error", "w") as _f:
                _f.write(f"{type(_exc).__name__}: {_exc}")
        except OSError:
            pass
    finally:
        # the script's children are not attached again (a rank's own, too)
        os.environ.pop("BENCHBENCH_ATTACH", None)
_chain()
