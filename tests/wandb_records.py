"""What an offline W&B run recorded, read from its .wandb file with W&B's own protobuf schema: the way to check what a
dashboard would show without a server."""
from __future__ import annotations

import json
import struct
from pathlib import Path

WANDB_BLOCK = 32768  # the .wandb file is a log of 32 KiB blocks of length-prefixed, possibly split, protobuf records


def wandb_records(run_dir: Path) -> list:
    """Every record of the run's offline .wandb file, read with W&B's own protobuf schema."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("wandb/offline-run-*/*.wandb")
    raw, pos, chunks, records = path.read_bytes(), 7, b"", []  # 7: the ':W&B' header, magic and version
    while pos + 7 <= len(raw):
        left = WANDB_BLOCK - pos % WANDB_BLOCK
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length, kind) == (0, 0):  # block padding
            pos += left
            continue
        chunks += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of a split one
            record = pb.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def wandb_config(records: list) -> dict:
    config = {}
    for record in records:
        kind = record.WhichOneof("record_type")
        updates = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        for item in updates:
            if item.key:
                config[item.key] = json.loads(item.value_json)
    config.pop("_wandb", None)
    return config
