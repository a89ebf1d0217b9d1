"""Readable kernel names: CUPTI reports full C++ template instantiations (often 2,000 characters)."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import lru_cache

MAX_NAME = 80
_HINT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:_kernel_cuda|Functor[A-Za-z0-9_]*|_kernel|_cuda))\b")
# Wrappers that say nothing about what the kernel computes.
_GENERIC = {"gpu_kernel_impl", "gpu_kernel_impl_nocast", "AUnaryFunctor", "BUnaryFunctor", "BinaryFunctor",
            "UnaryFunctor", "launch_kernel"}


def _strip_brackets(text: str, open_: str, close: str) -> tuple[str, str]:
    """Text with every top-level `open_ ... close` group removed, and the first group's contents."""
    out, depth, first, cur = [], 0, None, []
    for ch in text:
        if ch == open_:
            depth += 1
            if depth == 1:
                out.append(open_ + "…" + close) if open_ == "<" else None
                continue
        elif ch == close and depth:
            depth -= 1
            if depth == 0:
                if first is None:
                    first = "".join(cur)
                cur = []
                continue
        if depth:
            cur.append(ch)
        else:
            out.append(ch)
    return "".join(out), first or ""


@lru_cache(maxsize=1)
def _cxxfilt() -> str | None:
    return shutil.which("c++filt")


def demangle(name: str) -> str:
    """Itanium-mangled names (`_Z...`) through c++filt when the machine has it."""
    if not name.startswith("_Z") or not _cxxfilt():
        return name
    try:
        out = subprocess.run([_cxxfilt() or "c++filt", name], capture_output=True, text=True, timeout=5,
                             check=False)
        return out.stdout.strip() or name
    except (OSError, subprocess.SubprocessError):
        return name


@lru_cache(maxsize=4096)
def short_name(name: str, limit: int = MAX_NAME) -> str:
    """`void at::native::vectorized_elementwise_kernel<8, at::native::bfloat16_copy_kernel_cuda(...)...>(...)`
    -> `vectorized_elementwise_kernel<…> [bfloat16_copy_kernel_cuda]`.

    Return type, argument list and template arguments go; namespaces go; the
    first functor-like name inside the template arguments stays as a hint,
    because it is what tells one elementwise kernel from another.
    """
    text = demangle(name.strip())
    if text.startswith("void "):
        text = text[5:]
    no_tmpl, tmpl = _strip_brackets(text, "<", ">")
    base, _args = _strip_brackets(no_tmpl, "(", ")")
    base = base.replace("()", "").strip()
    # drop namespaces and the return type left before the name
    base = base.split(" ")[-1] if " " in base else base
    parts = [p for p in base.split("::") if p]
    if parts and parts[-1] in ("operator", "<…>") and len(parts) > 1:
        parts = parts[-2:]
    base = parts[-1] if parts else base
    if tmpl:
        hints = [h for h in _HINT.findall(tmpl) if h not in base and h not in _GENERIC]
        if hints:
            base = f"{base} [{hints[0]}]"
    base = base or name[:limit]
    return base if len(base) <= limit else base[: limit - 1] + "…"


def short_op(name: str, limit: int = MAX_NAME) -> str:
    """Operator names (`aten::copy_`) are short already; kernels in op tables are not."""
    if len(name) <= limit and "<" not in name and "(" not in name:
        return name
    return short_name(name, limit)
