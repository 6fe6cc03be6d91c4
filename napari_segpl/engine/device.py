"""Choosing the compute device, and giving GPU memory back when a run ends."""

from __future__ import annotations

import gc

import torch


class DeviceError(ValueError):
    """A device was named that this machine does not have."""


def available_devices() -> list[str]:
    """Every device a user may pick here, in the order ``auto`` prefers them."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return [*names, "cpu"]


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; an absent named device is a DeviceError."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda":
        count = torch.cuda.device_count()
        index = device.index or 0
        if count == 0:
            raise DeviceError(f"device {name!r} asked for, but no CUDA GPU is available here")
        if index >= count:
            raise DeviceError(f"device {name!r} asked for, but only {count} CUDA GPU(s) exist")
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise DeviceError("device 'mps' asked for, but Apple MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def release_memory(device: torch.device) -> None:
    """Return cached accelerator memory to the system once training or prediction is over.

    Nothing to do on the CPU. (A ``gc.collect()`` there would hold the GIL for a few hundred
    milliseconds in a napari session and freeze the window, for no memory gained.)"""
    if device.type not in ("cuda", "mps"):
        return
    gc.collect()  # drop tensors kept alive only by reference cycles before emptying the cache
    if device.type == "cuda":
        # cuBLAS keeps a workspace per stream (32 MiB on Hopper) that empty_cache leaves alone
        clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear is not None:
            clear()
        torch.cuda.empty_cache()
    elif hasattr(torch, "mps"):
        torch.mps.empty_cache()
