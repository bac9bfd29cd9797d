"""Writes Tests/SubspaceTests/Fixtures/tensorboard_events.bin with the `tensorboard`
package's own protobuf classes and TFRecord writer, for `TensorBoardEventsTests`: the Swift
encoder must produce the same bytes for the same events.

    python3 -m venv .venv && .venv/bin/pip install tensorboard
    .venv/bin/python scripts/make_tensorboard_fixture.py
"""
import io
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

out = Path(__file__).resolve().parent.parent / "Tests/SubspaceTests/Fixtures/tensorboard_events.bin"
buf = io.BytesIO()
w = RecordWriter(buf)


def write(event):
    w.write(event.SerializeToString())


# The first record of every file, then a resumed run's SessionLog.START, then scalars.
write(event_pb2.Event(wall_time=1764601200.25, step=0, file_version="brain.Event:2"))
write(event_pb2.Event(wall_time=1764601200.25, step=41, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
for step, loss, lr, val in [(41, 5.25, 3e-3, None), (42, 4.875, 2.5e-3, 4.9), (300, 2.0625, 1e-4, 2.5)]:
    values = [summary_pb2.Summary.Value(tag="train/loss", simple_value=loss),
              summary_pb2.Summary.Value(tag="train/lr", simple_value=lr)]
    if val is not None:
        values.append(summary_pb2.Summary.Value(tag="val/loss", simple_value=val))
    write(event_pb2.Event(wall_time=1764601201.5 + step, step=step, summary=summary_pb2.Summary(value=values)))
out.write_bytes(buf.getvalue())
print(f"wrote {out} ({len(buf.getvalue())} bytes)")
