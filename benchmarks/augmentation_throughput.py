"""Images per second of each augmentation preset for one loader worker, on CIFAR-shaped (32x32x3 uint8) data, and of
the batch-wise device path (data.loader=gpu) for the presets it supports, on the CPU and on CUDA when there is one.

    python benchmarks/augmentation_throughput.py [--images 10000] [--batch-size 128] [--repeats 3]

Two numbers per albumentations preset: the policy alone in one process (what one worker can compute), and end to end
through a DataLoader with num_workers=1 (the policy plus the copy back to the training process). Training needs
images/s of the model / images/s per worker workers. The device path has no worker: its number is taking each batch
out of the split already on the device and augmenting it there. A benchmark, not a test: it prints a Markdown table
and writes benchmarks/results/augmentation-<device>.json.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from genlab.data.augment import PRESETS, build_train_transform  # noqa: E402
from genlab.data.catalog import dataset_info, load_dataset  # noqa: E402
from genlab.data.datamodule import ArrayDataset, keep_batch  # noqa: E402
from genlab.data.device_augment import DEVICE_PRESETS, DeviceAugment  # noqa: E402
from reporting import RESULTS_DIR, publish, torch_threads  # noqa: E402

CONF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conf")


def preset_config(name: str) -> dict:
    """The preset exactly as `augmentation=<name>` composes it (the custom preset with its example list)."""
    with initialize_config_dir(os.path.abspath(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"augmentation={name}"])
    return OmegaConf.to_container(cfg.augmentation, resolve=True)


def best_rate(step, images: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return images / min(times)


def main(argv: list[str] | None = None) -> list[dict[str, float | str | None]]:
    """Measure every preset, print the Markdown table, write the JSON report, and return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000, help="synthetic CIFAR-shaped training images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement; the fastest counts")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    info = dataset_info("synthetic")
    splits = load_dataset("synthetic", ".", False, num_train=args.images, num_test=1)
    batches = [list(range(i, min(i + args.batch_size, args.images))) for i in range(0, args.images, args.batch_size)]
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    with torch_threads(1):  # a loader worker's share of the machine
        rows = [worker_row(name, info, splits, batches, args.repeats) for name in PRESETS]
        rows += [{"preset": name, "path": f"device {device}", "one_worker": None,
                  "in_process": device_rate(preset_config(name), info, splits.train_images, batches, device, args.repeats)}
                 for device in devices for name in DEVICE_PRESETS]
        publish("augmentation", devices[-1], False, rows, table(rows), args.out, images=args.images,
                batch_size=args.batch_size, best_of=args.repeats)
    return rows


def worker_row(name: str, info, splits, batches: list[list[int]], repeats: int) -> dict[str, float | str]:
    """An albumentations preset's images/s in this process and through a DataLoader with one worker."""
    dataset = ArrayDataset(splits.train_images, splits.train_labels, build_train_transform(preset_config(name), info, seed=0))
    images = len(splits.train_images)

    def in_process():
        for indices in batches:
            dataset.__getitems__(indices)

    loader = DataLoader(dataset, batch_size=len(batches[0]), num_workers=1, collate_fn=keep_batch, persistent_workers=True)

    def through_loader():
        for _ in loader:
            pass

    through_loader()  # start the worker outside the measurement
    return {"preset": name, "path": "albumentations", "in_process": best_rate(in_process, images, repeats),
            "one_worker": best_rate(through_loader, images, repeats)}


def table(rows: list[dict]) -> str:
    lines = ["| preset | images/s, policy in one process | images/s, DataLoader with 1 worker |", "|---|---:|---:|"]
    for row in rows:
        if row["one_worker"] is None:
            device = row["path"].removeprefix("device ")
            lines.append(f"| {row['preset']}, batch-wise on the {device} (data.loader=gpu) | {row['in_process']:,.0f} | "
                         "no worker |")
        else:
            lines.append(f"| {row['preset']} | {row['in_process']:,.0f} | {row['one_worker']:,.0f} |")
    return "\n".join(lines)


def device_rate(config: dict, info, images: np.ndarray, batches: list[list[int]], device: str, repeats: int) -> float:
    """Images/s of the device path: each batch indexed out of the split held on `device`, then augmented there."""
    augment = DeviceAugment(config, info)
    split = torch.from_numpy(images).to(device).contiguous()  # synthetic images are a transposed view: ~20x slower to index
    batch_indices = [torch.tensor(indices, device=device) for indices in batches]
    generator = torch.Generator(device).manual_seed(0)

    def on_device():
        for indices in batch_indices:
            augment(split.index_select(0, indices), generator)  # ~10x faster on the CPU than split[indices]
        if device == "cuda":
            torch.cuda.synchronize()  # kernels run asynchronously: count them until they are done

    on_device()  # warm-up: allocator, CUDA context
    return best_rate(on_device, len(images), repeats)


if __name__ == "__main__":
    main()
