"""Which module of the script is the model, and what it trains on: mixed into `probe.Probe`.

Global module forward hooks (until the model is known: they cost every module call a Python call) see every
outermost module the script calls; the model is the one the stepping optimizer holds, its line and input those of
its training calls. A hook on the model alone then counts the images each step trains on."""

from __future__ import annotations

import contextlib
from typing import Any

from benchbench.runner.attach.frames import _first_tensor, call_site, images_in


def _param_count(module: Any) -> int:
    """Parameters of a module, those a lazy module has not made yet counted as none."""
    from torch.nn.parameter import UninitializedParameter

    return sum(p.numel() for p in module.parameters() if not isinstance(p, UninitializedParameter))


def unwrap(model: Any) -> Any:
    """The module a DistributedDataParallel or DataParallel wraps (their `.module`); any other model itself."""
    return model.module if type(model).__name__ in ("DistributedDataParallel", "DataParallel") else model


def _facts(model: Any, optimizer: Any) -> dict[str, Any]:
    """What the model and the stepping optimizer say of themselves — classes, encoder, decoder width, learning
    rate — each only where it can be read (a reader that fails leaves it out: never a default)."""
    from benchbench.workload import anatomy

    out: dict[str, Any] = {}
    for key, read in (("classes", anatomy.output_classes), ("encoder", anatomy.encoder_name),
                      ("decoder_channels", anatomy.decoder_width)):
        with contextlib.suppress(Exception):
            v = read(model)
            if v is not None:
                out[key] = v
    with contextlib.suppress(Exception):  # the configured rate (a scheduler keeps it as initial_lr), group 0's
        group = optimizer.param_groups[0]
        lr = group.get("initial_lr", group["lr"])
        lr = float(lr.item() if hasattr(lr, "item") else lr)  # a tensor lr is a capturable optimizer's
        if lr > 0:
            out["lr"] = lr
            rates = {float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups}
            if len(rates) > 1:
                out["lr_groups"] = sorted(rates)
    return out


class ModelFinder:
    """The model's state lives on the probe (`forward_outer`, `model`, `model_info`, `lines`, ...)."""

    def model_forwards(self) -> int:
        """Forward calls of the model: once found (`find_model`), its own; before, those of the outermost module
        with the most parameters (a loss module or a torchvision transform is an outermost module too)."""
        known = self.forward_outer.get(id(self.model)) if self.model is not None else None
        if known is not None:
            return known[1]
        return max(self.forward_outer.values(), key=lambda v: v[2])[1] if self.forward_outer else 0

    def on_forward_pre(self, module: Any, args: Any) -> None:
        self.depth += 1
        if self.depth != 1:
            return
        try:  # a hook never breaks the script (a lazy module's parameters have no size before its first call)
            entry = self.forward_outer.get(id(module))
            if entry is None:
                entry = self.forward_outer[id(module)] = [module, 0, _param_count(module), None, call_site()]
            entry[1] += 1
            if self.phase != "starting":
                return
            import torch

            if not (module.training and torch.is_grad_enabled()):
                return  # a validation pass or a frozen teacher: not the training call
            # the last training call before the first step: its line and its batch
            entry[4] = call_site() or entry[4]
            t = _first_tensor(args)
            if t is not None and t.ndim in (4, 5):  # 2-D images, or volumes (B, C, D, H, W)
                entry[3] = (list(t.shape), bool(t.is_contiguous(memory_format=torch.channels_last)
                                                and not t.is_contiguous()))
        except Exception:
            pass

    def on_forward_post(self, module: Any, args: Any, output: Any) -> None:
        self.depth = max(0, self.depth - 1)

    def find_model(self) -> None:
        """The model: the module whose parameters the stepping optimizer holds — the outermost one called that
        holds the most of them (a frozen teacher, a loss module or a transform holds none; in a GAN the
        discriminator is not the generator). Without an optimizer's parameters to go by: the outermost module
        with the most parameters."""
        for v in self.forward_outer.values():  # counted again: a lazy module has its parameters by now
            v[2] = _param_count(v[0])
        cands = [v for v in self.forward_outer.values() if v[2] > 0]
        if not cands:
            return
        held = self._optimizer_params()
        if held:
            counted = [(v, sum(1 for p in v[0].parameters() if id(p) in held)) for v in cands]
            if any(c for _, c in counted):
                cands = [max(counted, key=lambda vc: (vc[1], vc[0][2]))[0]]
        module, calls, n, x, where = max(cands, key=lambda v: v[2])
        self.model = module
        if where:
            self.lines["model_forward"] = where
        base = unwrap(module)  # DDP's own module: what was built is the model, DDP is how it trains
        inner = getattr(base, "_orig_mod", None)
        # `torch.compile(model)` wraps it (`_orig_mod`); `model.compile()` compiles it in place
        # (`_compiled_call_impl`): either way, hooks added to its modules would recompile it
        compiled = inner is not None or getattr(base, "_compiled_call_impl", None) is not None
        info: dict[str, Any] = {"class": type(inner or base).__name__, "params": int(n), "compiled": compiled,
                                "forward_calls_seen": calls, "wrapped_in": type(module).__name__ if base is not
                                module else None}
        if compiled and inner is None:
            info["compiled_in_place"] = True
        with contextlib.suppress(StopIteration):
            dev = next(module.parameters()).device
            self.device = dev
            self.cuda = dev.type == "cuda"
            info["device"] = dev.type
        if x is not None:
            info["input_shape"], info["channels_last"] = x
        info.update(_facts(inner or base, self.optimizer))
        self.model_info = info
        for h in self.global_handles:
            h.remove()
        self.global_handles.clear()
        if not info.get("compiled_in_place"):  # a hook on an in-place compiled module would recompile it
            with contextlib.suppress(Exception):  # kept to the end: it counts the images of every training call
                module.register_forward_pre_hook(self.on_model_input, with_kwargs=True)

    def _optimizer_params(self) -> set[int]:
        with contextlib.suppress(Exception):
            return {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        return set()

    def on_model_input(self, module: Any, args: Any, kwargs: Any) -> None:
        """The model's training calls: the images a step trained on are what the model was given, whatever
        loader (a validation loader used first, none at all) or collate the script has."""
        import torch

        if module.training and torch.is_grad_enabled():
            n = images_in(args, kwargs)
            if n:
                self.images_in_step += n
                if self.model_batch is None:
                    self.model_batch = n
