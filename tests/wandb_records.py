"""Read the records of an offline wandb run file (`run-<id>.wandb`, a LevelDB-style log of protobuf records)."""

from __future__ import annotations

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
HEADER = 7  # ":W&B" + 2-byte magic + 1-byte version
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[pb.Record]:
    raw = Path(path).read_bytes()
    if raw[:4] != b":W&B":
        raise ValueError(f"{path} is not a wandb run file")
    records, pending, pos = [], b"", HEADER
    while pos + 7 <= len(raw):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer padding
            pos += room
            continue
        length, kind = struct.unpack("<HB", raw[pos + 4 : pos + 7])
        data = raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            pending = data
        elif kind == FIRST:
            pending = data
            continue
        elif kind == MIDDLE:
            pending += data
            continue
        elif kind == LAST:
            pending += data
        else:
            break
        record = pb.Record()
        record.ParseFromString(pending)
        records.append(record)
    return records


def run_summary(path: str | Path) -> dict:
    """The run's id, group, name, job type, config keys, summary keys and exit code."""
    out: dict = {"config": {}, "summary": {}, "exit_code": None}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(id=record.run.run_id, group=record.run.run_group, name=record.run.display_name,
                       job_type=record.run.job_type)
            out["config"].update({item.key: item.value_json for item in record.run.config.update})
        elif kind == "config":
            out["config"].update({item.key: item.value_json for item in record.config.update})
        elif kind == "summary":
            out["summary"].update({item.key: item.value_json for item in record.summary.update})
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def logged_epochs(path: str | Path) -> list[int]:
    """The `trainer/global_step` of each history row that has one (jackpot logs the epoch there), in the order
    logged."""
    steps = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            if "trainer/global_step" in items:
                steps.append(int(float(items["trainer/global_step"])))
    return steps
